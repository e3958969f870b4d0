"""The counts behind ``/metrics`` (``payouts.models.TransferCount``): folded, and rebuilt.

Triggers append one row per change (migration ``0011_scale``); left alone, the table would
grow by a row or two per transition. Folding replaces the rows of each key by their sum in
one statement, so a scrape, which sums whatever is there, reads a few thousand rows at most (the
last eight days' moves by hour, older ones by edge) plus the last minute's changes. The
statement deletes only the rows its snapshot sees and inserts their sums in the same
transaction: a change committed meanwhile stays for the next fold, and a scrape sees the table
either before the fold or after it, never half of it.
"""

from datetime import timedelta

from django.db import connection, transaction

# Moves are counted per hour for this long (the console's longest chart is 7 days), then by edge
# only: the table keeps about 200 hours of two dozen edges, whatever the age of the service.
HOURLY_FOR = timedelta(days=8)

_FOLD = """
    WITH folded AS (
        DELETE FROM payouts_transfercount RETURNING kind, from_status, status, hour, n
    ), kept AS (
        INSERT INTO payouts_transfercount (kind, from_status, status, hour, n)
        SELECT kind, from_status, status, CASE WHEN hour >= now() - %(hourly_for)s THEN hour END,
               sum(n)
        FROM folded GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM folded), (SELECT count(*) FROM kept)
"""

# Writers wait (SHARE ROW EXCLUSIVE) while the counts are taken again, so that no change is
# counted twice or missed; readers do not.
_RECOUNT = [
    "LOCK TABLE payouts_sellertransfer, payouts_sellertransferevent IN SHARE ROW EXCLUSIVE MODE",
    # A fold still open would otherwise put back its sums beside the new counts.
    "LOCK TABLE payouts_transfercount IN EXCLUSIVE MODE",
    "DELETE FROM payouts_transfercount",
    """INSERT INTO payouts_transfercount (kind, from_status, status, n)
       SELECT 'rows', '', status, count(*) FROM payouts_sellertransfer GROUP BY status""",
    """INSERT INTO payouts_transfercount (kind, from_status, status, hour, n)
       SELECT 'moves', from_status, to_status,
              CASE WHEN created_at >= now() - %(hourly_for)s
                   THEN date_trunc('hour', created_at, 'UTC') END,
              count(*)
       FROM payouts_sellertransferevent GROUP BY 2, 3, 4""",
]


def transfer_counts_compact() -> dict[str, int]:
    """Fold the counter rows into one per key; returns how many rows there were and are."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_FOLD, {"hourly_for": HOURLY_FOR})
        before, after = cursor.fetchone()
    return {"rows_before": before, "rows_after": after}


def transfer_counts_rebuild() -> dict[str, int]:
    """Rebuild the trigger-kept transfer counters by counting every row.

    Count the transfer and audit tables again, from scratch: after rows were written with the
    triggers off (a restore, a bulk load with ``session_replication_role = replica``). Reads
    every row of both tables, so it is an operator's action, never a scheduled one."""
    with transaction.atomic(), connection.cursor() as cursor:
        for statement in _RECOUNT:
            cursor.execute(statement, {"hourly_for": HOURLY_FOR})
        cursor.execute("SELECT count(*) FROM payouts_transfercount")
        (rows,) = cursor.fetchone()
    return {"rows_after": rows}
