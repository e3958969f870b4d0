"""Refund → reversal (SPEC §7.2, §7.3, §7.5), the core of the product.

``transfers_apply_refunds`` runs inside the refund's short transaction: each paid transfer's
``reversal_target`` becomes its proportional share of what the order has refunded, and rows with
something left to reverse become ``reversal_pending``, due now. The buyer's refund is complete
whatever Stripe Connect's health.

``reversals_process_due`` is the worker: it claims due ``reversal_pending`` rows (lease, SKIP
LOCKED), calls Stripe with no transaction open, and settles each outcome under a row lock with a
guarded transition, until no due row is left or its time budget is spent.
"""

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from marketplace.models import Order, RefundStatus
from payouts.concurrency import run_loops
from payouts.gateway import (
    GatewayError,
    StripeGateway,
    TransferAlreadyReversed,
    TransferNotFound,
    get_gateway,
)
from payouts.idempotency import reversal_key
from payouts.locks import claim_due
from payouts.models import SellerTransfer
from payouts.services.attempts import record_retryable_failure
from payouts.transitions import ConcurrentTransition, TransferStatus

logger = logging.getLogger(__name__)

S = TransferStatus
WORKER = "worker:process_reversals"
# Transfers that moved money to a seller, so a refund's share can be taken back from them.
PAID = (S.COMPLETED, S.REVERSAL_PENDING, S.PARTIALLY_REVERSED, S.REVERSED)


def proportional_targets(*, refunded: int, order_total: int, amounts: dict[int, int]) -> dict:
    """Each transfer's share of ``refunded / order_total`` of its amount, in whole cents.

    The shares add up to the rounded (half up) exact total; the cents lost by flooring go to the
    largest remainders (ties: lowest id). Never above a transfer's amount; all of it when the
    order is fully refunded.
    """
    if order_total <= 0 or refunded <= 0:
        return dict.fromkeys(amounts, 0)
    refunded = min(refunded, order_total)
    exact = {pk: refunded * amount for pk, amount in amounts.items()}  # share × order_total
    shares = {pk: value // order_total for pk, value in exact.items()}
    total = (2 * sum(exact.values()) + order_total) // (2 * order_total)
    by_remainder = sorted(amounts, key=lambda pk: (-(exact[pk] % order_total), pk))
    for pk in by_remainder[: max(total - sum(shares.values()), 0)]:
        shares[pk] += 1
    return {pk: min(share, amounts[pk]) for pk, share in shares.items()}


def transfers_apply_refunds(*, order: Order, caused_by: str) -> int:
    """Raise each paid transfer's ``reversal_target`` to its share of the order's succeeded
    refunds; rows with more to reverse become ``reversal_pending`` (a pending reversal of the same
    transfer just grows). Must run inside the caller's transaction. Returns rows scheduled."""
    refunded = (
        order.refunds.filter(status=RefundStatus.SUCCEEDED).aggregate(s=Sum("amount"))["s"] or 0
    )
    rows = list(
        SellerTransfer.objects.select_for_update(no_key=True, of=("self",))
        .filter(order=order)
        .order_by("pk")
    )
    paid = {row.pk: row.amount for row in rows if row.status in PAID}
    targets = proportional_targets(refunded=refunded, order_total=order.total, amounts=paid)
    now = timezone.now()
    scheduled = 0
    for row in rows:
        if row.status not in PAID:
            if refunded:
                logger.warning(
                    "refunded order has a transfer that was never paid; nothing to reverse",
                    extra={"order_id": order.pk, "transfer_id": row.pk, "status": row.status},
                )
            continue
        target = max(row.reversal_target, targets[row.pk])
        if target <= row.reversal_target or row.status == S.REVERSED:
            continue
        detail = {"reversal_target": target, "refunded": refunded}
        if row.status == S.REVERSAL_PENDING:
            # A reversal is already queued or in flight: add to it, keep its schedule.
            SellerTransfer.objects.transition(
                row, S.REVERSAL_PENDING, caused_by=caused_by, detail=detail, reversal_target=target
            )
        else:
            SellerTransfer.objects.transition(
                row,
                S.REVERSAL_PENDING,
                caused_by=caused_by,
                detail=detail,
                reversal_target=target,
                next_retry_at=now,
                retry_count=0,
                error_message="",
                needs_reconcile=False,
            )
        scheduled += 1
    return scheduled


def transfer_reconcile(*, transfer: SellerTransfer, stripe_amount_reversed: int, caused_by: str):
    """Bring ``amount_reversed`` up to what Stripe reports (reversals made in the Dashboard, or
    ones whose answer we lost). Never moves money: the worker then settles the status without a
    call. Returns ``in_sync``, ``updated`` or ``needs_staff``."""
    with transaction.atomic():
        row = SellerTransfer.objects.select_for_update(no_key=True, of=("self",)).get(
            pk=transfer.pk
        )
        seen = min(stripe_amount_reversed, row.amount)
        if seen <= row.amount_reversed:
            if seen < row.amount_reversed:
                logger.error(
                    "Stripe reports less reversed than we recorded; staff must review",
                    extra={"transfer_id": row.pk, "stripe": seen, "ours": row.amount_reversed},
                )
                return "needs_staff"
            return "in_sync"
        if row.status not in (S.COMPLETED, S.REVERSAL_PENDING, S.PARTIALLY_REVERSED):
            logger.error(
                "Stripe reports a reversal on a transfer in a state that cannot take it",
                extra={"transfer_id": row.pk, "status": row.status, "stripe": seen},
            )
            return "needs_staff"
        fields = {
            "amount_reversed": seen,
            "reversal_target": max(row.reversal_target, seen),
        }
        if row.status != S.REVERSAL_PENDING:
            fields.update(next_retry_at=timezone.now(), retry_count=0, needs_reconcile=False)
        SellerTransfer.objects.transition(
            row,
            S.REVERSAL_PENDING,
            caused_by=caused_by,
            detail={"stripe_amount_reversed": seen, "reconciled": True},
            **fields,
        )
    return "updated"


def reversals_process_due(
    *,
    time_budget: timedelta | None = None,
    gateway: StripeGateway | None = None,
) -> dict[str, int]:
    """Reverse due transfers, ``REVERSAL_CONCURRENCY`` at a time, until none is due or
    ``time_budget`` (default: most of the beat interval) is spent. Returns counts per outcome.

    Each thread claims one row at a time, so a claimed row's call starts right away and its lease
    is never spent waiting behind other rows.
    """
    policy = settings.PAYOUTS.reversal
    if not policy.enabled:
        return {"disabled": 1}
    gateway = gateway or get_gateway()
    budget = (time_budget or policy.check_interval * 0.8).total_seconds()
    deadline = time.monotonic() + budget

    def step() -> str | None:
        if time.monotonic() >= deadline:
            return None
        rows = claim_due(statuses=[S.REVERSAL_PENDING], now=timezone.now(), limit=1)
        return transfer_reverse(rows[0], gateway=gateway) if rows else None

    return dict(run_loops(step, threads=settings.REVERSAL_CONCURRENCY))


def transfer_reverse(transfer: SellerTransfer, *, gateway: StripeGateway) -> str:
    """One reversal attempt of a claimed ``reversal_pending`` row, per the outcome table of SPEC
    §7.2. Returns ``reversed``, ``partially_reversed``, ``already_reversed``, ``not_found``,
    ``no_transfer_id``, ``retry_scheduled``, ``permanently_failed`` or ``lost_race``."""
    try:
        return _reverse(transfer, gateway)
    except ConcurrentTransition:
        logger.info("another actor moved the transfer first", extra={"transfer_id": transfer.pk})
        return "lost_race"


def _reverse(transfer: SellerTransfer, gateway: StripeGateway) -> str:
    log = {"transfer_id": transfer.pk, "order_id": transfer.order_id}
    if transfer.status != S.REVERSAL_PENDING:
        return "skipped"
    if not transfer.stripe_transfer_id:
        SellerTransfer.objects.transition(
            transfer,
            S.PERMANENTLY_FAILED,
            caused_by=WORKER,
            error_message="no stripe_transfer_id: nothing to reverse at Stripe (legacy row)",
            next_retry_at=None,
        )
        logger.error("reversal impossible without a Stripe transfer id", extra=log)
        return "no_transfer_id"

    now = timezone.now()
    key = reversal_key(transfer)
    try:
        if transfer.needs_reconcile:
            # The last attempt may have reversed money behind a 5xx and this one uses a new key:
            # read what Stripe holds first, so nothing is reversed twice.
            at_stripe = gateway.list_reversals(transfer.stripe_transfer_id)
            stripe_total = sum(r.amount for r in at_stripe)
            if stripe_total > transfer.amount_reversed:
                return _settle(
                    transfer, reversed_total=stripe_total, reversal_id=at_stripe[0].id, key=key
                )
        remaining = transfer.reversal_target - transfer.amount_reversed
        if remaining <= 0:
            return _settle(transfer, reversed_total=transfer.amount_reversed, key=key)
        reversal = gateway.reverse_transfer(
            transfer.stripe_transfer_id,
            amount=remaining,
            metadata={"order_id": str(transfer.order_id), "seller_transfer_id": str(transfer.pk)},
            idempotency_key=key,
        )
    except TransferNotFound as error:
        SellerTransfer.objects.transition(
            transfer,
            S.PERMANENTLY_FAILED,
            caused_by=WORKER,
            detail={"error": error.describe()},
            error_message=f"transfer not found at Stripe: {error.describe()}",
            reversal_idempotency_key=key,
            next_retry_at=None,
        )
        logger.error("transfer to reverse does not exist at Stripe", extra=log)
        return "not_found"
    except TransferAlreadyReversed as error:
        logger.warning("transfer was already fully reversed at Stripe", extra=log)
        _settle(
            transfer,
            reversed_total=transfer.amount,
            key=key,
            message=(
                "Stripe reports the transfer already fully reversed (outside this attempt); "
                f"marked reversed without a new reversal. {error.describe()}"
            ),
        )
        return "already_reversed"
    except GatewayError as error:
        return record_retryable_failure(
            transfer,
            message=error.describe(),
            error=error,
            policy=settings.PAYOUTS.reversal,
            retry_status=S.REVERSAL_PENDING,
            key_field="reversal_idempotency_key",
            key=key,
            now=now,
            caused_by=WORKER,
        )
    return _settle(
        transfer,
        reversed_total=transfer.amount_reversed + reversal.amount,
        reversal_id=reversal.id,
        key=key,
    )


def _settle(
    transfer: SellerTransfer,
    *,
    reversed_total: int,
    key: str,
    reversal_id: str = "",
    message: str = "",
) -> str:
    """Record how much is reversed, under the row lock, and move to ``reversed``,
    ``partially_reversed``, or back to due ``reversal_pending`` when a refund raised the target
    while this attempt was in flight."""
    with transaction.atomic():
        row = SellerTransfer.objects.select_for_update(no_key=True, of=("self",)).get(
            pk=transfer.pk
        )
        if row.status != transfer.status:
            raise ConcurrentTransition(row.pk, transfer.status, "settled")
        total = min(max(row.amount_reversed, reversed_total), row.amount)
        target = max(row.reversal_target, total)
        if total >= row.amount:
            to, next_retry_at = S.REVERSED, None
        elif total >= target:
            to, next_retry_at = S.PARTIALLY_REVERSED, None
        else:
            to, next_retry_at = S.REVERSAL_PENDING, timezone.now()
        SellerTransfer.objects.transition(
            row,
            to,
            caused_by=WORKER,
            detail={"stripe_reversal_id": reversal_id, "amount_reversed": total, "key": key},
            amount_reversed=total,
            reversal_target=target,
            stripe_reversal_id=reversal_id or row.stripe_reversal_id,
            # The next partial reversal gets a fresh key (see payouts.idempotency).
            reversal_idempotency_key="",
            retry_count=0,
            needs_reconcile=False,
            next_retry_at=next_retry_at,
            error_message=message,
        )
    logger.info(
        "seller transfer reversal settled",
        extra={"transfer_id": row.pk, "order_id": row.order_id, "status": to, "amount": total},
    )
    return {S.REVERSED: "reversed", S.PARTIALLY_REVERSED: "partially_reversed"}.get(
        to, "more_to_reverse"
    )
