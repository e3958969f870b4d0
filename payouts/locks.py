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


def claim_due(
    *,
    statuses: Iterable[str],
    now: datetime,
    limit: int,
    order_id: int | None = None,
) -> list[SellerTransfer]:
    """Claim up to ``limit`` due rows in the given statuses, oldest ``next_retry_at`` first."""
    lease_until = now + claim_lease()
    with transaction.atomic():
        due = SellerTransfer.objects.filter(status__in=list(statuses), next_retry_at__lte=now)
        if order_id is not None:
            due = due.filter(order_id=order_id)
        rows = list(
            due.select_for_update(skip_locked=True, no_key=True, of=("self",))
            .select_related("order", "seller")
            .order_by("next_retry_at", "id")[:limit]
        )
        if rows:
            SellerTransfer.objects.filter(pk__in=[row.pk for row in rows]).update(
                next_retry_at=lease_until
            )
    for row in rows:
        row.next_retry_at = lease_until
    return rows
