"""Every row lock and claim on seller transfers (and the rows other sweeps send), in one place.

A claim is a lease: in one short transaction, due rows are locked with
``FOR NO KEY UPDATE SKIP LOCKED`` (so concurrent workers and overlapping ticks take disjoint
rows without waiting) in a fixed order, and their ``next_retry_at`` is pushed past the lease. The
transaction then commits, and Stripe is called with no transaction open. A worker killed
mid-row leaves the row due again when the lease runs out; the next tick finishes it with the
same idempotency key. A lease is not a status change, so no transition is involved.
"""

from collections.abc import Iterable, Iterator
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Model, QuerySet, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from payouts.models import SellerTransfer
from payouts.transfer.transitions import ConcurrentTransition, HeldReason, TransferStatus


def _for_update():
    # NO KEY: the lock does not block inserts of rows that reference the transfer (audit events).
    return SellerTransfer.objects.select_for_update(no_key=True, of=("self",))


def transfer_lock(transfer_id: int) -> SellerTransfer:
    """Lock one transfer row until the caller's transaction ends and return it, fresh."""
    return _for_update().select_related("order", "seller").get(pk=transfer_id)


def order_transfers_lock(order_id: int) -> list[SellerTransfer]:
    """Lock an order's transfers and return them.

    Lock every transfer of one order, in id order (the fixed lock order of every path that
    locks several), and return them fresh."""
    return list(_for_update().filter(order_id=order_id).order_by("pk"))


def held_due_lock(*, now: datetime, limit: int) -> list[SellerTransfer]:
    """Lock a batch of held transfers whose release time has come.

    Lock up to ``limit`` held rows whose release time has come (``SKIP LOCKED``: another
    sweep takes others), oldest first; the caller releases them in its transaction."""
    due = SellerTransfer.objects.filter(
        status=TransferStatus.HELD,
        held_reason=HeldReason.AWAITING_RELEASE,
        next_retry_at__lte=now,
    )
    locked = due.select_for_update(no_key=True, skip_locked=True, of=("self",))
    return list(locked.order_by("next_retry_at", "pk")[:limit])


def lease_take(transfer_id: int) -> None:
    """Keep workers off a row while a staff retry calls Stripe for it.

    Push the row's ``next_retry_at`` past the claim lease, so no worker takes it while the
    caller (a staff retry) calls Stripe for it, as a worker's claim does. Not a status
    change."""
    now = timezone.now()
    SellerTransfer.objects.filter(pk=transfer_id).update(
        next_retry_at=now + settings.PAYOUTS.claim_lease,
        key_first_sent_at=Coalesce("key_first_sent_at", Value(now)),
    )


def due_row_claim(due: QuerySet) -> Model | None:
    """Claim the next due row of a sweep that calls Stripe once per row, or ``None``.

    The first of ``due`` (pending rows whose ``next_retry_at`` has come), oldest first, not
    locked by another worker (``SKIP LOCKED``), its ``next_retry_at`` pushed past the lease
    from this moment, and when its key is first sent noted (``key_first_sent_at``: a day on,
    Stripe may have forgotten it). One row at a time: a lease taken for a batch runs out while
    the batch's earlier calls are slow, and another worker then sends a row the first is still
    sending (found by the sweeps' chaos test)."""
    with transaction.atomic():
        row = (
            due.select_for_update(skip_locked=True, no_key=True)
            .order_by("next_retry_at", "pk")
            .first()
        )
        if row is None:
            return None
        now = timezone.now()
        type(row).objects.filter(pk=row.pk).update(
            next_retry_at=now + settings.PAYOUTS.claim_lease,
            key_first_sent_at=Coalesce("key_first_sent_at", Value(now)),
        )
    return row


def due_rows_claimed(due: QuerySet, *, limit: int | None = None) -> Iterator[Model]:
    """Claim ``due`` rows one at a time (``due_row_claim``) as the caller asks for them.

    Each row at most once per sweep (one retried in it is due again only at a later sweep), at
    most ``limit`` of them when given; ends when none is left."""
    attempted: list[int] = []
    while limit is None or len(attempted) < limit:
        row = due_row_claim(due.exclude(pk__in=attempted))
        if row is None:
            return
        attempted.append(row.pk)
        yield row


def step_key_keep(transfer: SellerTransfer, *, key: str) -> None:
    """Keep the key of a reversal or give-back about to be sent, before Stripe is called.

    A worker killed after Stripe acted leaves nothing else behind, and the shares may move
    before the next attempt, which then takes the other path (a reversal after a lost
    give-back, a give-back after a lost reversal): the kept key tells it to read what the lost
    step did first. Like the lease, not a status change: guarded on the row still pending."""
    kept = SellerTransfer.objects.filter(
        pk=transfer.pk, status=TransferStatus.REVERSAL_PENDING
    ).update(reversal_idempotency_key=key)
    if kept != 1:
        raise ConcurrentTransition(transfer.pk, transfer.status, "keyed")
    transfer.reversal_idempotency_key = key


# One statement, one round trip: lock due rows that no other worker holds (SKIP LOCKED, in a
# fixed order), push their next_retry_at past the lease, note when their current idempotency key
# is first sent (a claim precedes every send), and return them. The inner SELECT is
# served by the partial due-row indexes, so its cost does not grow with settled rows.
_CLAIM_SQL = """
    UPDATE payouts_sellertransfer
    SET next_retry_at = %(lease_until)s, key_first_sent_at = COALESCE(key_first_sent_at, %(now)s)
    WHERE id IN (
        SELECT id FROM payouts_sellertransfer
        WHERE status = ANY(%(statuses)s) AND next_retry_at <= %(now)s {order_filter}
        ORDER BY next_retry_at, id
        LIMIT %(limit)s
        FOR NO KEY UPDATE SKIP LOCKED
    )
    RETURNING *
"""


def claim_due(
    *,
    statuses: Iterable[str],
    now: datetime,
    limit: int,
    order_id: int | None = None,
) -> list[SellerTransfer]:
    """Claim up to ``limit`` due rows in the given statuses, oldest ``next_retry_at`` first."""
    params = {
        "lease_until": now + settings.PAYOUTS.claim_lease,
        "statuses": list(statuses),
        "now": now,
        "limit": limit,
        "order_id": order_id,
    }
    order_filter = "AND order_id = %(order_id)s" if order_id is not None else ""
    with transaction.atomic():
        rows = list(
            SellerTransfer.objects.raw(_CLAIM_SQL.format(order_filter=order_filter), params)
        )
    rows.sort(key=lambda row: row.pk)  # RETURNING has no order; keep the fixed lock order

    return rows
