"""A reversal worker's peak memory while it drains a backlog, at two backlog sizes, to show that
it does not grow with the backlog (a worker that loads every due row at once would).

For each size in ``--rows``: a backlog of due ``reversal_pending`` rows with real transfers at
the sandbox (no latency, no rate limit), one ``manage.py process_reversals --drain`` worker with
the shared rate limiter off. Its peak RSS is ``VmHWM`` polled from ``/proc/<pid>/status`` every
0.1 s until it exits. Also printed: the ``peak_rss_kb`` the command reports and ``ru_maxrss`` from
``wait4``; both are ``ru_maxrss``, which on Linux also counts the address space the worker's
``exec`` replaced, i.e. this script's own peak RSS when it spawned the worker (also printed).

    .venv/bin/python -m bench.memory [--rows 5000 50000] [--keep]

Target: the same peak, within a few MiB, at both sizes.
"""

import argparse
import os
import sys
import time

from bench import harness


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[5000, 50_000], help="sizes")
    parser.add_argument("--max-seconds", type=float, default=1800, help="per drain")
    parser.add_argument("--db", default="payouts_bench_memory", help="scratch database name")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="extra worker env"
    )
    options = parser.parse_args()

    harness.print_machine()
    worker_env = {"STRIPE_RATE_LIMITS": "off"}  # the shared limiter is off
    worker_env.update(harness.parse_env_overrides(options.env))
    print(f"worker env: {worker_env}")
    results = []
    clean = True
    with (
        harness.scratch_database(options.db, keep=options.keep) as db,
        harness.sandbox_process() as sandbox,
        harness.connect(db) as conn,
    ):
        for rows in options.rows:
            result = drain_and_measure(sandbox, conn, db, rows, options, worker_env)
            clean &= result["clean"]
            results.append(result)

    print()
    print("summary: one worker draining the backlog")
    harness.print_table(
        [
            "rows",
            "reversed",
            "wall s",
            "rows/s",
            "peak RSS (VmHWM)",
            "command's peak_rss_kb",
            "ru_maxrss",
            "spawner peak RSS",
        ],
        [
            [
                f"{r['rows']:,}",
                f"{r['reversed']:,}",
                f"{r['wall']:.1f}",
                f"{r['reversed'] / r['wall']:.0f}",
                _mib(r["hwm_kb"]),
                _mib(r["printed_kb"]),
                _mib(r["maxrss_kb"]),
                _mib(r["spawner_kb"]),
            ]
            for r in results
        ],
    )
    if len(results) > 1:
        growth = (results[-1]["hwm_kb"] - results[0]["hwm_kb"]) / 1024
        print(
            f"peak growth from {results[0]['rows']:,} to {results[-1]['rows']:,} rows: "
            f"{growth:+.1f} MiB"
        )
    if not clean:
        print("FAILED: some rows were not reversed exactly once", file=sys.stderr)
        return 1
    return 0


def _mib(kb: int | None) -> str:
    return f"{kb / 1024:.1f} MiB" if kb else "n/a"


def drain_and_measure(sandbox, conn, db, rows, options, worker_env) -> dict:
    control = sandbox.control
    print(f"\n== {rows:,} rows, one worker")
    control.reset()
    harness.truncate_domain_tables(conn)
    started = time.monotonic()
    amounts = harness.backlog_amounts(rows)
    transfer_ids = harness.create_transfers(sandbox.url, amounts)
    harness.insert_reversal_backlog(conn, transfer_ids, amounts)
    print(f"backlog ready in {time.monotonic() - started:.1f} s")

    log_dir = harness.log_directory("bench-memory")
    env = harness.worker_environment(db, sandbox.url, **worker_env)
    spawner_kb = harness.proc_status_kb(os.getpid(), "VmHWM")
    run = harness.run_drain_workers(
        1, env, conn=conn, max_seconds=options.max_seconds, log_dir=log_dir
    )
    worker = run.workers[0]
    reversed_rows = conn.execute(
        "SELECT count(*) FROM payouts_sellertransfer WHERE status = 'reversed'"
    ).fetchone()[0]
    ledger = harness.check_ledger(control, conn)
    wall = run.seconds_to_terminal or run.seconds_to_exit
    print(f"worker log: {worker.stderr_path}")
    print(f"worker exit {worker.returncode}, printed {worker.summary}")
    print(
        f"reversed {reversed_rows:,} of {rows:,} in {wall:.1f} s; peak RSS (VmHWM) "
        f"{_mib(worker.hwm_kb)}; command's peak_rss_kb {_mib(worker.summary.get('peak_rss_kb'))}"
        f", ru_maxrss {_mib(worker.maxrss_kb)} (spawner's peak RSS: {_mib(spawner_kb)})"
    )
    print(
        f"ledger: double reversals {ledger.double_reversed}, amount != reversed "
        f"{ledger.wrong_amount}, database disagrees {ledger.db_mismatch}"
    )
    return {
        "rows": rows,
        "reversed": reversed_rows,
        "wall": wall,
        "printed_kb": worker.summary.get("peak_rss_kb"),
        "maxrss_kb": worker.maxrss_kb,
        "hwm_kb": worker.hwm_kb,
        "spawner_kb": spawner_kb,
        "clean": ledger.clean and reversed_rows == rows,
    }


if __name__ == "__main__":
    sys.exit(main())
