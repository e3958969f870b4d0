"""Per-request cost as the tables grow: 10 thousand to 10 million seller transfers.

Fills a scratch database by SQL, one size after another (each size adds to the last): settled
seller transfers of three sellers (one order per three; 5 % reversed after a refund, 0.1 %
cancelled before they were paid), three audit events each, one webhook inbox row each, and the
book's entries and lines for all of it (payment, transfer, refund share, reversal, cancellation),
so that ``ledger_check`` finds nothing. The history runs backwards from now at 300,000 transfers
and 1,000,000 webhook events a day (the issue's marketplace), so every size has a most recent
day of changes. The fill runs with ``session_replication_role = replica`` (no triggers, no
foreign key checks: the rows are consistent by construction), then counts the counters again,
and vacuums and analyzes as autovacuum would.

At each size, in this process (Django's test client, ``config.settings.local`` without DEBUG):
one ``/metrics`` scrape; the console's first page, the admin's transfer list, its "needs
attention" filter and a search by order id, as a superuser; one signed webhook stored
(``customer.created``: stored, ignored); the workers' claim of 50 due rows (100 due);
``ledger_check --incremental`` over one day's changes and, with ``--full-check``, the full one.
After the largest size, retention deletes up to a million expired inbox rows while webhooks
keep arriving, and their latency is compared with before.

    .venv/bin/python -m bench.scale                       # --sizes 10000 1000000
    .venv/bin/python -m bench.scale --sizes 10000 1000000 10000000 --full-check

Check ``df -h`` first: 10 million transfers take about 40 GB with their events, inbox and book.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg

from bench import harness

TRANSFERS_PER_DAY = 300_000
WEBHOOKS_PER_DAY = 1_000_000
ORDERS_PER_CHUNK = 100_000  # 300,000 transfers per fill transaction
WEBHOOK_SECRET = "whsec_bench_scale"
SELLERS = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=30, help="timed runs per measure")
    parser.add_argument("--full-check", action="store_true", help="time the full ledger_check")
    parser.add_argument("--retention-rows", type=int, default=1_000_000)
    parser.add_argument("--db", default="payouts_bench_scale")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--reuse", action="store_true", help="measure the database an earlier --keep left, as is"
    )
    args = parser.parse_args()
    harness.print_machine()
    if args.reuse:
        rows, retention = measure_kept(args)
    else:
        rows, retention = fill_and_measure(args)
    print()
    print("results (milliseconds unless marked; p50 / p95 of the runs):")
    harness.print_table(HEADERS, rows)
    print()
    print("retention while webhooks keep arriving:")
    harness.print_table(["", *retention.keys()], [["", *retention.values()]])


def fill_and_measure(args: argparse.Namespace) -> tuple[list, dict[str, str]]:
    with harness.scratch_database(args.db, keep=args.keep) as db_name:
        bench = Bench(db_name, runs=args.runs)
        rows = []
        for size in sorted(args.sizes):
            bench.fill_to(size)
            rows.append(bench.measure(full_check=args.full_check))
            harness.print_table(HEADERS, rows)
        return rows, bench.retention(min(args.retention_rows, max(args.sizes)))


def measure_kept(args: argparse.Namespace) -> tuple[list, dict[str, str]]:
    bench = Bench(args.db, runs=args.runs, reuse=True)
    print(f"database: {args.db} as kept, {bench.orders * 3:,} transfers")
    rows = [bench.measure(full_check=args.full_check)]
    harness.print_table(HEADERS, rows)
    return rows, bench.retention(min(args.retention_rows, bench.orders * 3))


HEADERS = [
    "transfers",
    "scrape",
    "console",
    "admin list",
    "needs attention",
    "search by id",
    "webhook stored",
    "claim 50",
    "ledger_check incr.",
    "ledger_check full",
]


def django_setup(db_name: str) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        DATABASE_URL=harness.database_url(db_name),
        DJANGO_DEBUG="false",
        DJANGO_ALLOWED_HOSTS="testserver",
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        CELERY_BROKER_URL=harness.BENCH_BROKER_URL,
    )
    import django

    django.setup()
    # Without DEBUG the app serves collected static files; the admin pages need none here.
    warnings.filterwarnings("ignore", message="No directory at")


def timed_ms(action: Callable[[], object], runs: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        action()
    spent = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        spent.append((time.perf_counter() - started) * 1000)
    return spent


def p50_p95(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} / {harness.percentile(values, 0.95):.1f}"


class Bench:
    def __init__(self, db_name: str, *, runs: int, reuse: bool = False) -> None:
        self.db_name = db_name
        self.runs = runs
        self.conn = harness.connect(db_name)
        django_setup(db_name)
        if reuse:  # where the earlier run's history ends, and how far it goes
            self.end, self.orders = self.conn.execute(KEPT, [SERVICE_IDS_FROM]).fetchone()
        else:
            self.end, self.orders = datetime.now(UTC), 0
            self.fill = Fill(self.conn, self.end)

    # -- filling -----------------------------------------------------------------------------

    def fill_to(self, transfers: int) -> None:
        target = -(-transfers // 3)  # orders of three
        started = time.monotonic()
        while self.orders < target:
            upto = min(self.orders + ORDERS_PER_CHUNK, target)
            self.fill.orders(self.orders + 1, upto)
            self.orders = upto
        fill_seconds = time.monotonic() - started
        started = time.monotonic()
        self.fill.finish()
        from payouts.services.counters import transfer_counts_rebuild

        transfer_counts_rebuild()
        print(
            f"filled {self.orders * 3:,} transfers in {fill_seconds:.0f} s; sequences, vacuum, "
            f"analyze and counters in {time.monotonic() - started:.0f} s; "
            f"database {database_size(self.conn)}"
        )

    # -- measuring ---------------------------------------------------------------------------

    def measure(self, *, full_check: bool) -> list[object]:
        console = Console(self.runs)
        row = [f"{self.orders * 3:,}", p50_p95(console.scrape())]
        pages = console.pages(search=self.orders)
        row += [p50_p95(pages[name]) for name in ("console", "list", "attention", "search")]
        row.append(p50_p95(console.webhooks(self.runs * 5)))
        row.append(p50_p95(claim_fifty(self.conn, self.runs)))
        row.append(ledger_check_timed(incremental=True, end=self.end))
        row.append(ledger_check_timed(incremental=False, end=self.end) if full_check else "-")
        return row

    def retention(self, rows: int) -> dict[str, str]:
        expired = expire_inbox(self.conn, rows)
        console = Console(self.runs)
        before = console.webhooks(200)
        during: list[float] = []
        result: dict[str, int] = {}

        def expire() -> None:
            from django.db import connection

            from payouts.services.retention import webhook_events_expire

            started = time.monotonic()
            result.update(webhook_events_expire())
            result["seconds"] = round(time.monotonic() - started)
            connection.close()

        worker = threading.Thread(target=expire)
        worker.start()
        while worker.is_alive():
            during += console.webhooks(20, warmup=0)
        worker.join()
        return {
            "expired rows": f"{expired:,}",
            "deleted": f"{result.get('deleted', 0):,}",
            "seconds": str(result.get("seconds")),
            "webhook before p50/p99/max": _spread(before),
            "webhook during p50/p99/max": _spread(during),
            "webhooks during": str(len(during)),
        }


def _spread(values: list[float]) -> str:
    p50, p99 = statistics.median(values), harness.percentile(values, 0.99)
    return f"{p50:.1f} / {p99:.1f} / {max(values):.1f}"


# -- what is timed -----------------------------------------------------------------------------


class Console:
    """The web app in this process, through Django's test client."""

    def __init__(self, runs: int) -> None:
        from django.contrib.auth import get_user_model
        from django.test import Client

        self.runs = runs
        self.client = Client()
        user, _ = get_user_model().objects.get_or_create(
            username="bench", defaults={"is_staff": True, "is_superuser": True}
        )
        self.client.force_login(user)

    def get(self, path: str) -> None:
        response = self.client.get(path)
        assert response.status_code == 200, (path, response.status_code)

    def scrape(self) -> list[float]:
        return timed_ms(lambda: self.get("/metrics"), self.runs)

    def pages(self, *, search: int) -> dict[str, list[float]]:
        """The console's first page, the transfer list, its "needs attention" filter, and a
        search for one order's transfers by its id."""
        transfers = "/admin/payouts/sellertransfer/"
        pages = {
            "console": "/admin/",
            "list": transfers,
            "attention": transfers + "?attention=any",
            "search": transfers + f"?q={search}",
        }
        runs = max(self.runs // 3, 5)
        return {name: timed_ms(lambda p=path: self.get(p), runs) for name, path in pages.items()}

    def webhooks(self, count: int, warmup: int = 3) -> list[float]:
        def post() -> None:
            body, headers = harness.signed_event(
                "customer.created", {"id": "cus_bench", "object": "customer"}, WEBHOOK_SECRET
            )
            response = self.client.post(
                "/webhooks/stripe/",
                body,
                content_type="application/json",
                headers={"Stripe-Signature": headers["Stripe-Signature"]},
            )
            assert response.status_code == 200, response.content

        return timed_ms(post, count, warmup=warmup)


def claim_fifty(conn: psycopg.Connection, runs: int) -> list[float]:
    """``claim_due(limit=50)`` with 100 rows due; before each run the same 100 are due again."""
    from payouts.transfer.locks import claim_due
    from payouts.transfer.transitions import TransferStatus

    order = _required_columns(conn, "marketplace_order")
    transfer = _required_columns(conn, "payouts_sellertransfer")
    statement = DUE_ROWS.format(
        order_columns=order[0], order_values=order[1],
        transfer_columns=transfer[0], transfer_values=transfer[1],
    )  # fmt: skip
    ids = [row[0] for row in conn.execute(statement).fetchall()]
    spent = []
    try:
        for _ in range(runs + 3):
            conn.execute(DUE_AGAIN, [ids])
            started = time.perf_counter()
            claim_due(statuses=[TransferStatus.REVERSAL_PENDING], now=now(), limit=50)
            spent.append((time.perf_counter() - started) * 1000)
    finally:
        conn.execute("DELETE FROM payouts_sellertransfer WHERE id = ANY(%s)", [ids])
    return spent[3:]


DUE_AGAIN = (
    "UPDATE payouts_sellertransfer SET next_retry_at = now() - interval '1 minute' "
    "WHERE id = ANY(%s)"
)
# 100 rows due for a reversal, each on an order of its own (deleted afterwards: they have no
# entries in the book).
DUE_ROWS = """
    WITH o AS (
        INSERT INTO marketplace_order (buyer_email, currency, status, stripe_payment_intent_id,
            stripe_charge_id, created_at, updated_at {order_columns})
        SELECT 'due@bench.invalid', 'usd', 'refunded', 'pi_due' || txid_current() || '_' || g,
               'ch_due' || txid_current() || '_' || g, now(), now() {order_values}
        FROM generate_series(1, 100) g
        RETURNING id
    )
    INSERT INTO payouts_sellertransfer (order_id, seller_id, amount, platform_fee, currency,
        status, stripe_transfer_id, stripe_reversal_id, amount_reversed, reversal_target,
        transfer_idempotency_key, reversal_idempotency_key, read_stripe_first, retry_count,
        next_retry_at, error_message, end_reason, created_at, updated_at {transfer_columns})
    SELECT o.id, s.id, 1000, 0, 'usd', 'reversal_pending', 'tr_due' || o.id, '', 0, 1000, '',
           '', false, 0, now(), '', '', now(), now() {transfer_values}
    FROM o CROSS JOIN LATERAL (SELECT id FROM marketplace_seller ORDER BY id LIMIT 1) s
    RETURNING id
"""


def now() -> datetime:
    return datetime.now(UTC)


def ledger_check_timed(*, incremental: bool, end: datetime) -> str:
    """One run (without Stripe), after a clean run a day ago when incremental."""
    from ledger.models import CheckRun
    from payouts.services.ledger_check import ledger_check

    if incremental:
        run = CheckRun.objects.create(finished_at=end - timedelta(days=1))
        CheckRun.objects.filter(pk=run.pk).update(started_at=end - timedelta(days=1))
    started = time.monotonic()
    run, breaks = ledger_check(stripe=False, incremental=incremental)
    spent = time.monotonic() - started
    return f"{spent:.1f} s ({run.transfers_checked:,} rows, {len(breaks)} breaks)"


class Fill:
    """SQL that writes the history, ``ORDERS_PER_CHUNK`` orders per transaction."""

    def __init__(self, conn: psycopg.Connection, end: datetime) -> None:
        self.conn = conn
        self.end = end
        self.sellers, self.accounts = self._sellers_and_accounts()
        self.extra = {table: _required_columns(conn, table) for table in FILLED}

    def _sellers_and_accounts(self) -> tuple[list[int], dict[str, object]]:
        with self.conn.transaction():
            for n in range(1, SELLERS + 1):
                self.conn.execute(
                    "INSERT INTO marketplace_seller (name, email, stripe_account_id, created_at) "
                    "VALUES (%s, %s, %s, now()) ON CONFLICT DO NOTHING",
                    [f"seller {n}", f"seller{n}@bench.invalid", f"acct_bench_scale{n}"],
                )
            sellers = [r[0] for r in self.conn.execute(SELLER_IDS).fetchall()]
            for kind in ("platform_cash", "fee_revenue", "buyer_refunds"):
                self.conn.execute("INSERT INTO ledger_account (kind) VALUES (%s)", [kind])
            for seller in sellers:
                self.conn.execute(
                    "INSERT INTO ledger_account (kind, seller_id) VALUES ('seller_payable', %s)",
                    [seller],
                )
            rows = self.conn.execute("SELECT kind, seller_id, id FROM ledger_account").fetchall()
        accounts: dict[str, object] = {kind: pk for kind, seller, pk in rows if seller is None}
        accounts["payable"] = [next(pk for _, s, pk in rows if s == seller) for seller in sellers]
        return sellers, accounts

    def orders(self, first: int, last: int) -> None:
        params = {
            "first": first,
            "last": last,
            "end": self.end,
            "per_transfer": timedelta(days=1) / TRANSFERS_PER_DAY,
            "per_webhook": timedelta(days=1) / WEBHOOKS_PER_DAY,
            "sellers": self.sellers,
            "payable": self.accounts["payable"],
            "cash": self.accounts["platform_cash"],
            "fees": self.accounts["fee_revenue"],
            "refunds": self.accounts["buyer_refunds"],
        }
        with self.conn.transaction():
            self.conn.execute("SET LOCAL session_replication_role = replica")
            self.conn.execute("SET LOCAL synchronous_commit = off")
            for table, statement in FILL_STATEMENTS:
                columns, values = self.extra[table]
                self.conn.execute(statement.format(columns=columns, values=values), params)

    def finish(self) -> None:
        """Sequences past the fill (the rows the service writes meanwhile get ids far above it,
        so the next size's fill, which names its ids, never meets them), then vacuum."""
        for table in FILLED:
            self.conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"greatest((SELECT coalesce(max(id), 1) FROM {table}), {SERVICE_IDS_FROM}))"
            )
        for table in VACUUMED:
            self.conn.execute(f"VACUUM (ANALYZE) {table}")


def expire_inbox(conn: psycopg.Connection, rows: int) -> int:
    """The oldest ``rows`` inbox events, received (and processed) 100 days ago."""
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        done = conn.execute(EXPIRE_INBOX, {"rows": rows, "service_ids": SERVICE_IDS_FROM})
        expired = done.rowcount
    conn.execute("VACUUM (ANALYZE) payouts_webhookevent")
    return expired


def database_size(conn: psycopg.Connection) -> str:
    size = "SELECT pg_size_pretty(pg_database_size(current_database()))"
    return conn.execute(size).fetchone()[0]


SERVICE_IDS_FROM = 10**12
# The newest filled transfer was changed at the end of the history; orders are numbered from 1.
KEPT = """
    SELECT (SELECT max(updated_at) FROM payouts_sellertransfer WHERE id < %s),
           (SELECT max(id) FROM marketplace_order WHERE buyer_email LIKE 'buyer%%')
"""
SELLER_IDS = (
    "SELECT id FROM marketplace_seller WHERE stripe_account_id LIKE 'acct_bench_scale%%' "
    "ORDER BY id"
)
FILLED = (
    "marketplace_order",
    "payouts_sellertransfer",
    "payouts_sellertransferevent",
    "ledger_entry",
    "ledger_line",
    "payouts_webhookevent",
)
VACUUMED = (*FILLED, "payouts_transfercount")


def _required_columns(conn: psycopg.Connection, table: str) -> tuple[str, str]:
    """Columns the fill does not name that need a value (NOT NULL, no default): added by later
    migrations, filled with a neutral value of their type."""
    named = set(FILL_NAMES[table].split())
    neutral = {"boolean": "false", "jsonb": "'{{}}'::jsonb", "timestamp with time zone": "now()"}
    columns, values = [], []
    for name, data_type in conn.execute(REQUIRED, [table]).fetchall():
        if name in named:
            continue
        columns.append(name)
        numeric = data_type in ("bigint", "integer", "smallint", "numeric")
        values.append(neutral.get(data_type, "0" if numeric else "''"))
    return "".join(f", {c}" for c in columns), "".join(f", {v}" for v in values)


REQUIRED = """
    SELECT column_name, data_type FROM information_schema.columns
    WHERE table_name = %s AND is_nullable = 'NO' AND column_default IS NULL
      AND is_identity = 'NO'
"""

FILL_NAMES = {
    "marketplace_order": (
        "id buyer_email currency status stripe_payment_intent_id stripe_charge_id created_at "
        "updated_at"
    ),
    "payouts_sellertransfer": (
        "id order_id seller_id amount platform_fee currency status stripe_transfer_id "
        "stripe_reversal_id amount_reversed reversal_target transfer_idempotency_key "
        "reversal_idempotency_key read_stripe_first retry_count next_retry_at error_message "
        "end_reason created_at updated_at"
    ),
    "payouts_sellertransferevent": (
        "transfer_id from_status to_status created_at caused_by user_id detail"
    ),
    "ledger_entry": (
        "id kind external_id posted_at order_id seller_id transfer_id stripe_id memo posted_by_id"
    ),
    "ledger_line": "entry_id account_id currency amount",
    "payouts_webhookevent": (
        "id stripe_event_id type account payload received_at processed_at outcome error attempts"
    ),
}

# Transfer i belongs to order (i + 2) / 3 and its seller (i - 1) mod 3; it was last changed
# i × (a day / 300,000) before the end. Every 1,000th was cancelled before it was paid (every
# 10,000th instead ran out of retries unpaid: "needs attention"), every 20th of the rest was
# reversed in full after a refund.
_T = """
    FROM generate_series(3 * %(first)s::bigint - 2, 3 * %(last)s::bigint) i
    CROSS JOIN LATERAL (
        SELECT (i + 2) / 3 AS order_id, mod(i - 1, 3) AS j, 100 + mod(i * 7919, 9900) AS amount,
               %(end)s - i * %(per_transfer)s AS at,
               CASE WHEN mod(i, 1000) = 0 THEN 'permanently_failed'
                    WHEN mod(i, 20) = 0 THEN 'reversed' ELSE 'completed' END AS status,
               CASE WHEN mod(i, 10000) = 0 THEN 'retries_exhausted'
                    WHEN mod(i, 1000) = 0 THEN 'order_refunded' ELSE '' END AS end_reason
    ) t
"""
_PAYABLE = "(%(payable)s::bigint[])[t.j + 1]"
# The transfer's own entry: paid, or cancelled; none for one that ran out of retries.
_SENT_OR_CANCELLED = (
    "CASE WHEN t.end_reason <> 'retries_exhausted' THEN 10 * t.order_id + 1 + t.j END"
)

ORDERS = """
    INSERT INTO marketplace_order (id, buyer_email, currency, status, stripe_payment_intent_id,
        stripe_charge_id, created_at, updated_at {columns})
    SELECT k, 'buyer' || k || '@bench.invalid', 'usd', 'paid', 'pi_b' || k, 'ch_b' || k,
           %(end)s - 3 * k * %(per_transfer)s, %(end)s - 3 * k * %(per_transfer)s {values}
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) k
"""
TRANSFERS = (
    """
    INSERT INTO payouts_sellertransfer (id, order_id, seller_id, amount, platform_fee, currency,
        status, stripe_transfer_id, stripe_reversal_id, amount_reversed, reversal_target,
        transfer_idempotency_key, reversal_idempotency_key, read_stripe_first, retry_count,
        next_retry_at, error_message, end_reason, created_at, updated_at {columns})
    SELECT i, t.order_id, (%(sellers)s::bigint[])[t.j + 1], t.amount, t.amount / 9, 'usd',
           t.status,
           CASE WHEN t.status = 'permanently_failed' THEN '' ELSE 'tr_b' || i END,
           CASE WHEN t.status = 'reversed' THEN 'trr_b' || i ELSE '' END,
           CASE WHEN t.status = 'reversed' THEN t.amount ELSE 0 END,
           CASE WHEN t.status = 'reversed' THEN t.amount ELSE 0 END,
           'transfer-' || i, '', false, 0, NULL, '',
           t.end_reason,
           t.at - interval '1 hour', t.at {values}
    """
    + _T
)
# Three moves each: a send that failed twice, then its end; or paid, refunded and reversed.
EVENTS = (
    """
    INSERT INTO payouts_sellertransferevent (transfer_id, from_status, to_status, created_at,
        caused_by, user_id, detail {columns})
    SELECT i, e.from_status, e.to_status, t.at - (3 - e.n) * interval '1 second', 'bench',
           NULL, '{{}}'::jsonb {values}
    """
    + _T
    + """
    CROSS JOIN LATERAL (VALUES
        (1, 'pending', CASE WHEN t.status = 'reversed' THEN 'completed' ELSE 'failed' END),
        (2, CASE WHEN t.status = 'reversed' THEN 'completed' ELSE 'failed' END,
            CASE WHEN t.status = 'reversed' THEN 'reversal_pending' ELSE 'failed' END),
        (3, CASE WHEN t.status = 'reversed' THEN 'reversal_pending' ELSE 'failed' END,
            t.status)
    ) e(n, from_status, to_status)
    """
)
# Entry ids: 10 × order for its payment; + 1, 4, 7 (+ the seller's place) for each transfer's
# transfer (or cancellation), refund share and reversal.
ENTRIES = (
    """
    INSERT INTO ledger_entry (id, kind, external_id, posted_at, order_id, seller_id,
        transfer_id, stripe_id, memo, posted_by_id {columns})
    SELECT 10 * k, 'payment', 'order:' || k, %(end)s - 3 * k * %(per_transfer)s, k,
           NULL::bigint, NULL::bigint, 'ch_b' || k, '', NULL::integer {values}
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) k
    UNION ALL
    SELECT 10 * t.order_id + e.slot + t.j, e.kind, 'transfer:' || i || ':' || e.kind, t.at,
           t.order_id, (%(sellers)s::bigint[])[t.j + 1], i, '', '', NULL {values}
    """
    + _T
    + """
    CROSS JOIN LATERAL (VALUES
        (1, CASE WHEN t.end_reason = 'order_refunded' THEN 'transfer_cancelled'
                 WHEN t.end_reason = '' THEN 'transfer' END),
        (4, CASE WHEN t.status = 'reversed' THEN 'refund_share' END),
        (7, CASE WHEN t.status = 'reversed' THEN 'reversal' END)
    ) e(slot, kind)
    WHERE e.kind IS NOT NULL
    """
)
# Each transfer's lines: its seller's share of the payment, then its own entries' lines.
LINES = (
    """
    INSERT INTO ledger_line (entry_id, account_id, currency, amount {columns})
    SELECT v.entry_id, v.account_id, 'usd', v.amount {values}
    """
    + _T
    + f"""
    CROSS JOIN LATERAL (VALUES
        (10 * t.order_id, {_PAYABLE}, -t.amount),
        ({_SENT_OR_CANCELLED}, {_PAYABLE}, t.amount),
        ({_SENT_OR_CANCELLED},
         CASE WHEN t.status = 'permanently_failed' THEN %(refunds)s ELSE %(cash)s END,
         -t.amount),
        (CASE WHEN t.status = 'reversed' THEN 10 * t.order_id + 4 + t.j END, {_PAYABLE},
         t.amount),
        (CASE WHEN t.status = 'reversed' THEN 10 * t.order_id + 4 + t.j END, %(refunds)s,
         -t.amount),
        (CASE WHEN t.status = 'reversed' THEN 10 * t.order_id + 7 + t.j END, %(cash)s,
         t.amount),
        (CASE WHEN t.status = 'reversed' THEN 10 * t.order_id + 7 + t.j END, {_PAYABLE},
         -t.amount)
    ) v(entry_id, account_id, amount)
    WHERE v.entry_id IS NOT NULL
    """
)
# The payment's cash (+ gross) and fee (− fees) lines, once per order.
PAYMENT_LINES = (
    """
    INSERT INTO ledger_line (entry_id, account_id, currency, amount {columns})
    SELECT 10 * o.k, a.account_id, 'usd', a.amount {values}
    FROM (
        SELECT t.order_id AS k, sum(t.amount + t.amount / 9) AS gross,
               sum(t.amount / 9) AS fees
    """
    + _T
    + """
        GROUP BY t.order_id
    ) o
    CROSS JOIN LATERAL (VALUES (%(cash)s, o.gross), (%(fees)s, -o.fees)) a(account_id, amount)
    """
)
# One inbox row per transfer's worth of events, a million a day; a quarter of them ignored.
WEBHOOKS = """
    INSERT INTO payouts_webhookevent (id, stripe_event_id, type, account, payload, received_at,
        processed_at, outcome, error, attempts {columns})
    SELECT i, 'evt_b' || i, w.type, '',
           jsonb_build_object('id', 'evt_b' || i, 'object', 'event', 'type', w.type,
               'data', jsonb_build_object('object', jsonb_build_object(
                   'id', 'obj_b' || i, 'amount', 100 + mod(i, 9900), 'currency', 'usd',
                   'metadata', jsonb_build_object('order_id', (i + 2) / 3),
                   'description', repeat('x', 400)))),
           w.at, w.at + interval '50 milliseconds',
           CASE WHEN w.type = 'customer.created' THEN 'ignored' ELSE 'processed' END, '', 1
           {values}
    FROM generate_series(3 * %(first)s::bigint - 2, 3 * %(last)s::bigint) i
    CROSS JOIN LATERAL (
        SELECT (ARRAY['payment_intent.succeeded', 'charge.succeeded', 'transfer.created',
                      'customer.created'])[1 + mod(i, 4)] AS type,
               %(end)s - i * %(per_webhook)s AS at
    ) w
"""
FILL_STATEMENTS = [
    ("marketplace_order", ORDERS),
    ("payouts_sellertransfer", TRANSFERS),
    ("payouts_sellertransferevent", EVENTS),
    ("ledger_entry", ENTRIES),
    ("ledger_line", LINES),
    ("ledger_line", PAYMENT_LINES),
    ("payouts_webhookevent", WEBHOOKS),
]

EXPIRE_INBOX = """
    UPDATE payouts_webhookevent
    SET received_at = now() - interval '100 days',
        processed_at = now() - interval '100 days'
    WHERE id IN (
        SELECT id FROM payouts_webhookevent WHERE id < %(service_ids)s ORDER BY id DESC
        LIMIT %(rows)s
    )
"""


if __name__ == "__main__":
    main()
