"""What reading a seller's bank payout costs at Stripe: calls and seconds per payout as the
number of transfers it carried grows.

For each size, one connected account at the sandbox receives that many real transfers, each
recorded as a completed seller transfer with its destination payment (and one in ten partly
reversed at the sandbox); the sandbox pays the account out (an automatic payout), and a Django
process reads it through the service (``payout_reconcile``: the gateway, the shared rate
limiter on its own Redis database, the real stripe-python client). Printed: the calls the
service made, the calls the sandbox logged, lines, lines matched, whether they add up, seconds.

    .venv/bin/python -m bench.payout_reads [--sizes 100 1000 5000]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from bench import harness
from stripe_sandbox.testing import SandboxControl

DJANGO_SNIPPET = """
import json, sys, time
import django
django.setup()
from marketplace.models import Order, Seller
from payouts.models import Payout, SellerTransfer
from payouts.services.bank_payouts import payout_reconcile

spec = json.load(open(sys.argv[1]))
seller = Seller.objects.create(name="bench", email="b@bench.invalid",
                               stripe_account_id=spec["account"])
orders = Order.objects.bulk_create(
    Order(buyer_email="b@bench.invalid", currency="usd", status="paid") for _ in spec["transfers"]
)
SellerTransfer.objects.bulk_create(
    SellerTransfer(order=order, seller=seller, amount=amount, platform_fee=0, currency="usd",
                   status="completed", stripe_transfer_id=tr, stripe_destination_payment_id=py)
    for order, (tr, py, amount) in zip(orders, spec["transfers"])
)
po = spec["payout"]
payout = Payout.objects.create(seller=seller, stripe_payout_id=po["id"],
                               stripe_account_id=spec["account"], amount=po["amount"],
                               currency=po["currency"], status="paid", automatic=True)
started = time.perf_counter()
result = payout_reconcile(payout_id=payout.pk)
took = time.perf_counter() - started
payout.refresh_from_db()
print(result.calls, result.lines, result.matched, result.unmatched, payout.balanced,
      f"{took:.3f}")
"""


def pay_account(base_url: str, size: int) -> tuple[str, list[tuple[str, str, int]]]:
    """A connected account with ``size`` transfers of 1,000, one in ten reversed by 300."""
    client = harness.sandbox_client(base_url)
    account = client.post("/v1/accounts", {"type": "express"})["id"]

    def create(index: int) -> tuple[str, str, int]:
        made = client.post(
            "/v1/transfers", {"amount": 1000, "currency": "usd", "destination": account}
        )
        if index % 10 == 0:
            client.post(f"/v1/transfers/{made['id']}/reversals", {"amount": 300})
        return made["id"], made["destination_payment"], 1000

    with ThreadPoolExecutor(6) as pool:
        return account, list(pool.map(create, range(size), chunksize=64))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--db", default="payouts_bench_payouts")
    parser.add_argument("--keep", action="store_true")
    options = parser.parse_args()
    harness.print_machine()
    rows = []
    with (
        harness.sandbox_process() as sandbox,
        harness.scratch_database(options.db, keep=options.keep) as db,
    ):
        control = SandboxControl(sandbox.url)
        env = harness.worker_environment(db, sandbox.url)
        for size in options.sizes:
            started = time.monotonic()
            account, transfers = pay_account(sandbox.url, size)
            payout = control.simulate_payout(account)
            print(f"{size} transfers paid out in {time.monotonic() - started:.1f} s")
            listed_before = len(control.calls("balance_transactions.list"))
            with tempfile.NamedTemporaryFile("w", suffix=".json") as spec:
                json.dump({"account": account, "transfers": transfers, "payout": payout}, spec)
                spec.flush()
                out = subprocess.run(
                    [harness.PYTHON, "-c", DJANGO_SNIPPET, spec.name],
                    cwd=harness.ROOT, env=env, capture_output=True, text=True, check=True,
                ).stdout.split()  # fmt: skip
            calls, lines, matched, unmatched, balanced, seconds = out[-6:]
            logged = len(control.calls("balance_transactions.list")) - listed_before
            rows.append([size, calls, logged, lines, matched, unmatched, balanced, seconds])
    print()
    harness.print_table(
        ["transfers", "calls", "sandbox log", "lines", "matched", "unmatched", "adds up", "s"],
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
