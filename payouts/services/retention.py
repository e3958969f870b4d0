"""Webhook inbox retention: processed events older than ``WEBHOOK_RETENTION`` are deleted.

The inbox row of an event is what makes Stripe's retry of it a duplicate, and Stripe retries
for up to 3 days, so nothing younger than the retention (never under a week) is touched, nor
any event not done with (``received``, ``failed``: a person or the sweep still has to act on
it), whatever its age. Money history is not here: the audit trail and the book are kept.

Deleting is batched, oldest first, one short transaction per batch: each batch locks only the
rows it deletes (``SKIP LOCKED`` passes over an event being replayed), so intake, which only
inserts new rows, never waits for it.
"""

import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from payouts.models import WEBHOOK_DONE_OUTCOMES

# Small batches, well apart: each is a few milliseconds of the database's CPU and disk, and intake
# has them to itself in between. A million rows (a day at a million events) take about two minutes.
BATCH = 1_000
PAUSE = timedelta(milliseconds=100)
# A daily run stops after this long; whatever is left goes the next day.
TIME_BUDGET = timedelta(minutes=20)

# The batch is chosen once (a materialized CTE): as "id IN (SELECT … LIMIT n)" the planner may
# run the subquery again for each row it deletes, and a batch would take more than n rows.
_DELETE_BATCH = """
    WITH batch AS MATERIALIZED (
        SELECT id FROM payouts_webhookevent
        WHERE received_at < %(cutoff)s AND outcome = ANY(%(done)s)
          AND processed_at < %(cutoff)s
        ORDER BY received_at
        LIMIT %(batch)s
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM payouts_webhookevent AS event USING batch WHERE event.id = batch.id
"""


def webhook_events_expire(
    *,
    now: datetime | None = None,
    batch: int = BATCH,
    pause: timedelta = PAUSE,
    time_budget: timedelta = TIME_BUDGET,
) -> dict[str, int]:
    """Delete the webhook events older than the retention period, in batches.

    Delete processed and ignored events received (and last processed) before
    ``now - WEBHOOK_RETENTION``, ``batch`` rows per transaction, ``pause`` apart, until none
    is left or ``time_budget`` is spent."""
    cutoff = (now or timezone.now()) - settings.PAYOUTS.webhook_retention
    params = {"cutoff": cutoff, "done": list(WEBHOOK_DONE_OUTCOMES), "batch": batch}
    deadline = time.monotonic() + time_budget.total_seconds()
    deleted = batches = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_DELETE_BATCH, params)
            count = cursor.rowcount
        deleted += count
        batches += 1
        if count < batch or time.monotonic() > deadline:
            return {"deleted": deleted, "batches": batches}
        time.sleep(pause.total_seconds())
