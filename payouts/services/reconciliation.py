"""Reconcile seller transfers with Stripe and with their orders' refunds.

Reconciliation: record what Stripe did that we did not, compare our rows with Stripe's, and
recompute each paid transfer's share of its order's refunds.

Nothing here moves money. ``transfer_record_stripe_reversals`` brings ``amount_reversed`` up to
what Stripe reports (a reversal made in the Dashboard, or one whose answer we lost);
``transfers_compare_with_stripe`` reads every paid transfer at Stripe (in pages of 100 by
creation time, on the checks' share of the rate limit) and reports differences,
repairing only those that recording Stripe's reversals settles. Differences a repair cannot
settle (Stripe reports less reversed than we recorded, a different amount, a transfer missing at
Stripe) are reported for staff.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from django.db import transaction
from django.db.models import Min, Q
from django.utils import timezone

from marketplace.models import Order, OrderStatus, Refund
from marketplace.services import order_lock
from payouts.models import SellerTransfer
from payouts.services.shares import transfers_apply_shares
from payouts.services.stripe_reads import TransfersAtStripe
from payouts.stripe_api.gateway import GatewayError, StripeGateway, TransferNotFound, get_gateway
from payouts.transfer import moves
from payouts.transfer.actors import Actor
from payouts.transfer.locks import transfer_lock
from payouts.transfer.transitions import PAID_STATUSES, EndReason, TransferStatus
from payouts.wakeups import reversals_due_after_commit

logger = logging.getLogger(__name__)

# States whose row can record a reversal Stripe made (on a refused one, it pays the debt).
_CAN_RECORD_REVERSAL = (
    TransferStatus.COMPLETED,
    TransferStatus.REVERSAL_PENDING,
    TransferStatus.PARTIALLY_REVERSED,
    TransferStatus.REVERSAL_REFUSED,
)


class RecordOutcome(StrEnum):
    IN_SYNC = "in_sync"
    RECORDED = "recorded"
    NEEDS_STAFF = "needs_staff"


def transfer_record_stripe_reversals(
    *, transfer_id: int, stripe_amount_reversed: int, actor: Actor
) -> RecordOutcome:
    """Record that Stripe has reversed ``stripe_amount_reversed`` of the transfer in all."""
    with transaction.atomic():
        row = transfer_lock(transfer_id)
        seen = min(stripe_amount_reversed, row.amount)
        log = {"transfer_id": row.pk, "stripe": seen, "ours": row.amount_reversed}
        if seen == row.amount_reversed:
            return RecordOutcome.IN_SYNC
        if seen < row.amount_reversed:
            logger.error(
                "Stripe reports less reversed than we recorded; staff must review", extra=log
            )
            return RecordOutcome.NEEDS_STAFF
        if row.status not in _CAN_RECORD_REVERSAL:
            logger.error(
                "Stripe reports a reversal on a transfer in a state that cannot take it",
                extra={**log, "status": row.status},
            )
            return RecordOutcome.NEEDS_STAFF
        moves.reversal_seen_at_stripe(row, amount_reversed=seen, actor=actor)
        reversals_due_after_commit()  # the worker settles the row's status
    return RecordOutcome.RECORDED


@dataclass(frozen=True)
class Difference:
    transfer_id: int
    stripe_transfer_id: str
    problem: str
    repaired: bool = False

    def __str__(self) -> str:
        state = "repaired" if self.repaired else "needs review"
        return f"transfer {self.transfer_id} ({self.stripe_transfer_id}): {self.problem} [{state}]"


def transfers_compare_with_stripe(
    *, repair: bool, since: timedelta | None = None, gateway: StripeGateway | None = None
) -> list[Difference]:
    """Read every paid transfer (changed within ``since``) at Stripe; return the differences.

    Stripe is listed in pages by creation time over the same window (all: since the earliest
    row's creation); a row the pages did not return is read on its own."""
    gateway = gateway or get_gateway(for_checks=True)
    rows = SellerTransfer.objects.exclude(stripe_transfer_id="").filter(status__in=PAID_STATUSES)
    if since is not None:
        rows = rows.filter(updated_at__gte=timezone.now() - since)
    created_from = (
        timezone.now() - since
        if since is not None
        else rows.aggregate(first=Min("created_at"))["first"]
    )
    at_stripe = TransfersAtStripe.read(
        ids=rows.values_list("stripe_transfer_id", flat=True).iterator(chunk_size=10_000),
        created_from=created_from,
        gateway=gateway,
    )
    differences = []
    for row in rows.order_by("pk").iterator():
        found = _compare(row, at_stripe=at_stripe, repair=repair)
        if found is not None:
            logger.warning(
                "reconciliation difference", extra={"transfer_id": row.pk, "problem": found.problem}
            )
            differences.append(found)
    return differences


def _compare(
    row: SellerTransfer, *, at_stripe: TransfersAtStripe, repair: bool
) -> Difference | None:
    def differs(problem: str, repaired: bool = False) -> Difference:
        return Difference(row.pk, row.stripe_transfer_id, problem, repaired)

    try:
        amount, amount_reversed = at_stripe.transfer(
            row.stripe_transfer_id, ours=(row.sent, row.amount_reversed)
        )
    except TransferNotFound:
        return differs("missing at Stripe")
    except GatewayError as error:
        return differs(f"could not be read: {error.describe()}")
    if amount != row.sent:
        return differs(f"amount {row.sent} sent here, {amount} at Stripe")
    if amount_reversed == row.amount_reversed:
        return None
    problem = f"amount_reversed {row.amount_reversed} here, {amount_reversed} at Stripe"
    if not repair or amount_reversed < row.amount_reversed:
        return differs(problem)
    outcome = transfer_record_stripe_reversals(
        transfer_id=row.pk,
        stripe_amount_reversed=amount_reversed,
        actor=Actor.worker("reconcile_transfers"),
    )
    return differs(problem, repaired=outcome == RecordOutcome.RECORDED)


def shares_recheck(*, since: timedelta | None = None) -> int:
    """Schedule every refund share a paid transfer missed.

    Recompute every paid transfer's share of its order's refunds (orders whose refunds or
    transfers changed within ``since``; all refunded orders when ``None``) and schedule any
    share a transfer missed, whatever the cause. Returns how many transfers were scheduled."""
    # And the orders whose transfers a full refund cancelled, while the order is not refunded in
    # full any more (that refund failed): those sellers are owed their share again.
    stranded = (
        SellerTransfer.objects.filter(
            status=TransferStatus.PERMANENTLY_FAILED, end_reason=EndReason.ORDER_REFUNDED
        )
        .exclude(order__status=OrderStatus.REFUNDED)
        .values("order_id")
    )
    orders = Order.objects.filter(
        Q(status__in=[OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED]) | Q(pk__in=stranded)
    )
    if since is not None:
        # The changed orders, each side read through its own updated_at index: an OR across
        # both joins would read every refunded order there ever was.
        cutoff = timezone.now() - since
        changed_refunds = Refund.objects.filter(updated_at__gte=cutoff).values("order_id")
        changed_transfers = SellerTransfer.objects.filter(updated_at__gte=cutoff).values("order_id")
        orders = orders.filter(pk__in=changed_refunds.union(changed_transfers))
    actor = Actor.worker("reconcile_transfers")
    scheduled = 0
    for order_id in orders.values_list("pk", flat=True).distinct().order_by("pk").iterator():
        with transaction.atomic():
            missed = transfers_apply_shares(order=order_lock(order_id), actor=actor)
        if missed:
            logger.error(
                "transfers had missed their share of the order's refunds; scheduled now",
                extra={"order_id": order_id, "scheduled": missed},
            )
        scheduled += missed
    return scheduled


def reconciliation_run(
    *, since: timedelta | None, at_stripe_since: timedelta | None = None
) -> dict[str, int]:
    """Run the whole reconciliation: missed refund shares, then Stripe.

    Every missed refund share of the orders changed within ``since`` (all refunded orders
    when ``None``) scheduled, then the paid transfers changed within ``at_stripe_since``
    (``since`` when not given) compared with Stripe, repairing what recording Stripe's
    reversals settles."""
    scheduled = shares_recheck(since=since)
    at_stripe = since if at_stripe_since is None else at_stripe_since
    differences = transfers_compare_with_stripe(repair=True, since=at_stripe)
    return {
        "missed_shares_scheduled": scheduled,
        "differences": len(differences),
        "repaired": sum(d.repaired for d in differences),
    }
