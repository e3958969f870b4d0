"""Paying sellers (SPEC §7.1, §7.4): one Stripe transfer per seller of a paid order.

Rows are created ``pending`` and due at once; the sender claims due ``pending``/``failed`` rows
(see ``payouts.locks``), calls Stripe with no transaction open, and records the outcome with a
guarded transition. The same code serves the first send, the retry worker, recovery of rows a
crashed sender left ``pending``, and the staff retry.
"""

import logging
from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Sum, prefetch_related_objects
from django.utils import timezone

from marketplace.models import Order, OrderStatus
from payouts.gateway import GatewayError, StripeGateway, StripeTransfer, get_gateway
from payouts.idempotency import transfer_key
from payouts.locks import claim_due, claim_lease
from payouts.models import SellerTransfer
from payouts.services.attempts import record_retryable_failure
from payouts.services.reversals import transfers_apply_refunds
from payouts.transitions import ConcurrentTransition, TransferStatus

logger = logging.getLogger(__name__)

SENDABLE = (TransferStatus.PENDING, TransferStatus.FAILED)
# Stripe forgets idempotency keys after 24 hours; a pending row older than this is checked
# against Stripe before its key is sent again.
KEY_MEMORY = timedelta(hours=23)


def platform_fee(gross: int, bps: int) -> int:
    """``gross × bps / 10000`` rounded half up, in integer arithmetic."""
    return (gross * bps + 5_000) // 10_000


def transfer_group(order: Order) -> str:
    return f"order_{order.pk}"


def transfers_create_for_order(*, order: Order) -> list[SellerTransfer]:
    """Create the order's seller transfer rows, one per seller, ``pending`` and due now.

    Idempotent: rows that exist are left alone (unique on order and seller), so duplicate or
    replayed payment events never create a second row.
    """
    bps = settings.PAYOUTS.platform_fee_bps
    now = timezone.now()
    gross_by_seller = (
        order.items.values("seller_id").annotate(gross=Sum("amount")).order_by("seller_id")
    )
    rows = []
    for entry in gross_by_seller:
        fee = platform_fee(entry["gross"], bps)
        if entry["gross"] - fee <= 0:
            logger.warning(
                "seller share is zero after the fee; no transfer",
                extra={"order_id": order.pk, "seller_id": entry["seller_id"]},
            )
            continue
        rows.append(
            SellerTransfer(
                order=order,
                seller_id=entry["seller_id"],
                amount=entry["gross"] - fee,
                platform_fee=fee,
                currency=order.currency,
                status=TransferStatus.PENDING,
                next_retry_at=now,
            )
        )
    SellerTransfer.objects.bulk_create(rows, ignore_conflicts=True)
    return list(order.transfers.order_by("pk"))


def transfers_send_due(
    *, order_id: int | None = None, limit: int = 100, gateway: StripeGateway | None = None
) -> dict[str, int]:
    """Send every due ``pending``/``failed`` transfer (of one order, or all). Returns counts per
    outcome."""
    gateway = gateway or get_gateway()
    summary: Counter[str] = Counter()
    while True:
        rows = claim_due(statuses=SENDABLE, now=timezone.now(), limit=limit, order_id=order_id)
        prefetch_related_objects(rows, "order", "seller")
        for row in rows:
            summary[transfer_send(row, gateway=gateway, caused_by="worker:send_transfers")] += 1
        if len(rows) < limit:
            return dict(summary)


def transfer_send(
    transfer: SellerTransfer,
    *,
    gateway: StripeGateway,
    caused_by: str,
    user=None,
    by_staff: bool = False,
) -> str:
    """One attempt to pay ``transfer``; returns ``completed``, ``retry_scheduled``,
    ``permanently_failed``, ``skipped`` or ``lost_race``."""
    if transfer.status not in SENDABLE:
        return "skipped"
    now = timezone.now()
    key = transfer_key(transfer)
    order, seller = transfer.order, transfer.seller
    policy = settings.PAYOUTS.transfer_retry

    def fail(message: str, error: GatewayError | None) -> str:
        return record_retryable_failure(
            transfer,
            message=message,
            error=error,
            policy=policy,
            retry_status=TransferStatus.FAILED,
            key_field="transfer_idempotency_key",
            key=key,
            now=now,
            caused_by=caused_by,
            may_give_up=not by_staff,
            user=user,
        )

    try:
        order.refresh_from_db(fields=["status"])
        refunded = order.status == OrderStatus.REFUNDED
        if not refunded and not seller.stripe_account_id:
            return fail(f"seller {seller.pk} has no connected Stripe account yet", None)
        try:
            existing = None
            if refunded or transfer.needs_reconcile or now - transfer.created_at > KEY_MEMORY:
                # An earlier attempt may have paid the seller behind an answer we never saw.
                existing = _find_at_stripe(transfer, gateway)
            if existing is None and refunded:
                return _give_up_refunded(transfer, caused_by=caused_by)
            result = existing or gateway.create_transfer(
                amount=transfer.amount,
                currency=transfer.currency,
                destination=seller.stripe_account_id,
                transfer_group=transfer_group(order),
                source_transaction=order.stripe_charge_id or None,
                metadata={"order_id": str(order.pk), "seller_transfer_id": str(transfer.pk)},
                idempotency_key=key,
            )
        except GatewayError as error:
            return fail(error.describe(), error)
        SellerTransfer.objects.transition(
            transfer,
            TransferStatus.COMPLETED,
            caused_by=caused_by,
            user=user,
            detail={"stripe_transfer_id": result.id, "adopted": existing is not None},
            stripe_transfer_id=result.id,
            transfer_idempotency_key=key,
            next_retry_at=None,
            error_message="",
            needs_reconcile=False,
        )
    except ConcurrentTransition:
        logger.info("another actor moved the transfer first", extra={"transfer_id": transfer.pk})
        return "lost_race"
    logger.info(
        "seller transfer completed",
        extra={"transfer_id": transfer.pk, "order_id": order.pk, "stripe_transfer_id": result.id},
    )
    # A refund may have succeeded while this seller was still unpaid: take its share back now.
    with transaction.atomic():
        transfers_apply_refunds(order=order, caused_by=caused_by)
    return "completed"


def _give_up_refunded(transfer: SellerTransfer, *, caused_by: str) -> str:
    """The order was fully refunded and Stripe holds no transfer of this row: never pay the
    seller."""
    message = "order fully refunded before the seller was paid; transfer cancelled"
    if transfer.status == TransferStatus.PENDING:
        SellerTransfer.objects.transition(
            transfer, TransferStatus.FAILED, caused_by=caused_by, error_message=message
        )
    SellerTransfer.objects.transition(
        transfer,
        TransferStatus.PERMANENTLY_FAILED,
        caused_by=caused_by,
        error_message=message,
        next_retry_at=None,
    )
    logger.warning(message, extra={"transfer_id": transfer.pk, "order_id": transfer.order_id})
    return "cancelled_refunded"


def _find_at_stripe(transfer: SellerTransfer, gateway: StripeGateway) -> StripeTransfer | None:
    """A Stripe transfer an earlier attempt of this row already made, found by our metadata."""
    for candidate in gateway.find_transfers(transfer_group=transfer_group(transfer.order)):
        if candidate.metadata.get("seller_transfer_id") == str(transfer.pk):
            return candidate
    return None


class TransferNotRetryable(Exception):
    """Staff asked to retry a transfer that is not ``failed`` (or another actor won the race)."""


def transfer_retry_by_staff(*, transfer_id: int, user, gateway: StripeGateway | None = None):
    """Retry one ``failed`` transfer now, on behalf of ``user``. Returns the refreshed transfer.

    Raises ``SellerTransfer.DoesNotExist``, ``TransferNotRetryable``, or ``GatewayError`` (the
    row stays ``failed`` with the error recorded).
    """
    gateway = gateway or get_gateway()
    with transaction.atomic():
        transfer = (
            SellerTransfer.objects.select_for_update(no_key=True, of=("self",))
            .select_related("order", "seller")
            .get(pk=transfer_id)
        )
        if transfer.status != TransferStatus.FAILED:
            raise TransferNotRetryable(f"transfer {transfer_id} is {transfer.status}, not failed")
        # Take the row's lease so the retry worker leaves it alone while staff retries it.
        SellerTransfer.objects.filter(pk=transfer.pk).update(
            next_retry_at=timezone.now() + claim_lease()
        )
    outcome = transfer_send(
        transfer,
        gateway=gateway,
        caused_by=f"staff:{user.get_username()}",
        user=user,
        by_staff=True,
    )
    if outcome == "lost_race":
        raise TransferNotRetryable(f"transfer {transfer_id} was moved by another actor")
    transfer.refresh_from_db()
    if outcome != "completed":
        raise StaffRetryFailed(transfer)
    return transfer


class StaffRetryFailed(Exception):
    """Stripe refused the staff retry; the row stays ``failed`` with the error recorded."""

    def __init__(self, transfer: SellerTransfer):
        super().__init__(transfer.error_message)
        self.transfer = transfer
