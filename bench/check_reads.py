"""What ``ledger_check`` costs at Stripe: calls and wall time, one read per transfer (before)
against pages of 100 by creation time (now).

A day of paid transfers: ``--transfers`` real transfers at the sandbox (a tenth of them reversed
in part there), and their rows in the scratch database, all created today. The sandbox enforces
Stripe's live limits (100 requests a second in all, 25 on each operation) and counts every call.
``ledger_check`` (the full run) is timed twice in a process of its own, without the Stripe leg
and with it; the difference is the Stripe leg. "before" runs the code of ``--before`` (a git
revision, extracted with ``git archive``; its single shared limit at 25/s, what one operation
may use at Stripe); "after" runs this tree with ``STRIPE_RATE_LIMITS=global=100/s,default=25/s``
(the checks' share: 20/s). ``--after-only N …`` adds larger days for the paged reader alone
(reading them one by one would take hours of the shared machine).

    .venv/bin/python -m bench.check_reads [--transfers 5000] [--after-only 50000] [--before REV]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import harness

# A budget of its own in the limiter's Redis database (the namespace is a digest of the key).
CHECK_KEY = "sk_test_bench_check_reads"

SNIPPET = """
import json, time
import django
django.setup()
from payouts.services.ledger_check import ledger_check
started = time.monotonic()
ledger_check(stripe=False)
book = time.monotonic() - started
started = time.monotonic()
run, found = ledger_check()
full = time.monotonic() - started
stripe_breaks = sum(1 for f in found if f.kind == "transfer_stripe")
print(json.dumps({"book": book, "full": full, "checked": run.transfers_checked,
                  "stripe_breaks": stripe_breaks}))
"""

ROWS = """
INSERT INTO marketplace_seller (name, email, stripe_account_id, created_at)
SELECT 's' || g, 's' || g || '@bench.invalid', '', now() FROM unnest(%(ids)s::text[])
    WITH ORDINALITY AS t(id, g);
INSERT INTO marketplace_order (buyer_email, currency, status, stripe_payment_intent_id,
    stripe_charge_id, created_at, updated_at)
SELECT 'b@bench.invalid', 'usd', 'paid', '', '', now(), now()
FROM unnest(%(ids)s::text[]) WITH ORDINALITY AS t(id, g);
INSERT INTO payouts_sellertransfer (order_id, seller_id, amount, platform_fee, currency, status,
    stripe_transfer_id, stripe_reversal_id, amount_reversed, reversal_target,
    transfer_idempotency_key, reversal_idempotency_key, read_stripe_first, retry_count,
    error_message, created_at, updated_at)
SELECT g, g, t.amount, 0, 'usd',
    CASE WHEN t.back > 0 THEN 'partially_reversed' ELSE 'completed' END,
    t.id, '', t.back, t.back, '', '', false, 0, '', now(), now()
FROM unnest(%(ids)s::text[], %(amounts)s::bigint[], %(back)s::bigint[])
    WITH ORDINALITY AS t(id, amount, back, g);
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transfers", type=int, default=5000, help="the day measured twice")
    parser.add_argument("--after-only", type=int, nargs="*", default=[], help="larger days")
    parser.add_argument(
        "--before",
        help="git revision of the old reader (default: where this branch left main; "
        "`none` measures the current code only)",
    )
    parser.add_argument("--db", default="payouts_bench_check_reads")
    parser.add_argument("--keep", action="store_true")
    options = parser.parse_args()
    harness.print_machine()

    results = []
    with (
        harness.scratch_database(options.db, keep=options.keep) as db,
        harness.sandbox_process() as sandbox,
        harness.connect(db) as conn,
        tempfile.TemporaryDirectory(prefix="bench-before-") as before_dir,
    ):
        runs = [(options.transfers, "after")]
        if options.before != "none":
            extract(options.before or merge_base(), Path(before_dir))
            runs.insert(0, (options.transfers, "before"))
        runs += [(size, "after") for size in options.after_only]
        filled = None
        for size, which in runs:
            if filled != size:
                fill(sandbox, conn, size)
                filled = size
            code = Path(before_dir) if which == "before" else harness.ROOT
            results.append(measure(sandbox, db, size, which, code))

    print()
    print("ledger_check (full run) on one day of transfers, Stripe at live limits:")
    harness.print_table(
        [
            "day",
            "code",
            "transfers.retrieve",
            "transfers.list",
            "events.list",
            "calls",
            "Stripe leg s",
            "total s",
        ],
        [
            [
                r["size"],
                r["which"],
                r["retrieve"],
                r["list"],
                r["events"],
                r["retrieve"] + r["list"] + r["events"],
                f"{r['full'] - r['book']:.1f}",
                f"{r['full']:.1f}",
            ]
            for r in results
        ],
    )
    if any(r["stripe_breaks"] for r in results):
        print("FAILED: the check found differences with Stripe", file=sys.stderr)
        return 1
    return 0


def merge_base() -> str:
    done = subprocess.run(
        ["git", "merge-base", "HEAD", "main"],
        cwd=harness.ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def extract(revision: str, into: Path) -> None:
    """The old code, as it was at ``revision`` (nothing in the repository is touched)."""
    archive = subprocess.run(
        ["git", "archive", revision], cwd=harness.ROOT, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    print(f"before: the code of {revision} extracted to {into}")


def fill(sandbox, conn, size: int) -> None:
    control = sandbox.control
    control.reset()
    control.set_rate_limit(None)
    harness.truncate_domain_tables(conn)
    conn.execute("TRUNCATE ledger_break, ledger_checkrun RESTART IDENTITY CASCADE")
    started = time.monotonic()
    amounts = harness.backlog_amounts(size)
    ids = harness.create_transfers(sandbox.url, amounts)
    back = [amount // 2 if index % 10 == 0 else 0 for index, amount in enumerate(amounts)]
    for transfer_id, amount in zip(ids, back, strict=True):
        if amount:
            control.reverse_out_of_band(transfer_id, amount)
    with conn.transaction():
        for statement in ROWS.split(";"):
            if statement.strip():
                conn.execute(statement, {"ids": ids, "amounts": amounts, "back": back})
    conn.execute("ANALYZE")
    print(f"\nfilled a day of {size} transfers in {time.monotonic() - started:.1f} s")


def measure(sandbox, db: str, size: int, which: str, code: Path) -> dict:
    control = sandbox.control
    control.set_rate_limit(100, 100, per_operation=25)
    operations = ("transfers.retrieve", "transfers.list", "events.list")
    before = {op: len(control.calls(op)) for op in operations}
    env = harness.worker_environment(db, sandbox.url, LOG_LEVEL="WARNING")
    env["STRIPE_SECRET_KEY"] = CHECK_KEY
    env["PYTHONPATH"] = str(code)
    env.pop("STRIPE_RATE_LIMITS", None)
    env.pop("STRIPE_MAX_REQUESTS_PER_SECOND", None)
    if which == "before":
        env["STRIPE_MAX_REQUESTS_PER_SECOND"] = "25"
    else:
        env["STRIPE_RATE_LIMITS"] = "global=100/s,default=25/s"
    started = time.monotonic()
    done = subprocess.run(
        [harness.PYTHON, "-c", SNIPPET],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
        timeout=7200,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures.update(
        size=size,
        which=which,
        retrieve=len(control.calls("transfers.retrieve")) - before["transfers.retrieve"],
        list=len(control.calls("transfers.list")) - before["transfers.list"],
        events=len(control.calls("events.list")) - before["events.list"],
        limited=len(control.calls(outcome="rate_limited")),
    )
    control.set_rate_limit(None)
    print(
        f"{which} at {size}: {figures['retrieve']} transfers.retrieve, {figures['list']} "
        f"transfers.list, {figures['limited']} 429s so far; book {figures['book']:.1f} s, with "
        f"Stripe {figures['full']:.1f} s (process {time.monotonic() - started:.1f} s); "
        f"{figures['checked']} checked, {figures['stripe_breaks']} differences with Stripe"
    )
    return figures


if __name__ == "__main__":
    sys.exit(main())
