"""Refund → reversal (SPEC §7.2, §7.5), the core of the product.

``transfers_schedule_reversal`` runs inside the refund's short transaction: the buyer's refund is
complete whatever Stripe Connect's health. ``reversals_process_due`` is the worker: it claims due
``reversal_pending`` rows (lease, SKIP LOCKED), calls Stripe with no transaction open, and records
each outcome with a guarded transition, until no due row is left or its time budget is spent.
"""

import logging
import time
from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from marketplace.models import Order
from payouts.gateway import (
    GatewayError,
    StripeGateway,
    StripeReversal,
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

WORKER = "worker:process_reversals"


def transfers_schedule_reversal(*, order: Order, caused_by: str) -> int:
    """Move every ``completed`` transfer of ``order`` to ``reversal_pending``, due now.

    Must run inside the caller's transaction. Rows in other statuses are left alone and logged.
    Returns the number of rows scheduled.
    """
    now = timezone.now()
    scheduled = 0
    rows = (
        SellerTransfer.objects.select_for_update(no_key=True, of=("self",))
        .filter(order=order)
        .order_by("pk")
    )
    for transfer in rows:
        if transfer.status != TransferStatus.COMPLETED:
            logger.warning(
                "refunded order has a transfer that cannot be reversed now",
                extra={"order_id": order.pk, "transfer_id": transfer.pk, "status": transfer.status},
            )
            continue
        SellerTransfer.objects.transition(
            transfer,
            TransferStatus.REVERSAL_PENDING,
            caused_by=caused_by,
            next_retry_at=now,
            retry_count=0,
            error_message="",
            needs_reconcile=False,
        )
        scheduled += 1
    return scheduled


def reversals_process_due(
    *,
    batch_size: int = 50,
    time_budget: timedelta | None = None,
    gateway: StripeGateway | None = None,
) -> dict[str, int]:
    """Reverse due transfers until none is due or ``time_budget`` (default: most of the beat
    interval) is spent. Returns counts per outcome."""
    policy = settings.PAYOUTS.reversal
    if not policy.enabled:
        return {"disabled": 1}
    gateway = gateway or get_gateway()
    budget = (time_budget or policy.check_interval * 0.8).total_seconds()
    deadline = time.monotonic() + budget
    summary: Counter[str] = Counter()
    while time.monotonic() < deadline:
        rows = claim_due(
            statuses=[TransferStatus.REVERSAL_PENDING], now=timezone.now(), limit=batch_size
        )
        for row in rows:
            summary[transfer_reverse(row, gateway=gateway)] += 1
        if len(rows) < batch_size:
            break
    return dict(summary)


def transfer_reverse(transfer: SellerTransfer, *, gateway: StripeGateway) -> str:
    """One reversal attempt of a claimed ``reversal_pending`` row, per the outcome table of SPEC
    §7.2. Returns ``reversed``, ``already_reversed``, ``not_found``, ``no_transfer_id``,
    ``retry_scheduled``, ``permanently_failed`` or ``lost_race``."""
    try:
        return _reverse(transfer, gateway)
    except ConcurrentTransition:
        logger.info("another actor moved the transfer first", extra={"transfer_id": transfer.pk})
        return "lost_race"


def _reverse(transfer: SellerTransfer, gateway: StripeGateway) -> str:
    log = {"transfer_id": transfer.pk, "order_id": transfer.order_id}
    if transfer.status != TransferStatus.REVERSAL_PENDING:
        return "skipped"
    if not transfer.stripe_transfer_id:
        SellerTransfer.objects.transition(
            transfer,
            TransferStatus.PERMANENTLY_FAILED,
            caused_by=WORKER,
            error_message="no stripe_transfer_id: nothing to reverse at Stripe (legacy row)",
            next_retry_at=None,
        )
        logger.error("reversal impossible without a Stripe transfer id", extra=log)
        return "no_transfer_id"

    now = timezone.now()
    key = reversal_key(transfer)
    remaining = transfer.amount - transfer.amount_reversed
    try:
        found = _find_reversal_at_stripe(transfer, gateway) if transfer.needs_reconcile else None
        reversal = found or gateway.reverse_transfer(
            transfer.stripe_transfer_id,
            amount=remaining,
            metadata={
                "order_id": str(transfer.order_id),
                "seller_transfer_id": str(transfer.pk),
            },
            idempotency_key=key,
        )
    except TransferNotFound as error:
        SellerTransfer.objects.transition(
            transfer,
            TransferStatus.PERMANENTLY_FAILED,
            caused_by=WORKER,
            detail={"error": error.describe()},
            error_message=f"transfer not found at Stripe: {error.describe()}",
            reversal_idempotency_key=key,
            next_retry_at=None,
        )
        logger.error("transfer to reverse does not exist at Stripe", extra=log)
        return "not_found"
    except TransferAlreadyReversed as error:
        SellerTransfer.objects.transition(
            transfer,
            TransferStatus.REVERSED,
            caused_by=WORKER,
            detail={"error": error.describe()},
            error_message=(
                "Stripe reports the transfer already fully reversed (outside this attempt); "
                f"marked reversed without a new reversal. {error.describe()}"
            ),
            amount_reversed=transfer.amount,
            reversal_idempotency_key=key,
            next_retry_at=None,
            needs_reconcile=False,
        )
        logger.warning("transfer was already fully reversed at Stripe", extra=log)
        return "already_reversed"
    except GatewayError as error:
        return record_retryable_failure(
            transfer,
            message=error.describe(),
            error=error,
            policy=settings.PAYOUTS.reversal,
            retry_status=TransferStatus.REVERSAL_PENDING,
            key_field="reversal_idempotency_key",
            key=key,
            now=now,
            caused_by=WORKER,
        )

    SellerTransfer.objects.transition(
        transfer,
        TransferStatus.REVERSED,
        caused_by=WORKER,
        detail={"stripe_reversal_id": reversal.id, "amount": reversal.amount},
        stripe_reversal_id=reversal.id,
        amount_reversed=min(transfer.amount, transfer.amount_reversed + reversal.amount),
        reversal_idempotency_key=key,
        next_retry_at=None,
        error_message="",
        needs_reconcile=False,
    )
    logger.info("seller transfer reversed", extra={**log, "stripe_reversal_id": reversal.id})
    return "reversed"


def _find_reversal_at_stripe(
    transfer: SellerTransfer, gateway: StripeGateway
) -> StripeReversal | None:
    """A reversal an earlier attempt of this row made, found by our metadata: read before a new
    idempotency key is sent after an attempt whose outcome Stripe may have executed."""
    for reversal in gateway.list_reversals(transfer.stripe_transfer_id):
        if reversal.metadata.get("seller_transfer_id") == str(transfer.pk):
            return reversal
    return None
