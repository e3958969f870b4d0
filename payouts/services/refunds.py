"""Refunds: what Stripe says about them, and the ones staff start here.

A refund seen at Stripe updates our refund row, the order's status and each seller's share to
take back (``refund_shares``) in one short transaction with no Stripe call, so the buyer-facing
refund completes whatever Stripe Connect's health. Duplicate and out-of-order deliveries have
one effect (see ``marketplace.services.refund_record``).
"""

import logging

from django.db import transaction

from config.errors import StripeRefused
from marketplace.models import Refund, RefundStatus
from marketplace.services import (
    order_find_for_refund,
    refund_mark_failed,
    refund_open_by_staff,
    refund_record,
)
from payouts.gateway import GatewayError, StripeGateway, StripeRefund, get_gateway
from payouts.moves import Actor
from payouts.services.refund_shares import transfers_apply_refunds

logger = logging.getLogger(__name__)

_STATUS_FROM_STRIPE = {
    "succeeded": RefundStatus.SUCCEEDED,
    "pending": RefundStatus.PENDING,
    "requires_action": RefundStatus.PENDING,
    "failed": RefundStatus.FAILED,
    "canceled": RefundStatus.CANCELED,
}


class UnknownRefundOrder(LookupError):
    """The refund belongs to no order we know."""


def refund_apply(*, refund: StripeRefund, status: str | None = None, actor: Actor) -> int:
    """Apply what Stripe says about ``refund``; returns how many transfers were scheduled for
    reversal. ``status`` overrides the refund's own (``refund.failed`` events)."""
    status = _STATUS_FROM_STRIPE.get(status or refund.status)
    if status is None:
        raise ValueError(f"refund {refund.id} has an unknown status {refund.status!r}")
    order = order_find_for_refund(
        charge_id=refund.charge_id,
        payment_intent_id=refund.payment_intent_id,
        order_id=refund.metadata.get("order_id"),
    )
    if order is None:
        raise UnknownRefundOrder(f"no order for refund {refund.id} (charge {refund.charge_id!r})")
    with transaction.atomic():
        change = refund_record(
            order=order,
            stripe_refund_id=refund.id,
            amount=refund.amount,
            currency=refund.currency.lower(),
            status=status,
            local_refund_id=refund.metadata.get("refund_id"),
        )
        log = {"order_id": order.pk, "refund": refund.id}
        if change.failed_after_success:
            # Money already went back to the buyer's bank or not; either way we never re-send
            # seller transfers automatically. A person decides.
            logger.error("refund failed after it had succeeded; staff must review", extra=log)
        if not change.became_succeeded:
            return 0
        return transfers_apply_refunds(order=order, actor=actor)


def refunds_sync_for_charge(*, charge_id: str, gateway: StripeGateway | None = None) -> int:
    """Safety net for ``charge.refunded``: fetch the charge's refunds and apply any we missed.
    Returns how many transfers were scheduled for reversal."""
    gateway = gateway or get_gateway()
    scheduled = 0
    for refund in gateway.list_refunds(charge_id=charge_id):
        scheduled += refund_apply(refund=refund, actor=Actor.worker(f"sync_charge:{charge_id}"))
    return scheduled


def order_refund_by_staff(
    *, order_id: int, amount: int | None, gateway: StripeGateway | None = None
) -> Refund:
    """Refund ``amount`` of an order (all that is left when ``None``) at Stripe.

    The refund row is reserved first (so over-refunding is impossible even with two staff members
    at once), then created at Stripe with no transaction open and a key built from the row. The
    refund's webhook completes it and schedules the sellers' reversals, like any other refund.
    Raises ``UnknownOrder``, ``RefundRefused`` or ``StripeRefused`` (with the refund row).
    """
    gateway = gateway or get_gateway()
    refund = refund_open_by_staff(order_id=order_id, amount=amount)
    key = f"payouts-refund-{refund.pk}-{int(refund.created_at.timestamp() * 1_000_000)}"
    Refund.objects.filter(pk=refund.pk).update(stripe_idempotency_key=key)
    try:
        created = gateway.create_refund(
            payment_intent_id=refund.order.stripe_payment_intent_id,
            amount=refund.amount,
            metadata={"order_id": str(refund.order_id), "refund_id": str(refund.pk)},
            idempotency_key=key,
        )
    except GatewayError as error:
        if not error.may_have_executed:
            refund_mark_failed(refund=refund, error=error.describe())
        # An unknown outcome keeps the reservation: if Stripe did refund, its webhook (metadata
        # refund_id) settles this row.
        refund.refresh_from_db()
        raise StripeRefused(error.describe(), subject=refund) from error
    Refund.objects.filter(pk=refund.pk, stripe_refund_id="").update(stripe_refund_id=created.id)
    refund.refresh_from_db()
    return refund
