"""Disputes: recover the sellers' share of a chargeback, give it back if won.

With separate charges and transfers the platform is the merchant of record: Stripe takes a
chargeback's amount (and its fee) from the platform, never from the sellers. Each dispute event,
in any order and duplicated, updates the dispute (``marketplace.services.dispute_record``: it
only moves forward), books the funds Stripe moved (keyed on its balance transactions), and
recomputes each seller's share of the chargeback being recovered
(``payouts.services.shares``; the policy is ``DISPUTE_RECOVERY`` and
``DISPUTE_FEE_BORNE_BY``). The reversal worker takes those shares back, a seller who cannot
cover theirs owes it, and a dispute won gives it back (their debt first, then a new transfer).
"""

import logging
from datetime import UTC, datetime

from django.db import transaction

import ledger.services
from marketplace.services import DisputeFacts, dispute_record, order_find_for_refund, order_lock
from payouts.services.shares import transfers_apply_shares
from payouts.stripe_api.gateway import StripeDispute
from payouts.telemetry import event_refused
from payouts.transfer.actors import Actor

logger = logging.getLogger(__name__)


class DisputeNotApplicable(ValueError):
    """The dispute belongs to no order we know, or is in another currency than its order."""


def dispute_apply(*, dispute: StripeDispute, actor: Actor) -> int:
    """Apply what one event says of a dispute. Returns how many transfers were scheduled."""
    order = order_find_for_refund(
        charge_id=dispute.charge_id, payment_intent_id=dispute.payment_intent_id, order_id=None
    )
    if order is None:
        raise DisputeNotApplicable(f"no order for dispute {dispute.id} ({dispute.charge_id!r})")
    settlement = order.settlement_currency or order.currency
    moved_in = {move.currency for move in dispute.balance_moves} - {settlement}
    if dispute.currency != order.currency or moved_in:
        event_refused(reason="dispute_currency")
        logger.error(
            "dispute in another currency than its order or its settlement; not applied",
            extra={"order_id": order.pk, "dispute": dispute.id, "currency": dispute.currency},
        )
        raise DisputeNotApplicable(
            f"dispute {dispute.id} is in {dispute.currency} (funds in "
            f"{', '.join(sorted(moved_in)) or settlement}), order {order.pk} in "
            f"{order.currency} settling in {settlement}: not applied, nothing recovered"
        )
    with transaction.atomic():
        order = order_lock(order.pk)
        record = dispute_record(order=order, facts=_facts(dispute))
        for move in dispute.balance_moves:
            ledger.services.post_dispute_funds(
                order_id=order.pk,
                balance_transaction_id=move.id,
                currency=move.currency,
                amount=move.net,
                dispute_id=dispute.id,
            )
        scheduled = transfers_apply_shares(order=order, actor=actor)
    logger.info(
        "dispute applied",
        extra={"order_id": order.pk, "dispute": dispute.id, "status": record.status},
    )
    return scheduled


def _facts(dispute: StripeDispute) -> DisputeFacts:
    withdrawn = [move for move in dispute.balance_moves if move.amount < 0]
    return DisputeFacts(
        stripe_dispute_id=dispute.id,
        amount=dispute.amount,
        currency=dispute.currency,
        reason=dispute.reason,
        status=dispute.status,
        evidence_due_by=(
            datetime.fromtimestamp(dispute.evidence_due_by, tz=UTC)
            if dispute.evidence_due_by
            else None
        ),
        funds_withdrawn=bool(withdrawn),
        funds_reinstated=any(move.amount > 0 for move in dispute.balance_moves),
        fee=sum(move.fee for move in withdrawn),
        settlement_amount=-sum(move.amount for move in withdrawn) if withdrawn else None,
        settlement_currency=withdrawn[0].currency if withdrawn else "",
    )
