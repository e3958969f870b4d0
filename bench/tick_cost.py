"""What one reversal tick costs to find and claim its rows as settled rows pile up.

The table grows to each size in ``--sizes`` with settled transfers (completed, reversed,
permanently failed; inserted in SQL), beside 100 due ``reversal_pending`` rows. At each size:
``VACUUM ANALYZE``, then ``payouts.transfer.locks.claim_due(limit=50)`` is timed in this process (a
Django process on the bench database: its transaction and the one ``UPDATE … WHERE id IN
(SELECT … FOR NO KEY UPDATE SKIP LOCKED) RETURNING *`` statement that takes the lease), the
claimed rows' ``next_retry_at`` restored after each run;
then the claim statement, as Django sent it, is shown under ``EXPLAIN (ANALYZE, BUFFERS)``.

    .venv/bin/python -m bench.tick_cost [--sizes 10000 100000 1000000] [--runs 50] [--keep]

Target: under 5 ms per claim at every size, on an index path over ``idx_transfer_due_reversal``.
"""

import argparse
import math
import os
import statistics
import sys
import time

from bench import harness

DUE_ROWS = 100
BATCH = 50
SELLERS = 1000

SETTLED_ROWS_SQL = """
WITH new_orders AS (
    INSERT INTO marketplace_order (buyer_email, currency, status, stripe_payment_intent_id,
                                   stripe_charge_id, created_at, updated_at)
    SELECT 'buyer' || g || '@bench.invalid', 'usd', 'paid', '', '', now(), now()
    FROM generate_series(1, %(orders)s) AS g
    RETURNING id
), pairs AS (
    SELECT o.id AS order_id, s.id AS seller_id, 100 + (o.id * 7 + s.id) %% 9900 AS amount,
           -- 70 %% completed, 25 %% reversed, 5 %% permanently failed
           CASE WHEN (o.id * 31 + s.id) %% 20 < 14 THEN 'completed'
                WHEN (o.id * 31 + s.id) %% 20 < 19 THEN 'reversed'
                ELSE 'permanently_failed' END AS status
    FROM new_orders AS o CROSS JOIN (
        SELECT id FROM marketplace_seller ORDER BY id LIMIT %(sellers)s
    ) AS s
)
INSERT INTO payouts_sellertransfer (
    order_id, seller_id, amount, platform_fee, currency, status, stripe_transfer_id,
    stripe_reversal_id, amount_reversed, reversal_target, transfer_idempotency_key,
    reversal_idempotency_key, read_stripe_first, retry_count, next_retry_at, error_message,
    created_at, updated_at)
SELECT order_id, seller_id, amount, amount / 9, 'usd', status,
       'tr_bench_' || order_id || '_' || seller_id,
       CASE WHEN status = 'reversed' THEN 'trr_bench_' || order_id || '_' || seller_id
            ELSE '' END,
       CASE WHEN status = 'reversed' THEN amount ELSE 0 END,
       CASE WHEN status = 'completed' THEN 0 ELSE amount END,
       '', '', false, CASE WHEN status = 'permanently_failed' THEN 5 ELSE 0 END, NULL,
       CASE WHEN status = 'permanently_failed' THEN 'Stripe 500: retries exhausted' ELSE '' END,
       now(), now()
FROM pairs
"""

DUE_ROWS_SQL = """
WITH due_order AS (
    INSERT INTO marketplace_order (buyer_email, currency, status, stripe_payment_intent_id,
                                   stripe_charge_id, created_at, updated_at)
    VALUES ('due@bench.invalid', 'usd', 'refunded', '', '', now(), now())
    RETURNING id
)
INSERT INTO payouts_sellertransfer (
    order_id, seller_id, amount, platform_fee, currency, status, stripe_transfer_id,
    stripe_reversal_id, amount_reversed, reversal_target, transfer_idempotency_key,
    reversal_idempotency_key, read_stripe_first, retry_count, next_retry_at, error_message,
    created_at, updated_at)
SELECT due_order.id, s.id, 1000, 100, 'usd', 'reversal_pending', 'tr_due_' || s.id, '', 0,
       1000, '', '', false, 0, now() - interval '1 hour', '', now(), now()
FROM due_order CROSS JOIN (SELECT id FROM marketplace_seller ORDER BY id LIMIT %(rows)s) AS s
"""

# The due rows' own schedule, a millisecond apart an hour ago; re-applied after every claim.
RESTORE_DUE_SQL = """
UPDATE payouts_sellertransfer
SET next_retry_at = now() - interval '1 hour' + (id - %(first)s) * interval '1 millisecond'
WHERE id = ANY(%(ids)s)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=100, help="timed claims per size")
    parser.add_argument("--warmup", type=int, default=10, help="untimed claims per size")
    parser.add_argument("--db", default="payouts_bench_tick", help="scratch database name")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    options = parser.parse_args()
    sizes = sorted(options.sizes)

    harness.print_machine()
    with (
        harness.scratch_database(options.db, keep=options.keep) as db,
        harness.connect(db) as conn,
    ):
        django_setup(db)
        results = measure_sizes(conn, sizes, options)
        close_django()
    print()
    print(f"summary: claim_due(limit={BATCH}) with {DUE_ROWS} due rows")
    harness.print_table(
        [
            "settled rows",
            "claim_due median",
            "p95",
            "raw SQL median",
            "p95",
            "SELECT exec",
            "plan",
        ],
        [
            [
                f"{r['size']:,}",
                f"{r['median']:.2f} ms",
                f"{r['p95']:.2f} ms",
                f"{r['raw_median']:.2f} ms",
                f"{r['raw_p95']:.2f} ms",
                f"{r['select_ms']:.3f} ms",
                r["plan"],
            ]
            for r in results
        ],
    )
    print("target: under 5 ms at every size, index path on idx_transfer_due_reversal")
    return 0


def django_setup(db: str) -> None:
    os.environ.update(harness.service_environment(db, STRIPE_SECRET_KEY="", DJANGO_DEBUG="false"))
    import django

    django.setup()


def close_django() -> None:
    from django.db import connections

    connections.close_all()  # the scratch database is dropped next


def measure_sizes(conn, sizes, options) -> list[dict]:
    sellers = min(SELLERS, sizes[0])
    conn.execute(
        "INSERT INTO marketplace_seller (name, email, stripe_account_id, created_at) "
        "SELECT 'seller ' || g, 'seller' || g || '@bench.invalid', 'acct_bench' || g, now() "
        "FROM generate_series(1, %s) AS g",
        [max(sellers, DUE_ROWS)],
    )
    conn.execute(DUE_ROWS_SQL, {"rows": DUE_ROWS})
    due_ids = [
        row[0]
        for row in conn.execute(
            "SELECT id FROM payouts_sellertransfer WHERE status = 'reversal_pending' ORDER BY id"
        )
    ]
    restore = {"first": due_ids[0], "ids": due_ids}
    conn.execute(RESTORE_DUE_SQL, restore)

    results = []
    settled = 0
    for size in sizes:
        orders = math.ceil((size - settled) / sellers)
        started = time.monotonic()
        conn.execute(SETTLED_ROWS_SQL, {"orders": orders, "sellers": sellers})
        settled += orders * sellers
        inserted = time.monotonic() - started
        conn.execute("VACUUM (ANALYZE) payouts_sellertransfer")
        conn.execute("ANALYZE marketplace_order")
        conn.execute("ANALYZE marketplace_seller")
        print(
            f"\n== {settled:,} settled rows (+{DUE_ROWS} due); inserted in {inserted:.1f} s, "
            f"vacuumed and analyzed in {time.monotonic() - started - inserted:.1f} s"
        )
        print_sizes(conn)
        results.append(measure_claims(conn, settled, restore, options))
    return results


def print_sizes(conn) -> None:
    rows = conn.execute(
        "SELECT relname, pg_size_pretty(pg_relation_size(oid)) FROM pg_class "
        "WHERE relname IN ('payouts_sellertransfer', 'idx_transfer_due_reversal') ORDER BY 1"
    ).fetchall()
    statuses = conn.execute(
        "SELECT status, count(*) FROM payouts_sellertransfer GROUP BY 1 ORDER BY 1"
    ).fetchall()
    print("sizes: " + ", ".join(f"{name} {size}" for name, size in rows))
    print("rows by status: " + ", ".join(f"{status} {count:,}" for status, count in statuses))


def measure_claims(conn, settled: int, restore: dict, options) -> dict:
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from payouts.transfer.locks import claim_due

    def claim():
        return claim_due(statuses=["reversal_pending"], now=timezone.now(), limit=BATCH)

    django_ms = []
    for run in range(options.warmup + options.runs):
        started = time.perf_counter()
        rows = claim()
        elapsed = time.perf_counter() - started
        if len(rows) != BATCH:
            raise RuntimeError(f"claimed {len(rows)} rows, expected {BATCH}")
        conn.execute(RESTORE_DUE_SQL, restore)
        if run >= options.warmup:
            django_ms.append(elapsed * 1000)

    with CaptureQueriesContext(connection) as captured:
        claim()
    conn.execute(RESTORE_DUE_SQL, restore)
    statements = [q["sql"] for q in captured.captured_queries]
    claim_sql = next((q for q in statements if q.lstrip().startswith("UPDATE")), None)
    if claim_sql is None:
        raise RuntimeError(f"unexpected claim queries: {statements}")

    # The same statement without the ORM: what the database itself spends per claim.
    raw = {"statement": [], "commit": [], "total": []}
    for run in range(options.warmup + options.runs):
        marks = [time.perf_counter()]
        conn.execute("BEGIN")
        claimed = conn.execute(claim_sql).fetchall()
        marks.append(time.perf_counter())
        conn.execute("COMMIT")
        marks.append(time.perf_counter())
        if len(claimed) != BATCH:
            raise RuntimeError(f"raw claim saw {len(claimed)} rows, expected {BATCH}")
        conn.execute(RESTORE_DUE_SQL, restore)
        if run >= options.warmup:
            raw["statement"].append((marks[1] - marks[0]) * 1000)
            raw["commit"].append((marks[2] - marks[1]) * 1000)
            raw["total"].append((marks[-1] - marks[0]) * 1000)

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + claim_sql)
        plan = [line for (line,) in cursor.fetchall()]
        transaction.set_rollback(True)  # EXPLAIN ANALYZE really ran the UPDATE

    execution_ms = next(
        (float(line.split(":")[1].split()[0]) for line in plan if "Execution Time" in line), 0.0
    )
    uses_index = any("idx_transfer_due_reversal" in line for line in plan)
    seq_scan = any("Seq Scan on payouts_sellertransfer" in line for line in plan)
    plan_note = "idx_transfer_due_reversal" if uses_index else "NO due index"
    if seq_scan:
        plan_note += " + SEQ SCAN"

    print(f"{options.runs} timed runs each (after {options.warmup} warm-up), milliseconds:")
    harness.print_table(
        ["what", "median", "p95", "min", "max"],
        [
            [name, *(f"{v:.2f}" for v in _stats(values))]
            for name, values in (
                ("claim_due() in Django", django_ms),
                ("same SQL, raw: total", raw["total"]),
                ("  UPDATE … (SELECT … SKIP LOCKED) RETURNING", raw["statement"]),
                ("  COMMIT", raw["commit"]),
            )
        ],
    )
    print("claim statement (as sent by Django):")
    print("  " + " ".join(claim_sql.split()))
    print("EXPLAIN (ANALYZE, BUFFERS) of the claim:")
    for line in plan:
        print("  " + line)
    return {
        "size": settled,
        "median": statistics.median(django_ms),
        "p95": harness.percentile(django_ms, 0.95),
        "raw_median": statistics.median(raw["total"]),
        "raw_p95": harness.percentile(raw["total"], 0.95),
        "select_ms": execution_ms,
        "plan": plan_note,
    }


def _stats(values: list[float]) -> tuple[float, float, float, float]:
    return (
        statistics.median(values),
        harness.percentile(values, 0.95),
        min(values),
        max(values),
    )


if __name__ == "__main__":
    sys.exit(main())
