"""Webhook intake throughput and latency against trivial requests in the same server.

gunicorn serves ``bench.trivial_wsgi`` (the service's WSGI application plus two constant
JSON answers) with sync workers on a free port, on a scratch database, with
``config.settings.local`` and DEBUG off. Client processes with threads (16 requests in flight
in all) then run, one after the other, for at most ``--requests`` requests or ``--seconds``
each:

* ``trivial WSGI``: ``GET /bench/trivial``, answered before Django;
* ``trivial Django view``: ``GET /bench/trivial-django``, the full middleware stack;
* ``customer.created``: signed events the service stores in its inbox and ignores;
* ``charge.succeeded``: a charge-like event of another type it does not handle.

Every event has its own id and a fresh ``Stripe-Signature`` (``tests/stripe_events.sign``,
secret ``whsec_local_sandbox``). Printed: requests per second, p50 and p99 latency, and the
webhook's share of each trivial baseline; the inbox is checked afterwards.

    .venv/bin/python -m bench.webhook_intake [--requests 5000] [--seconds 20] [--keep]

Target: webhook throughput at least 0.5 of the trivial view, p99 under 100 ms.
"""

import argparse
import http.client
import multiprocessing
import statistics
import subprocess
import sys
import threading
import time
import uuid

from bench import harness

WEBHOOK_SECRET = "whsec_local_sandbox"
SCENARIOS = {
    "trivial WSGI": ("GET", "/bench/trivial", None),
    "trivial Django view": ("GET", "/bench/trivial-django", None),
    "customer.created": ("POST", "/webhooks/stripe/", "customer.created"),
    "charge.succeeded": ("POST", "/webhooks/stripe/", "charge.succeeded"),
}


def event_object(event_type: str, number: int) -> dict:
    if event_type == "customer.created":
        return {
            "id": f"cus_bench{number}",
            "object": "customer",
            "email": f"buyer{number}@bench.invalid",
            "metadata": {},
        }
    return {
        "id": f"ch_bench{number}",
        "object": "charge",
        "amount": 1000 + number % 1000,
        "currency": "usd",
        "status": "succeeded",
        "paid": True,
        "payment_intent": f"pi_bench{number}",
        "metadata": {"order_id": str(number)},
    }


def client_process(port, method, path, event_type, quota, threads, start_at, deadline, nonce):
    """Send up to ``quota`` requests with ``threads`` threads, new connection each (gunicorn's
    sync workers close it after every answer). Returns latencies (ms) of 2xx answers and the
    other outcomes by name."""
    latencies: list[float] = []
    failures: dict[str, int] = {}
    lock = threading.Lock()
    counter = iter(range(quota))
    prefix = f"evt_bench_{nonce}_{multiprocessing.current_process().pid}_"

    def one(number: int) -> None:
        body, headers = None, {}
        if event_type:
            body, headers = harness.signed_event(
                event_type,
                event_object(event_type, number),
                WEBHOOK_SECRET,
                event_id=f"{prefix}{number}",
            )
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            outcome = None if 200 <= response.status < 300 else f"HTTP {response.status}"
        except (OSError, http.client.HTTPException) as exc:
            outcome = type(exc).__name__
        finally:
            connection.close()
        elapsed = (time.perf_counter() - started) * 1000
        with lock:
            if outcome is None:
                latencies.append(elapsed)
            else:
                failures[outcome] = failures.get(outcome, 0) + 1

    def loop() -> None:
        while time.time() < deadline:
            with lock:
                number = next(counter, None)
            if number is None:
                return
            one(number)

    time.sleep(max(start_at - time.time(), 0))
    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return latencies, failures, time.time()


def run_scenario(port, scenario, *, requests, seconds, processes, threads) -> dict:
    method, path, event_type = SCENARIOS[scenario]
    nonce = uuid.uuid4().hex[:8]
    start_at = time.time() + 0.3
    deadline = start_at + seconds
    quota = -(-requests // processes)
    context = multiprocessing.get_context("fork")
    with context.Pool(processes) as pool:
        parts = pool.starmap(
            client_process,
            [
                (port, method, path, event_type, quota, threads, start_at, deadline, nonce)
                for _ in range(processes)
            ],
        )
    latencies = [ms for part in parts for ms in part[0]]
    failures: dict[str, int] = {}
    for part in parts:
        for name, count in part[1].items():
            failures[name] = failures.get(name, 0) + count
    elapsed = max(part[2] for part in parts) - start_at
    return {
        "scenario": scenario,
        "ok": len(latencies),
        "failures": failures,
        "elapsed": elapsed,
        "rps": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": harness.percentile(latencies, 0.99) if latencies else float("nan"),
        "max": max(latencies) if latencies else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="per scenario (default 5000)")
    parser.add_argument("--seconds", type=float, default=20, help="per scenario (default 20)")
    parser.add_argument("--gunicorn-workers", type=int, default=4, help="sync workers (4)")
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--client-threads", type=int, default=4, help="per client process")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests per scenario")
    parser.add_argument("--db", default="payouts_bench_webhook", help="scratch database name")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    options = parser.parse_args()

    harness.print_machine()
    in_flight = options.client_processes * options.client_threads
    print(
        f"server: gunicorn, {options.gunicorn_workers} sync workers; client: "
        f"{options.client_processes} processes x {options.client_threads} threads = {in_flight} "
        f"in flight; up to {options.requests} requests or {options.seconds:.0f} s per scenario"
    )
    results = []
    with harness.scratch_database(options.db, keep=options.keep) as db:
        port = harness.free_port()
        log_dir = harness.log_directory("bench-webhook")
        env = harness.service_environment(
            db, STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET, STRIPE_SECRET_KEY=""
        )
        command = [
            harness.PYTHON, "-m", "gunicorn",
            "--bind", f"127.0.0.1:{port}",
            "--workers", str(options.gunicorn_workers),
            "--worker-class", "sync",
            "--timeout", "60",
            "bench.trivial_wsgi:application",
        ]  # fmt: skip
        with open(log_dir / "gunicorn.log", "wb") as log:
            server = subprocess.Popen(command, cwd=harness.ROOT, env=env, stdout=log, stderr=log)
        try:
            harness.wait_until_serving(port, server, "/bench/trivial-django", timeout=30)
            print(f"gunicorn on 127.0.0.1:{port}, log {log_dir / 'gunicorn.log'}")
            for scenario in SCENARIOS:
                common = {"processes": options.client_processes, "threads": options.client_threads}
                run_scenario(port, scenario, requests=options.warmup, seconds=10, **common)
                result = run_scenario(
                    port, scenario, requests=options.requests, seconds=options.seconds, **common
                )
                results.append(result)
                print(
                    f"{scenario:>20}: {result['ok']} ok in {result['elapsed']:.1f} s, "
                    f"{result['rps']:.0f} req/s, p50 {result['p50']:.1f} ms, "
                    f"p99 {result['p99']:.1f} ms, max {result['max']:.1f} ms, "
                    f"other outcomes {result['failures'] or 'none'}"
                )
        finally:
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        with harness.connect(db) as conn:
            inbox = conn.execute(
                "SELECT type, outcome, count(*) FROM payouts_webhookevent GROUP BY 1, 2 ORDER BY 1"
            ).fetchall()
    print("inbox: " + ", ".join(f"{t} {o} {n}" for t, o, n in inbox))

    by_name = {r["scenario"]: r for r in results}
    print()
    print("summary:")
    harness.print_table(
        ["scenario", "req/s", "p50 ms", "p99 ms", "of WSGI", "of Django view"],
        [
            [
                r["scenario"],
                f"{r['rps']:.0f}",
                f"{r['p50']:.1f}",
                f"{r['p99']:.1f}",
                f"{r['rps'] / by_name['trivial WSGI']['rps']:.2f}",
                f"{r['rps'] / by_name['trivial Django view']['rps']:.2f}",
            ]
            for r in results
        ],
    )
    print("target: webhook >= 0.5 of the trivial view's req/s, p99 < 100 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
