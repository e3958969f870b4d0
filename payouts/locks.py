"""Row claiming for the workers, in one place (STYLE.md: lock helpers live together).

A claim is a lease: in one short transaction, due rows are locked with
``FOR NO KEY UPDATE SKIP LOCKED`` (so concurrent workers and overlapping ticks take disjoint
rows without waiting) in a fixed order, and their ``next_retry_at`` is pushed past the lease. The
transaction then commits, and Stripe is called with no transaction open. A worker killed
mid-row leaves the row due again when the lease runs out; the next tick finishes it with the
same idempotency key. A lease is not a status change, so no transition is involved.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from payouts.models import SellerTransfer


def claim_lease() -> timedelta:
    """Longer than the longest Stripe call stripe-python can make (timeout × attempts), with a
    margin, so a live worker never loses its row to the next tick."""
    attempts = settings.STRIPE_MAX_NETWORK_RETRIES + 1
    return settings.STRIPE_TIMEOUT * attempts + settings.CLAIM_LEASE_MARGIN


# One statement, one round trip: lock due rows that no other worker holds (SKIP LOCKED, in a
# fixed order), push their next_retry_at past the lease, and return them. The inner SELECT is
# served by the partial due-row indexes, so its cost does not grow with settled rows.
_CLAIM_SQL = """
    UPDATE payouts_sellertransfer SET next_retry_at = %(lease_until)s
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
        "lease_until": now + claim_lease(),
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
