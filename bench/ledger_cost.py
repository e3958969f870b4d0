"""What the book costs: per transition, and for ``ledger_check`` over many transfers.

1. Posting cost: the same named move timed with its entry posted (``shares_changed``: the
   guarded update, the audit row, one balanced entry) and without one (``reversal_failed``, a
   same-state move that posts nothing), each in its own transaction, over ``--moves`` rows.
2. ``ledger_check --no-stripe`` at ``--transfers`` transfers (default 100,000): that many paid,
   refunded and reversed transfers with their four entries each, filled by SQL. (The Stripe
   comparison adds one read per transfer, paced by the shared rate limit: at 90 reads a second,
   100,000 transfers take about 19 minutes; ``--days`` limits it to recent transfers.)

    .venv/bin/python -m bench.ledger_cost [--moves 2000] [--transfers 100000]
"""

import argparse
import subprocess
import sys
import time

from bench import harness

DJANGO_SNIPPET = """
import os, statistics, sys, time
import django
django.setup()
from django.db import transaction
from django.utils import timezone
from payouts.transfer import moves
from payouts.transfer.idempotency import NextAttempt
from payouts.models import SellerTransfer

actor = moves.Actor.worker("bench")
rows = list(SellerTransfer.objects.filter(status="completed").order_by("pk")[: int(sys.argv[1])])
half = len(rows) // 2

def timed(move, rows):
    took = []
    for row in rows:
        started = time.perf_counter()
        with transaction.atomic():
            move(row)
        took.append((time.perf_counter() - started) * 1000)
    return statistics.median(took), sorted(took)[int(len(took) * 0.95)]

scheduled = timed(lambda r: moves.shares_changed(r, refund_target=r.amount, dispute_target=0,
                                                      actor=actor), rows[:half])
pending = [SellerTransfer.objects.get(pk=r.pk) for r in rows[:half]]
again = NextAttempt("k-g0", False)
failed = timed(lambda r: moves.reversal_failed(r, message="bench", follow=again,
                                               retry_at=timezone.now(), actor=actor), pending)
print(f"{scheduled[0]:.3f} {scheduled[1]:.3f} {failed[0]:.3f} {failed[1]:.3f}")
"""

FILL = """
INSERT INTO marketplace_seller (name, email, stripe_account_id, created_at)
SELECT 's' || g, 's' || g || '@bench.invalid', '', now() FROM generate_series(1, %(n)s) g;
INSERT INTO marketplace_order (buyer_email, currency, status, stripe_payment_intent_id,
    stripe_charge_id, created_at, updated_at)
SELECT 'b@bench.invalid', 'usd', 'refunded', '', '', now(), now() FROM generate_series(1, %(n)s);
INSERT INTO payouts_sellertransfer (order_id, seller_id, amount, platform_fee, currency, status,
    stripe_transfer_id, stripe_reversal_id, amount_reversed, reversal_target,
    transfer_idempotency_key, reversal_idempotency_key, read_stripe_first, retry_count,
    error_message, created_at, updated_at)
SELECT g, g, 900, 100, 'usd', 'reversed', 'tr_bench' || g, '', 900, 900, '', '', false, 0, '',
    now(), now()
FROM generate_series(1, %(n)s) g;
INSERT INTO ledger_account (kind) VALUES ('platform_cash'), ('fee_revenue'), ('buyer_refunds');
INSERT INTO ledger_account (kind, seller_id)
SELECT 'seller_payable', g FROM generate_series(1, %(n)s) g;
"""

# Four entries per transfer (payment, transfer, refund share, reversal) with their lines.
ENTRIES = """
WITH kinds(kind, level) AS (VALUES ('payment', 'order'), ('transfer', 'sent'),
                                  ('refund_share', 'target'), ('reversal', 'reversed'))
INSERT INTO ledger_entry (kind, external_id, posted_at, order_id, seller_id, transfer_id,
    stripe_id, memo)
SELECT k.kind, 'bench:' || t.id || ':' || k.level, now(), t.order_id, t.seller_id, t.id, '', ''
FROM payouts_sellertransfer t CROSS JOIN kinds k;
"""
LINES = """
INSERT INTO ledger_line (entry_id, account_id, currency, amount)
SELECT e.id, coalesce(seller.id, platform.id), 'usd', v.amount
FROM ledger_entry e
JOIN (VALUES
    ('payment', 'platform_cash', 1000), ('payment', 'fee_revenue', -100),
    ('payment', 'seller_payable', -900),
    ('transfer', 'seller_payable', 900), ('transfer', 'platform_cash', -900),
    ('refund_share', 'seller_payable', 900), ('refund_share', 'buyer_refunds', -900),
    ('reversal', 'platform_cash', 900), ('reversal', 'seller_payable', -900)
) AS v(kind, account, amount) ON v.kind = e.kind
LEFT JOIN ledger_account seller
    ON v.account = 'seller_payable' AND seller.kind = 'seller_payable'
    AND seller.seller_id = e.seller_id
LEFT JOIN ledger_account platform ON platform.kind = v.account AND platform.seller_id IS NULL;
"""


def manage_timed(db: str, *args: str, env: dict | None = None) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run(
        [harness.PYTHON, "manage.py", *args],
        cwd=harness.ROOT,
        env=env or harness.service_environment(db),
        capture_output=True,
        text=True,
        timeout=3600,
    )
    return time.monotonic() - started, (done.stdout + done.stderr).strip().splitlines()[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moves", type=int, default=2000)
    parser.add_argument("--transfers", type=int, default=100_000)
    parser.add_argument("--db", default="payouts_bench_ledger")
    parser.add_argument("--keep", action="store_true")
    options = parser.parse_args()
    harness.print_machine()
    with harness.scratch_database(options.db, keep=options.keep) as db, harness.connect(db) as conn:
        started = time.monotonic()
        with conn.transaction():
            conn.execute(FILL.replace("%(n)s", str(options.transfers)))
            conn.execute(ENTRIES)
            conn.execute(LINES)
        conn.execute("ANALYZE")
        print(f"filled {options.transfers} transfers and their book in "
              f"{time.monotonic() - started:.1f} s")  # fmt: skip
        seconds, last = manage_timed(db, "ledger_check", "--no-stripe")
        # Rows to move (the book no longer matches them: the check ran first).
        conn.execute(
            "UPDATE payouts_sellertransfer SET status = 'completed', amount_reversed = 0, "
            "reversal_target = 0 WHERE id <= %s",
            [options.moves],
        )
        posting = subprocess.run(
            [harness.PYTHON, "-c", DJANGO_SNIPPET, str(options.moves)],
            cwd=harness.ROOT, env=harness.service_environment(db),
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        print()
        harness.print_table(
            ["measure", "value"],
            [
                ["move with its entry (shares_changed), median ms", posting[0]],
                ["  p95 ms", posting[1]],
                ["move without an entry (reversal_failed), median ms", posting[2]],
                ["  p95 ms", posting[3]],
                [f"ledger_check --no-stripe, {options.transfers} transfers, s", f"{seconds:.1f}"],
                ["  its summary", last.split(": ", 1)[-1]],
            ],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
