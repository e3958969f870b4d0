"""How long money takes to move after Stripe's webhook: payment → every seller paid, and refund →
every seller's reversal requested at Stripe, with the real processes.

gunicorn (the service's WSGI app), one Celery worker and Celery beat run with the production
default check intervals (``REVERSAL_CHECK_INTERVAL=1m``, ``TRANSFER_RETRY_CHECK_INTERVAL=1m``)
against the Stripe sandbox answering every call after 50 ms. For each of ``--orders`` orders of
three sellers, the buyer pays at the sandbox and this script posts the signed
``payment_intent.succeeded``; once every order is paid it refunds them in full, one every
``--spacing`` seconds, posting each signed ``refund.created``. The sandbox's call log says when
each seller's transfer and reversal was answered.

    .venv/bin/python -m bench.latency [--orders 20] [--spacing 1] [--keep]

Targets: refund → last seller reversal p50 < 1 s, max < 3 s; payment → last transfer p50 < 0.5 s.
"""

import argparse
import http.client
import json
import subprocess
import sys
import time
from contextlib import ExitStack

from bench import harness

WEBHOOK_SECRET = "whsec_bench_latency"
LATENCY_MS = 50
SELLERS_PER_ORDER = 3
WAIT_SECONDS = 120


def start(name: str, command: list[str], env: dict[str, str], log_dir) -> subprocess.Popen:
    with open(log_dir / f"{name}.log", "wb") as log:
        return subprocess.Popen(command, cwd=harness.ROOT, env=env, stdout=log, stderr=log)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def post_event(port: int, event_type: str, obj: dict) -> float:
    """POST one signed event; returns the time it was sent (the clock the sandbox logs in)."""
    body, headers = harness.signed_event(event_type, obj, WEBHOOK_SECRET)
    sent = time.time()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", "/webhooks/stripe/", body, headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"{event_type} answered {response.status}")
    return sent


def wait_for_worker(port: int) -> None:
    """Until ``/healthz`` says a Celery worker answers a ping: a payment posted before would
    time the worker's start-up, not the path of its money."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/healthz")
        checks = json.loads(connection.getresponse().read())
        connection.close()
        if checks.get("workers") == "ok":
            return
        time.sleep(0.2)
    raise RuntimeError(f"no Celery worker answered in {WAIT_SECONDS} s")


def create_orders(conn, client, count: int) -> list[int]:
    """``count`` pending orders of three sellers each, every seller with a connected account."""
    order_ids = []
    for number in range(count):
        sellers = []
        for seat in range(SELLERS_PER_ORDER):
            account = client.post("/v1/accounts", {"type": "express"})["id"]
            sellers.append(
                conn.execute(
                    "INSERT INTO marketplace_seller (name, email, stripe_account_id, created_at) "
                    "VALUES (%s, %s, %s, now()) RETURNING id",
                    [f"seller {number}.{seat}", f"s{number}.{seat}@bench.invalid", account],
                ).fetchone()[0]
            )
        order_id = conn.execute(
            "INSERT INTO marketplace_order (buyer_email, currency, status, "
            "stripe_payment_intent_id, stripe_charge_id, created_at, updated_at) "
            "VALUES ('buyer@bench.invalid', 'usd', 'pending', '', '', now(), now()) RETURNING id"
        ).fetchone()[0]
        for seat, seller_id in enumerate(sellers):
            conn.execute(
                "INSERT INTO marketplace_orderitem (order_id, seller_id, description, amount) "
                "VALUES (%s, %s, %s, %s)",
                [order_id, seller_id, f"item {seat}", 1000 + 250 * seat],
            )
        order_ids.append(order_id)
    return order_ids


def order_total(conn, order_id: int) -> int:
    return conn.execute(
        "SELECT sum(amount) FROM marketplace_orderitem WHERE order_id = %s", [order_id]
    ).fetchone()[0]


def last_answer(control, conn, order_id: int, operation: str) -> float | None:
    """When the sandbox answered the order's last seller call of ``operation``, once all three
    were answered (``None`` before)."""
    rows = conn.execute(
        "SELECT id, stripe_transfer_id FROM payouts_sellertransfer WHERE order_id = %s",
        [order_id],
    ).fetchall()
    if len(rows) < SELLERS_PER_ORDER:
        return None
    answered = []
    for call in control.calls(operation, outcome="performed"):
        done = call["time"] + call["duration_ms"] / 1000
        key, path = call.get("idempotency_key") or "", call["path"]
        for row_id, transfer_id in rows:
            if (operation == "transfers.create" and f"-transfer-{row_id}-" in key) or (
                operation == "reversals.create" and transfer_id and f"/{transfer_id}/" in path
            ):
                answered.append(done)
    return max(answered) if len(answered) >= SELLERS_PER_ORDER else None


def wait_for(control, conn, order_id: int, operation: str) -> float:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        done = last_answer(control, conn, order_id, operation)
        if done is not None:
            return done
        time.sleep(0.02)
    raise RuntimeError(f"order {order_id}: {operation} not done in {WAIT_SECONDS} s")


def summary(name: str, seconds: list[float]) -> list[str]:
    return [
        name,
        str(len(seconds)),
        f"{harness.percentile(seconds, 0.5):.3f}",
        f"{harness.percentile(seconds, 0.9):.3f}",
        f"{max(seconds):.3f}",
    ]


def run(options, db: str, sandbox, log_dir) -> tuple[list[float], list[float]]:
    control = sandbox.control
    control.set_faults("*", latency_ms=LATENCY_MS)
    port = harness.free_port()
    env = harness.service_environment(
        db,
        STRIPE_SECRET_KEY=harness.SANDBOX_KEY,
        STRIPE_API_BASE=sandbox.url,
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        STRIPE_RATE_LIMIT_REDIS_URL=harness.BENCH_REDIS_URL,
        CELERY_BROKER_URL=harness.BENCH_BROKER_URL,
        REVERSAL_CHECK_INTERVAL="1m",
        TRANSFER_RETRY_CHECK_INTERVAL="1m",
        LOG_LEVEL="WARNING",
    )
    python = harness.PYTHON
    commands = {
        "web": [python, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}",
                "--workers", "2"],
        "worker": [python, "-m", "celery", "-A", "config", "worker", "--loglevel=WARNING"],
        "beat": [python, "-m", "celery", "-A", "config", "beat", "--loglevel=WARNING",
                 f"--schedule={log_dir / 'beat-schedule'}"],
    }  # fmt: skip
    with ExitStack() as stack, harness.connect(db) as conn:
        processes = {}
        for name, command in commands.items():
            processes[name] = start(name, command, env, log_dir)
            stack.callback(stop, processes[name])
        harness.wait_until_serving(port, processes["web"], "/healthz")
        client = harness.sandbox_client(sandbox.url)
        orders = create_orders(conn, client, options.orders)
        wait_for_worker(port)
        payments = []
        for order_id in orders:
            intent = client.post(
                "/v1/payment_intents",
                {
                    "amount": order_total(conn, order_id),
                    "currency": "usd",
                    "metadata[order_id]": str(order_id),
                    "confirm": "true",
                    "payment_method": "pm_card_visa",
                },
            )
            sent = post_event(port, "payment_intent.succeeded", intent)
            payments.append(wait_for(control, conn, order_id, "transfers.create") - sent)
        refunds = []
        for order_id in orders:
            paced = time.monotonic() + options.spacing
            intent_id = conn.execute(
                "SELECT stripe_payment_intent_id FROM marketplace_order WHERE id = %s",
                [order_id],
            ).fetchone()[0]
            refund = client.post("/v1/refunds", {"payment_intent": intent_id})
            sent = post_event(port, "refund.created", refund)
            refunds.append(wait_for(control, conn, order_id, "reversals.create") - sent)
            time.sleep(max(paced - time.monotonic(), 0))
    return payments, refunds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=20, help="orders paid then refunded (20)")
    parser.add_argument("--spacing", type=float, default=1.0, help="seconds between refunds (1)")
    parser.add_argument("--db", default="payouts_bench_latency", help="scratch database name")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    options = parser.parse_args()

    harness.print_machine()
    print(
        f"processes: gunicorn (2 workers), one Celery worker, Celery beat; check intervals 1m; "
        f"sandbox latency {LATENCY_MS} ms on every call"
    )
    log_dir = harness.log_directory("bench-latency")
    with (
        harness.scratch_database(options.db, keep=options.keep) as db,
        harness.sandbox_process() as sandbox,
    ):
        payments, refunds = run(options, db, sandbox, log_dir)
    print(f"logs: {log_dir}")
    print("seconds from the webhook to the last seller's call answered at Stripe:")
    harness.print_table(
        ["path", "orders", "p50", "p90", "max"],
        [
            summary("payment -> last transfer", payments),
            summary("refund -> last reversal", refunds),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
