"""Refunds: what Stripe says about them, and the ones staff start here.

A refund seen at Stripe updates our refund row, the order's status and each seller's share to
take back (``payouts.services.shares``) in one short transaction with no Stripe call, so the
buyer-facing refund completes whatever Stripe Connect's health. Duplicate and out-of-order
deliveries have one effect (see ``marketplace.services.refund_record``).
"""

import logging
from collections import Counter
from datetime import timedelta
from enum import StrEnum

from django.db import transaction
from django.utils import timezone

import ledger.services
from config.errors import Conflict, StripeRefused
from marketplace.models import DisputeStatus, Order, Refund, RefundStatus
from marketplace.selectors import refund_settled_amount
from marketplace.services import (
    Settlement,
    order_find_for_refund,
    order_lock,
    refund_mark_failed,
    refund_open_by_staff,
    refund_record,
    settlement_record,
)
from payouts.services.shares import transfers_apply_shares
from payouts.services.transfers import settlement_due_rows, settlement_read
from payouts.stripe_api.gateway import GatewayError, StripeGateway, StripeRefund, get_gateway
from payouts.telemetry import REFUNDS_WHILE_DISPUTED, event_refused
from payouts.transfer.actors import Actor
from payouts.transfer.idempotency import KEY_MEMORY
from payouts.wakeups import reversals_due_after_commit

logger = logging.getLogger(__name__)

_STATUS_FROM_STRIPE = {
    "succeeded": RefundStatus.SUCCEEDED,
    "pending": RefundStatus.PENDING,
    "requires_action": RefundStatus.PENDING,
    "failed": RefundStatus.FAILED,
    "canceled": RefundStatus.CANCELED,
}


# A dispute that no longer stands between the buyer and a refund.
SETTLED_DISPUTE_STATUSES = (DisputeStatus.WON, DisputeStatus.WARNING_CLOSED)


class UnknownRefundOrder(LookupError):
    """The refund belongs to no order we know."""


class RefundCurrencyMismatch(ValueError):
    """Raised for a refund in another currency than its order.

    The refund is in another currency than its order: applying it would take shares in the
    wrong unit from the sellers."""


def refund_apply(*, refund: StripeRefund, status: str | None = None, actor: Actor) -> int:
    """Apply a Stripe refund's status to its order and its sellers' shares.

    Apply what Stripe says about ``refund``; returns how many transfers were scheduled for
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
    if refund.currency.lower() != order.currency:
        # Stripe refunds in the charge's currency; the settlement currency is only where the
        # refund's balance transaction lands.
        event_refused(reason="refund_currency")
        logger.error(
            "refund in another currency than its order; not applied",
            extra={"order_id": order.pk, "refund": refund.id, "currency": refund.currency},
        )
        raise RefundCurrencyMismatch(
            f"refund {refund.id} is in {refund.currency.lower()}, order {order.pk} in "
            f"{order.currency}: not applied, nothing reversed"
        )
    with transaction.atomic():
        change = refund_record(
            order=order,
            stripe_refund_id=refund.id,
            amount=refund.amount,
            currency=refund.currency.lower(),
            status=status,
            local_refund_id=refund.metadata.get("refund_id"),
        )
        if change.failed_after_success:
            return _refund_failed(order, change.refund, actor)
        if not change.became_succeeded:
            return 0
        if order.disputes.exclude(status__in=SETTLED_DISPUTE_STATUSES).exists():
            REFUNDS_WHILE_DISPUTED.inc()
            logger.warning(
                "refund of a disputed charge; staff should review",
                extra={"order_id": order.pk, "refund": refund.id},
            )
        return _refund_settled(order, change.refund, actor)


def _refund_settled(order: Order, refund: Refund, actor: Actor) -> int:
    """Count a succeeded refund: book it and recompute the sellers' shares.

    Book what the succeeded refund took from the platform's balance and recompute the
    sellers' shares. A refund in another currency than the order's settlement waits for its own
    balance transaction (read after commit, ``refund_settle``) before it counts."""
    if not refund.settled:
        amount = refund_settled_amount(refund=refund, order=order)
        if amount is None:
            Refund.objects.filter(pk=refund.pk).update(settlement_due_at=timezone.now())
            reversals_due_after_commit()  # the reversal drain reads it first
            return 0
        currency = order.settlement_currency or order.currency
        settlement_record(row=refund, settlement=Settlement(currency, amount, amount))
    ledger.services.post_refund(
        order_id=order.pk,
        refund_id=refund.stripe_refund_id,
        currency=refund.settlement_currency,
        amount=refund.settlement_amount,
    )
    return transfers_apply_shares(order=order, actor=actor)


def _refund_failed(order: Order, refund: Refund, actor: Actor) -> int:
    """Undo a refund that failed after it succeeded.

    A refund failed (or was canceled) after it had succeeded: the buyer did not get the
    money, so what it took from the platform's balance comes back (booked, once), and each
    seller's share goes down again: what was already reversed from them is given back by the
    reversal worker (their debt first, then a new transfer), what was still pending is simply
    not taken."""
    logger.warning(
        "refund failed after it had succeeded; the sellers' shares are given back",
        extra={"order_id": order.pk, "refund": refund.stripe_refund_id},
    )
    if refund.settled:
        ledger.services.post_refund(
            order_id=order.pk,
            refund_id=refund.stripe_refund_id,
            currency=refund.settlement_currency,
            amount=refund.settlement_amount,
            failed=True,
        )
    Refund.objects.filter(pk=refund.pk).update(settlement_due_at=None)
    return transfers_apply_shares(order=order, actor=actor)


def refunds_settle_due(*, limit: int = 100, gateway: StripeGateway | None = None) -> int:
    """Settle every succeeded refund still waiting for its balance transaction.

    Read the balance transaction of every succeeded refund waiting for it (a refund in
    another currency than its order's settlement), then count it in the sellers' shares.
    Returns how many were settled."""
    gateway = gateway or get_gateway()
    due = settlement_due_rows(Refund.objects.all(), limit=limit)
    return sum(refund_settle(refund=refund, gateway=gateway) for refund in due)


def refund_settle(*, refund: Refund, gateway: StripeGateway) -> bool:
    """Settle one refund from its balance transaction at Stripe.

    Read one refund's balance transaction (no transaction open during the call) and apply
    it. False while Stripe cannot give it yet (the refund stays due, a minute later)."""
    settlement = settlement_read(refund, lambda: gateway.refund_settlement(refund.stripe_refund_id))
    if settlement is None:
        return False
    with transaction.atomic():
        order = order_lock(refund.order_id)
        refund = Refund.objects.select_for_update().get(pk=refund.pk)
        if not settlement_record(row=refund, settlement=settlement):
            return False
        if refund.status == RefundStatus.SUCCEEDED:
            _refund_settled(order, refund, Actor.worker("settle_refunds"))
    return True


def refunds_sync_for_charge(*, charge_id: str, gateway: StripeGateway | None = None) -> int:
    """Apply any refund of the charge that a webhook did not deliver.

    Safety net for ``charge.refunded``: fetch the charge's refunds and apply any we missed.
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
    refund = staff_refund_reserve(order_id=order_id, amount=amount)
    return staff_refund_send(refund_id=refund.pk, gateway=gateway)


def staff_refund_reserve(*, order_id: int, amount: int | None) -> Refund:
    """Reserve a staff refund with its idempotency key.

    In one transaction (the caller's, when there is one: an approved request commits its reservation
    with its decision)."""
    with transaction.atomic():
        refund = refund_open_by_staff(order_id=order_id, amount=amount)
        key = f"payouts-refund-{refund.pk}-{int(refund.created_at.timestamp() * 1_000_000)}"
        Refund.objects.filter(pk=refund.pk).update(stripe_idempotency_key=key)
        refund.stripe_idempotency_key = key
    return refund


def staff_refund_send(*, refund_id: int, gateway: StripeGateway | None = None) -> Refund:
    """Create the reserved staff refund at Stripe.

    With its own key, and no transaction open. A refund already sent, or settled meanwhile, is not
    sent again. Raises ``StripeRefused`` (with the refund row: ``failed`` when Stripe refused, still
    ``pending`` when its answer was lost)."""
    refund = Refund.objects.select_related("order").get(pk=refund_id)
    if refund.status == RefundStatus.FAILED:
        raise StripeRefused(f"refund {refund.pk} failed: {refund.error_message}", subject=refund)
    if refund.stripe_refund_id or refund.status != RefundStatus.PENDING:
        return refund
    try:
        _create_at_stripe(refund, gateway or get_gateway())
    except GatewayError as error:
        # An unknown outcome keeps the reservation: if Stripe did refund, its webhook (metadata
        # refund_id) settles this row; if not, staff_refunds_settle releases it.
        refund.refresh_from_db()
        raise StripeRefused(error.describe(), subject=refund) from error
    refund.refresh_from_db()
    return refund


def _create_at_stripe(refund: Refund, gateway: StripeGateway) -> None:
    """Create a reserved staff refund at Stripe.

    Send the reserved refund to Stripe with its own key; record its id, or release the
    reservation when Stripe definitely refused. Raises ``GatewayError``."""
    try:
        created = gateway.create_refund(
            payment_intent_id=refund.order.stripe_payment_intent_id,
            amount=refund.amount,
            metadata={"order_id": str(refund.order_id), "refund_id": str(refund.pk)},
            idempotency_key=refund.stripe_idempotency_key,
        )
    except GatewayError as error:
        if error.response_seen and not error.may_have_executed:
            refund_mark_failed(refund=refund, error=error.describe())
        raise
    Refund.objects.filter(pk=refund.pk, stripe_refund_id="").update(stripe_refund_id=created.id)


class ReservationOutcome(StrEnum):
    RECORDED = "recorded"  # Stripe holds the refund: applied like its webhook would be
    RESENT = "resent"  # sent again with its own key; Stripe now holds it
    RELEASED = "released"  # Stripe holds no refund: the amount can be refunded again
    UNKNOWN = "unknown"  # Stripe could not be asked; tried again later


# A reservation younger than this may still have its first request in flight at Stripe.
RESERVATION_SETTLE_AFTER = timedelta(minutes=10)


class ReservationTooRecent(Conflict):
    """Raised when a reserved refund is too recent to be released safely.

    Staff asked to release a reserved refund whose first request may still be in flight at
    Stripe: Stripe may yet refund it, and a released amount could be refunded twice."""

    code = "reservation_too_recent"


def staff_refunds_settle(*, gateway: StripeGateway | None = None) -> dict[str, int]:
    """Settle every staff refund whose Stripe call ended without an answer.

    Settle every staff refund still reserved (``pending``, no Stripe id) after its call
    failed without a definite answer. Returns counts per outcome."""
    gateway = gateway or get_gateway()
    stuck = Refund.objects.filter(
        status=RefundStatus.PENDING,
        stripe_refund_id="",
        created_at__lte=timezone.now() - RESERVATION_SETTLE_AFTER,
    ).exclude(stripe_idempotency_key="")
    outcomes: Counter[str] = Counter()
    for refund_id in stuck.order_by("pk").values_list("pk", flat=True):
        outcomes[staff_refund_settle(refund_id=refund_id, gateway=gateway)] += 1
    return dict(outcomes)


def staff_refund_settle(
    *, refund_id: int, release: bool = False, gateway: StripeGateway | None = None
) -> ReservationOutcome:
    """Settle one staff refund whose Stripe call ended without an answer.

    Settle one reserved staff refund: record it when Stripe holds it (found by our
    metadata); otherwise release it when asked to (``release``) or when its key may be
    forgotten, else send it again with its own key so Stripe replays or completes it.

    Raises ``ReservationTooRecent`` (changing nothing) when asked to release a reservation
    younger than ``RESERVATION_SETTLE_AFTER`` that Stripe does not list: its first request may
    still be in flight, or Stripe's list may not show the refund yet."""
    gateway = gateway or get_gateway()
    refund = Refund.objects.select_related("order").get(pk=refund_id)
    if refund.status != RefundStatus.PENDING or refund.stripe_refund_id:
        return ReservationOutcome.RECORDED
    try:
        found = _find_at_stripe(refund, gateway)
    except GatewayError as error:
        return _still_unknown(refund, error)
    if found is not None:
        refund_apply(refund=found, actor=Actor.worker("settle_staff_refunds"))
        return ReservationOutcome.RECORDED
    age = timezone.now() - refund.created_at
    if release and age < RESERVATION_SETTLE_AFTER:
        settle_from = timezone.localtime(refund.created_at + RESERVATION_SETTLE_AFTER)
        raise ReservationTooRecent(
            f"refund {refund.pk} was reserved {int(age.total_seconds())} s ago and Stripe does "
            "not list it yet; its request may still be in flight, so it is not released. It can "
            f"be settled from {settle_from:%Y-%m-%d %H:%M:%S %Z}.",
            subject=refund,
        )
    if release or age > KEY_MEMORY:
        return _release(refund, "Stripe holds no such refund")
    try:
        _create_at_stripe(refund, gateway)
    except GatewayError as error:
        if not error.response_seen:
            return _still_unknown(refund, error)
        # Stripe holds no refund of ours and answered the resend with an error (a 5xx it stored
        # for the key is replayed as it was): nothing was refunded.
        return _release(refund, error.describe())
    return ReservationOutcome.RESENT


def _release(refund: Refund, why: str) -> ReservationOutcome:
    refund_mark_failed(refund=refund, error=f"released: {why}")
    logger.warning("staff refund reservation released", extra={"refund_id": refund.pk})
    return ReservationOutcome.RELEASED


def _still_unknown(refund: Refund, error: GatewayError) -> ReservationOutcome:
    logger.warning(
        "staff refund reservation still unknown",
        extra={"refund_id": refund.pk, "error": error.describe()},
    )
    return ReservationOutcome.UNKNOWN


def _find_at_stripe(refund: Refund, gateway: StripeGateway) -> StripeRefund | None:
    for candidate in gateway.list_refunds(charge_id=refund.order.stripe_charge_id):
        if candidate.metadata.get("refund_id") == str(refund.pk):
            return candidate
    return None
