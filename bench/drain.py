"""How close the reversal workers drain a backlog to Stripe's rate limit.

A backlog of due ``reversal_pending`` rows, each with a real transfer at the sandbox; the sandbox
answers ``reversals.create`` after 50 ms and admits 100 requests a second (token bucket, burst
100), like Stripe live. Workers (``manage.py process_reversals --drain``) run with the shared
limit at 100/s. For each worker count: reversals per second, the share of the limit, the share
of reversal calls answered 429, and a ledger check that nothing was reversed twice.

    .venv/bin/python -m bench.drain [--rows 3000] [--workers 1 2] [--keep]

Target: at least 0.9 of the limit with at most 1 % of reversal calls rate limited.
"""

import argparse
import sys
import time

from bench import harness

LIMIT_PER_SECOND = 100
LATENCY_MS = 50


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=3000, help="backlog size (default 3000)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts")
    parser.add_argument("--concurrency", type=int, help="REVERSAL_CONCURRENCY (default: app's)")
    parser.add_argument("--max-seconds", type=float, default=600, help="per run (default 600)")
    parser.add_argument("--db", default="payouts_bench_drain", help="scratch database name")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="extra worker env"
    )
    options = parser.parse_args()

    harness.print_machine()
    worker_env = {"STRIPE_MAX_REQUESTS_PER_SECOND": str(LIMIT_PER_SECOND)}
    if options.concurrency:
        worker_env["REVERSAL_CONCURRENCY"] = str(options.concurrency)
    worker_env.update(harness.parse_env_overrides(options.env))
    print(f"worker env: {worker_env}")
    print(
        f"sandbox: reversals.create latency {LATENCY_MS} ms, "
        f"rate limit {LIMIT_PER_SECOND}/s (burst {LIMIT_PER_SECOND})"
    )

    results = []
    clean = True
    with (
        harness.scratch_database(options.db, keep=options.keep) as db,
        harness.sandbox_process() as sandbox,
        harness.connect(db) as conn,
    ):
        for workers in options.workers:
            result = drain_once(sandbox, conn, db, workers, options, worker_env)
            clean &= result["ledger_clean"] and result["all_terminal"]
            results.append(result)

    print()
    print(f"summary ({options.rows} rows, limit {LIMIT_PER_SECOND}/s):")
    harness.print_table(
        ["workers", "wall s", "reversals/s", "of limit", "429 share", "peak RSS MiB", "ledger"],
        [
            [
                r["workers"],
                f"{r['wall']:.1f}",
                f"{r['rate']:.1f}",
                f"{r['rate'] / LIMIT_PER_SECOND:.3f}",
                f"{r['share_429']:.2%}",
                f"{r['peak_rss_mib']:.0f}",
                "clean" if r["ledger_clean"] else "DOUBLE/WRONG",
            ]
            for r in results
        ],
    )
    print("target: >= 0.90 of the limit with <= 1.00 % 429s")
    if not clean:
        print("FAILED: some rows were not reversed exactly once", file=sys.stderr)
        return 1
    return 0


def drain_once(sandbox, conn, db, workers, options, worker_env) -> dict:
    control = sandbox.control
    print(f"\n== {workers} worker process(es), {options.rows} rows")
    control.reset()
    harness.truncate_domain_tables(conn)
    started = time.monotonic()
    amounts = harness.backlog_amounts(options.rows)
    transfer_ids = harness.create_transfers(sandbox.url, amounts)
    harness.insert_reversal_backlog(conn, transfer_ids, amounts)
    print(
        f"backlog: {options.rows} transfers at the sandbox and due rows in {db} "
        f"in {time.monotonic() - started:.1f} s"
    )

    control.set_faults("reversals.create", latency_ms=LATENCY_MS)
    control.set_rate_limit(LIMIT_PER_SECOND, LIMIT_PER_SECOND)
    log_dir = harness.log_directory("bench-drain")
    env = harness.worker_environment(db, sandbox.url, **worker_env)
    run = harness.run_drain_workers(
        workers, env, conn=conn, max_seconds=options.max_seconds, log_dir=log_dir
    )
    control.set_rate_limit(None)

    statuses = dict(
        conn.execute(
            "SELECT status, count(*) FROM payouts_sellertransfer GROUP BY status"
        ).fetchall()
    )
    reversed_rows = statuses.get("reversed", 0)
    calls = control.calls("reversals.create")
    limited = sum(1 for call in calls if call["outcome"] == "rate_limited")
    limited_any = len(control.calls(outcome="rate_limited"))
    performed = [call for call in calls if call["outcome"] == "performed"]
    ledger = harness.check_ledger(control, conn)
    wall = run.seconds_to_terminal or run.seconds_to_exit
    rate = reversed_rows / wall if wall else 0.0
    active = None
    if len(performed) > 1:
        active = performed[-1]["time"] - performed[0]["time"]

    print(f"worker logs: {log_dir}")
    for index, worker in enumerate(run.workers):
        print(
            f"worker {index}: exit {worker.returncode}, peak RSS {worker.peak_rss_kb / 1024:.0f} "
            f"MiB, printed {worker.summary}"
        )
    print(f"rows by status: {statuses}")
    terminal_note = "" if run.seconds_to_terminal is not None else " (never all terminal!)"
    print(f"wall time, launch -> all rows terminal: {wall:.2f} s{terminal_note}")
    print(f"wall time, launch -> last worker exit: {run.seconds_to_exit:.2f} s")
    print(f"reversals per second: {rate:.1f} ({rate / LIMIT_PER_SECOND:.3f} of the limit)")
    if active:
        steady = (len(performed) - 1) / active
        print(
            f"  between first and last performed reversal ({active:.2f} s): {steady:.1f}/s "
            "(excludes process start-up)"
        )
    share_429 = limited / max(len(calls), 1)
    print(
        f"reversal calls: {len(calls)}, rate limited: {limited} ({share_429:.2%}); "
        f"429s on any operation: {limited_any}"
    )
    print(
        f"ledger: {ledger.transfers} transfers, double reversals {ledger.double_reversed}, "
        f"amount != reversed {ledger.wrong_amount}, database disagrees {ledger.db_mismatch}"
    )
    if run.timed_out:
        print("workers were killed at the time limit")
    return {
        "workers": workers,
        "wall": wall,
        "rate": rate,
        "share_429": share_429,
        "peak_rss_mib": max(w.peak_rss_kb for w in run.workers) / 1024,
        "ledger_clean": ledger.clean and ledger.transfers == options.rows,
        "all_terminal": reversed_rows + statuses.get("permanently_failed", 0) == options.rows,
    }


if __name__ == "__main__":
    sys.exit(main())
