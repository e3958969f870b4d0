"""The console stays cheap at scale: with 100,000 transfers, 300,000 audit events over 60 days
and the book's 200,000 lines filled by SQL, the dashboard, the "needs attention" page and the
transfer list filtered by attention read a fixed number of statements, and none of those
statements reads a whole big table (checked on Postgres' own plans). The time each page takes
is printed, not asserted."""

import os
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import UserFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db]
# CONSOLE_SCALE_TRANSFERS=1000000 measures a bigger table (the fill takes minutes).
TRANSFERS = int(os.environ.get("CONSOLE_SCALE_TRANSFERS", "100000"))
BIG_TABLES = (
    "payouts_sellertransfer",
    "payouts_sellertransferevent",
    "ledger_line",
    "payouts_webhookevent",
)

# One order and one seller transfer per i; sellers are shared. Most transfers are settled, a
# few are in each status a person or a worker still has to handle.
FILL = """
INSERT INTO marketplace_seller (id, name, email, stripe_account_id, created_at)
SELECT s, 'seller ' || s, 's' || s || '@example.com', 'acct_scale' || s, now()
FROM generate_series(1, 1000) s;

INSERT INTO marketplace_order
    (id, buyer_email, currency, status, stripe_payment_intent_id, stripe_charge_id,
     created_at, updated_at)
SELECT i, 'b' || i || '@example.com', 'usd', 'paid', 'pi_scale' || i, 'ch_scale' || i,
       now() - (i % 60) * interval '1 day', now()
FROM generate_series(1, {n}) i;

INSERT INTO payouts_sellertransfer
    (id, order_id, seller_id, amount, platform_fee, currency, status, stripe_transfer_id,
     stripe_reversal_id, amount_reversed, reversal_target, transfer_idempotency_key,
     reversal_idempotency_key, read_stripe_first, retry_count, next_retry_at, error_message,
     created_at, updated_at)
SELECT i, i, 1 + i % 1000, 900, 100, 'usd', st.status,
       CASE WHEN st.status IN ('pending', 'failed') THEN '' ELSE 'tr_scale' || i END, '',
       CASE WHEN st.status = 'reversed' THEN 900 ELSE 0 END,
       CASE WHEN st.status IN ('reversed', 'reversal_pending', 'reversal_refused')
            THEN 900 ELSE 0 END,
       '', '', false,
       CASE WHEN st.status IN ('failed', 'reversal_pending') THEN 2 ELSE 0 END,
       CASE WHEN st.status IN ('pending', 'failed', 'reversal_pending')
            THEN now() - interval '1 hour' END,
       CASE WHEN st.status = 'failed' THEN 'Stripe 500: boom' ELSE '' END,
       now() - (i % 60) * interval '1 day', now() - (i % 60) * interval '1 day'
FROM generate_series(1, {n}) i
CROSS JOIN LATERAL (SELECT CASE
    WHEN i % 1000 = 1 THEN 'pending' WHEN i % 1000 = 2 THEN 'failed'
    WHEN i % 1000 = 3 THEN 'reversal_pending' WHEN i % 1000 = 4 THEN 'reversal_refused'
    WHEN i % 1000 = 5 THEN 'permanently_failed' WHEN i % 3 = 0 THEN 'reversed'
    ELSE 'completed' END AS status) st;

INSERT INTO payouts_sellertransferevent
    (transfer_id, from_status, to_status, created_at, caused_by, detail)
SELECT t.id, e.from_status, e.to_status,
       t.created_at + e.after * interval '1 minute', 'scale', '{}'
FROM payouts_sellertransfer t
CROSS JOIN (VALUES ('pending', 'completed', 1), ('completed', 'reversal_pending', 60),
                   ('reversal_pending', 'reversed', 61)) AS e(from_status, to_status, after);

-- Accounts are made on first use: every seller has a payable, only those who ever owed a debt.
INSERT INTO ledger_account (kind, seller_id)
SELECT 'seller_payable', s FROM generate_series(1, 1000) s;
INSERT INTO ledger_account (kind, seller_id)
SELECT DISTINCT 'seller_debt', seller_id FROM payouts_sellertransfer
WHERE status = 'reversal_refused';
INSERT INTO ledger_account (kind, seller_id) VALUES ('platform_cash', NULL);

INSERT INTO ledger_entry (kind, external_id, posted_at, seller_id, transfer_id, stripe_id, memo)
SELECT 'transfer', 'scale:' || t.id, t.created_at, t.seller_id, t.id, t.stripe_transfer_id, ''
FROM payouts_sellertransfer t;

INSERT INTO ledger_line (entry_id, account_id, currency, amount)
SELECT e.id, a.id, 'usd', 900
FROM ledger_entry e JOIN ledger_account a ON a.kind = 'seller_payable' AND a.seller_id = e.seller_id
WHERE e.external_id LIKE 'scale:%';
INSERT INTO ledger_line (entry_id, account_id, currency, amount)
SELECT e.id, (SELECT id FROM ledger_account WHERE kind = 'platform_cash'), 'usd', -900
FROM ledger_entry e WHERE e.external_id LIKE 'scale:%';

-- The refused reversals' debts: debt +900, payable -900.
INSERT INTO ledger_entry (kind, external_id, posted_at, seller_id, transfer_id, stripe_id, memo)
SELECT 'reversal_refused', 'scale-debt:' || t.id, t.updated_at, t.seller_id, t.id, '', ''
FROM payouts_sellertransfer t WHERE t.status = 'reversal_refused';
INSERT INTO ledger_line (entry_id, account_id, currency, amount)
SELECT e.id, a.id, 'usd', CASE WHEN a.kind = 'seller_debt' THEN 900 ELSE -900 END
FROM ledger_entry e
JOIN ledger_account a ON a.seller_id = e.seller_id
                      AND a.kind IN ('seller_debt', 'seller_payable')
WHERE e.external_id LIKE 'scale-debt:%';

-- Stripe's events, one per order: all processed but one in a thousand, whose handling failed.
INSERT INTO payouts_webhookevent
    (stripe_event_id, type, account, payload, received_at, processed_at, outcome, error, attempts)
SELECT 'evt_scale' || i, 'payment_intent.succeeded', '', '{}', now() - (i % 60) * interval '1 day',
       now() - (i % 60) * interval '1 day',
       CASE WHEN i % 1000 = 7 THEN 'failed' ELSE 'processed' END,
       CASE WHEN i % 1000 = 7 THEN 'no such order' ELSE '' END, 1
FROM generate_series(1, {n}) i;

SELECT setval(pg_get_serial_sequence('marketplace_seller', 'id'), 1000);
SELECT setval(pg_get_serial_sequence('marketplace_order', 'id'), {n});
SELECT setval(pg_get_serial_sequence('payouts_sellertransfer', 'id'), {n});
ANALYZE;
"""


@pytest.fixture
def filled(client):
    with connection.cursor() as cursor:
        cursor.execute(FILL.replace("{n}", str(TRANSFERS)))
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def whole_table_reads(sql: str) -> list[str]:
    """The big tables the statement's plan reads through: a sequential scan, or a walk along
    the primary key with no condition to stop it (how ``ORDER BY id LIMIT`` reads a table whose
    filter matches few rows)."""
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
        [[plan]] = cursor.fetchall()
    found = []
    nodes = [plan[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        nodes.extend(node.get("Plans", []))
        table = node.get("Relation Name")
        if table not in BIG_TABLES:
            continue
        walks_the_key = node.get("Index Name", "").endswith("_pkey") and "Index Cond" not in node
        if node["Node Type"] == "Seq Scan" or walks_the_key:
            found.append(f"{node['Node Type']} on {table}")
    return found


# Each page, and the most statements it may read (session and user included).
PAGES = [
    # The dashboard and "needs attention" also count Stripe's failed events (and the page lists
    # the newest), through the partial index of the events still open; both read the sellers
    # held for risk and the debt by age (one statement each); the dashboard the reserves held;
    # "needs attention" the reserve releases that gave up (count and rows in one statement).
    (reverse("admin:index"), {"window": "7d"}, 19),
    (reverse("admin:index"), {"window": "24h"}, 19),
    (reverse("admin:needs_attention"), {}, 19),
    (reverse("admin:payouts_sellertransfer_changelist"), {"attention": "any"}, 6),
]


def test_the_console_reads_few_statements_and_no_whole_big_table(filled, capsys):
    too_many, whole_reads = {}, {}
    for url, query, most in PAGES:
        filled.get(url, query)  # warm: caches, the first statements' plans
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            assert filled.get(url, query).status_code == 200
            elapsed = time.perf_counter() - started
        with capsys.disabled():
            print(f"\n{url} {query}: {elapsed * 1000:.0f} ms, {len(queries)} statements")
        if len(queries) > most:
            too_many[url] = len(queries)
        for statement in queries:
            if tables := whole_table_reads(statement["sql"]):
                whole_reads[statement["sql"][:160]] = tables

    assert too_many == {}
    assert whole_reads == {}
