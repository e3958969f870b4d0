"""How close the workers drain a backlog to Stripe's per-operation limits, without a 429.

A backlog of due ``pending`` seller transfers (each seller with a connected account at the
sandbox) and of due ``reversal_pending`` rows (each with a real transfer at the sandbox). The
sandbox enforces Stripe's live limits, as token buckets: 100 requests a second in all and 25 a
second on each operation, answering Stripe's 429 beyond them; ``transfers.create`` and
``reversals.create`` answer after 50 ms. Worker processes (``bench/drain_worker.py``: paying and
reversing at once, through the service's own workers) share the limiter in Redis, configured
for the same live limits (``STRIPE_RATE_LIMITS=global=100/s,default=25/s``). For each worker
count: each endpoint's rate (between its first and last performed call, and over the whole run),
its 429s, and that each row was sent exactly once.

    .venv/bin/python -m bench.drain [--rows 2000] [--workers 1 2 4] [--keep]

Target: each endpoint at >= 0.9 of its 25/s, no 429 at all, every row sent exactly once.
"""

import argparse
import subprocess
import sys
import time
from collections import Counter

from bench import harness

GLOBAL_PER_SECOND = 100
OPERATION_PER_SECOND = 25
LATENCY_MS = 50
ENDPOINTS = ("transfers.create", "reversals.create")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2000, help="rows of each backlog")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="processes")
    parser.add_argument("--pay-threads", type=int, default=6, help="paying threads per process")
    parser.add_argument("--concurrency", type=int, default=6, help="REVERSAL_CONCURRENCY")
    parser.add_argument("--max-seconds", type=float, default=400, help="per run")
    parser.add_argument("--db", default="payouts_bench_drain", help="scratch database name")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="extra worker env"
    )
    options = parser.parse_args()

    harness.print_machine()
    worker_env = {
        "STRIPE_RATE_LIMITS": f"global={GLOBAL_PER_SECOND}/s,default={OPERATION_PER_SECOND}/s",
        "REVERSAL_CONCURRENCY": str(options.concurrency),
        "LOG_LEVEL": "WARNING",
    }
    worker_env.update(harness.parse_env_overrides(options.env))
    print(f"worker env: {worker_env}; paying threads per process: {options.pay_threads}")
    print(
        f"sandbox: {GLOBAL_PER_SECOND}/s in all, {OPERATION_PER_SECOND}/s per operation "
        f"(token buckets holding a second); {', '.join(ENDPOINTS)} answer after {LATENCY_MS} ms"
    )

    results = []
    with (
        harness.scratch_database(options.db, keep=options.keep) as db,
        harness.sandbox_process() as sandbox,
        harness.connect(db) as conn,
    ):
        for workers in options.workers:
            results.append(drain_once(sandbox, conn, db, workers, options, worker_env))

    print()
    print(f"summary ({options.rows} transfers to pay and {options.rows} to reverse):")
    rows = []
    for r in results:
        for endpoint in ENDPOINTS:
            e = r["endpoints"][endpoint]
            rows.append(
                [
                    r["workers"],
                    endpoint,
                    e["performed"],
                    f"{e['steady']:.1f}",
                    f"{e['steady'] / OPERATION_PER_SECOND:.3f}",
                    f"{e['overall']:.1f}",
                    e["busiest_second"],
                    e["rate_limited"],
                    "yes" if e["exactly_once"] else "NO",
                ]
            )
    harness.print_table(
        [
            "workers",
            "endpoint",
            "calls",
            "rate/s",
            "of 25/s",
            "overall/s",
            "max in 1 s",
            "429s",
            "exactly once",
        ],
        rows,
    )
    print(
        "rate/s: between the endpoint's first and last performed call; overall/s: rows over "
        "the wall time from launch until none is due (includes process start-up)"
    )
    print("target: >= 0.90 of 25/s on each endpoint, 0 429s, every row sent exactly once")
    clean = all(e["exactly_once"] for r in results for e in r["endpoints"].values())
    if not clean:
        print("FAILED: some rows were not sent exactly once", file=sys.stderr)
        return 1
    return 0


def drain_once(sandbox, conn, db, workers, options, worker_env) -> dict:
    control = sandbox.control
    print(f"\n== {workers} worker process(es)")
    control.reset()
    harness.truncate_domain_tables(conn)
    started = time.monotonic()
    amounts = harness.backlog_amounts(options.rows)
    reversal_transfers = harness.create_transfers(sandbox.url, amounts)
    harness.insert_reversal_backlog(conn, reversal_transfers, amounts)
    payees = harness.create_accounts(sandbox.url, options.rows)
    harness.insert_transfer_backlog(conn, payees, amounts)
    print(f"backlogs ready in {time.monotonic() - started:.1f} s")

    calls_before = {endpoint: len(control.calls(endpoint)) for endpoint in ENDPOINTS}
    for endpoint in ENDPOINTS:
        control.set_faults(endpoint, latency_ms=LATENCY_MS)
    control.set_rate_limit(GLOBAL_PER_SECOND, GLOBAL_PER_SECOND, per_operation=OPERATION_PER_SECOND)
    log_dir = harness.log_directory("bench-drain")
    env = harness.worker_environment(db, sandbox.url, **worker_env)
    command = [
        harness.PYTHON,
        "-m",
        "bench.drain_worker",
        "--pay-threads",
        str(options.pay_threads),
        "--max-seconds",
        str(int(options.max_seconds)),
    ]
    launched = time.monotonic()
    processes = []
    for index in range(workers):
        out = open(log_dir / f"worker{index}.out", "wb")  # noqa: SIM115 - closed below
        err = open(log_dir / f"worker{index}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(command, cwd=harness.ROOT, env=env, stdout=out, stderr=err)
        processes.append((process, out, err))
    done_at = None
    while any(p.poll() is None for p, _, _ in processes):
        if done_at is None:
            due = conn.execute(
                "SELECT count(*) FROM payouts_sellertransfer "
                "WHERE status IN ('pending', 'failed', 'reversal_pending')"
            ).fetchone()[0]
            if due == 0:
                done_at = time.monotonic()
        time.sleep(0.1)
    exited = time.monotonic()
    for _, out, err in processes:
        out.close()
        err.close()
    wall = (done_at or exited) - launched
    control.set_rate_limit(None)
    control.clear_faults()

    statuses = dict(
        conn.execute(
            "SELECT status, count(*) FROM payouts_sellertransfer GROUP BY status"
        ).fetchall()
    )
    print(f"worker logs: {log_dir}")
    for index, (process, _, _) in enumerate(processes):
        summary = (log_dir / f"worker{index}.out").read_text().strip().splitlines()
        print(f"worker {index}: exit {process.returncode}, printed {summary[-1:] or '-'}")
    print(f"rows by status: {statuses}")
    print(f"wall time, launch -> nothing due: {wall:.2f} s")

    endpoints = {}
    for endpoint in ENDPOINTS:
        calls = control.calls(endpoint)[calls_before[endpoint] :]
        endpoints[endpoint] = endpoint_figures(calls, rows=options.rows, wall=wall)
    endpoints["transfers.create"]["exactly_once"] = paid_exactly_once(control, conn, payees)
    endpoints["reversals.create"]["exactly_once"] = reversed_exactly_once(
        control, conn, reversal_transfers
    )
    for endpoint, e in endpoints.items():
        print(
            f"{endpoint}: {e['performed']} performed, {e['rate_limited']} answered 429, "
            f"{e['steady']:.1f}/s steady ({e['steady'] / OPERATION_PER_SECOND:.3f} of 25/s), "
            f"{e['overall']:.1f}/s overall, at most {e['busiest_second']} in any second, "
            f"exactly once: {e['exactly_once']}"
        )
    limited_any = len(control.calls(outcome="rate_limited"))
    print(f"429s on any operation: {limited_any}")
    return {"workers": workers, "wall": wall, "endpoints": endpoints}


def endpoint_figures(calls: list[dict], *, rows: int, wall: float) -> dict:
    performed = sorted(c["time"] for c in calls if c["outcome"] == "performed")
    steady = 0.0
    if len(performed) > 1 and performed[-1] > performed[0]:
        steady = (len(performed) - 1) / (performed[-1] - performed[0])
    # The most calls Stripe saw in any one-second span (a sliding window over the arrivals).
    busiest, start = 0, 0
    for end, at in enumerate(performed):
        while at - performed[start] >= 1.0:
            start += 1
        busiest = max(busiest, end - start + 1)
    return {
        "performed": len(performed),
        "rate_limited": sum(1 for c in calls if c["outcome"] == "rate_limited"),
        "steady": steady,
        "overall": len(performed) / wall if wall else 0.0,
        "busiest_second": busiest,
    }


def reversed_exactly_once(control, conn, transfer_ids: list[str]) -> bool:
    """Each backlog transfer reversed exactly once at the sandbox, in full, and its row agreeing
    with the sandbox on how much."""
    wanted = set(transfer_ids)
    ours = dict(
        conn.execute(
            "SELECT stripe_transfer_id, amount_reversed FROM payouts_sellertransfer "
            "WHERE stripe_transfer_id = ANY(%s)",
            [transfer_ids],
        ).fetchall()
    )
    at_stripe = [t for t in control.ledger()["transfers"] if t["id"] in wanted]
    once = sum(t["reversal_count"] == 1 for t in at_stripe)
    full = sum(t["amount_reversed"] == t["amount"] for t in at_stripe)
    agree = sum(ours.get(t["id"]) == t["amount_reversed"] for t in at_stripe)
    print(
        f"reversed: {len(at_stripe)} transfers, {once} reversed exactly once, {full} in full, "
        f"{agree} rows agreeing with the sandbox"
    )
    return len(at_stripe) == once == full == agree == len(transfer_ids)


def paid_exactly_once(control, conn, payees: list[str]) -> bool:
    """Each payee's account received exactly one transfer, for its row's amount, and each row
    records that transfer."""
    received = Counter(
        t["destination"] for t in control.ledger()["transfers"] if t["destination"] in set(payees)
    )
    rows = dict(
        conn.execute(
            "SELECT s.stripe_account_id, t.stripe_transfer_id FROM payouts_sellertransfer t "
            "JOIN marketplace_seller s ON s.id = t.seller_id WHERE s.account_status = 'ready' "
            "AND t.status = 'completed'"
        ).fetchall()
    )
    once = all(received[account] == 1 for account in payees)
    recorded = len(rows) == len(payees) and all(rows.get(account) for account in payees)
    print(
        f"paid: {sum(received.values())} transfers to {len(received)} of {len(payees)} payees; "
        f"{len(rows)} rows completed with a transfer id"
    )
    return once and recorded


if __name__ == "__main__":
    sys.exit(main())
