"""The demo story, against a running ``make run`` with the local Stripe sandbox:

1. three sellers onboard (connected accounts created at the sandbox);
2. a buyer orders items from all three (sellers, order and items written with the Django ORM:
   the service has no public order API);
3. the buyer pays: a payment intent with ``metadata.order_id`` is created and confirmed at the
   sandbox, which sends the signed ``payment_intent.succeeded`` webhook to the web app; the
   Celery worker then pays each seller with a Stripe transfer;
4. the buyer is refunded in full at the sandbox, which sends ``refund.created``; on its next
   tick, beat has the worker reverse every seller's transfer;
5. the final state of each seller transfer is printed.

Nothing here calls the service's code to move money: every step goes through HTTP, Celery and
beat exactly as in production.
"""

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TextIO

import stripe
from django.conf import settings

from marketplace.models import Order, OrderItem, Seller
from marketplace.selectors import order_total
from payouts.models import SellerTransfer
from payouts.transfer.transitions import TransferStatus
from stripe_sandbox.testing import SandboxControl, SandboxControlError

DEFAULT_TIMEOUT = 120.0
POLL_SECONDS = 0.5

# (seller name, [(item, amount in cents)])
CATALOGUE = [
    ("Atelier Nord", [("Merino wool scarf", 4_500), ("Felted mittens", 1_950)]),
    ("Kiln & Co", [("Stoneware mug, pair", 3_200)]),
    ("Paper Lane", [("Letterpress notebook set", 1_275)]),
]

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class DemoFailed(Exception):
    """The story could not go on; the message says what to check."""


def default_web_url() -> str:
    return f"http://127.0.0.1:{os.environ.get('PORT') or 8000}"


def run_story(*, web_url: str, timeout: float, out: TextIO) -> list[SellerTransfer]:
    def say(line: str = "") -> None:
        print(line, file=out, flush=True)

    sandbox = _check_prerequisites(web_url)
    client = stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": settings.SANDBOX_URL},
        max_network_retries=2,
    )

    say(f"service {web_url}, Stripe sandbox {settings.SANDBOX_URL}")
    say("\n1. Three sellers onboard (connected accounts at the sandbox)")
    sellers = []
    for name, _items in CATALOGUE:
        email = f"{name.lower().replace(' ', '.').replace('&', 'and')}@example.com"
        account = client.v1.accounts.create(
            params={"type": "express", "email": email, "metadata": {"seller": name}}
        )
        sellers.append(Seller.objects.create(name=name, email=email, stripe_account_id=account.id))
        say(f"   {name:<14} {account.id}")

    say("\n2. A buyer orders from all three (order written with the ORM: no public order API)")
    order = Order.objects.create(buyer_email="buyer@example.com", currency="usd")
    for seller, (_name, items) in zip(sellers, CATALOGUE, strict=True):
        for description, amount in items:
            OrderItem.objects.create(
                order=order, seller=seller, description=description, amount=amount
            )
            say(f"   {description:<26} {_money(amount):>8}  from {seller.name}")
    say(f"   order {order.pk}, total {_money(order_total(order=order))}")

    say("\n3. The buyer pays; the sandbox sends payment_intent.succeeded to the web app")
    intent = client.v1.payment_intents.create(
        params={
            "amount": order_total(order=order),
            "currency": order.currency,
            "payment_method": "pm_card_visa",
            "confirm": True,
            "metadata": {"order_id": str(order.pk)},
        }
    )
    say(f"   {intent.id} {intent.status}")
    _wait_for(
        order,
        want={TransferStatus.COMPLETED},
        stage="seller transfers",
        hint="the webhook reaches the web app and the Celery worker runs send_transfers",
        timeout=timeout,
        say=say,
    )

    say("\n4. The buyer is refunded in full; the sandbox sends refund.created")
    refund = client.v1.refunds.create(
        params={"payment_intent": intent.id, "metadata": {"order_id": str(order.pk)}}
    )
    say(f"   {refund.id} {refund.status}, {_money(refund.amount)}")
    _wait_for(
        order,
        want={TransferStatus.REVERSED},
        stage="reversals",
        hint=(
            "beat runs process_reversals every REVERSAL_CHECK_INTERVAL (make run: 5s) and the "
            "worker reverses each transfer at Stripe"
        ),
        timeout=timeout,
        say=say,
    )

    order.refresh_from_db()
    transfers = list(order.transfers.select_related("seller").order_by("pk"))
    say(f"\n5. Final state: order {order.pk} is {order.status}")
    say(_table(transfers))
    ledger = sandbox.ledger()
    mine = [t for t in ledger["transfers"] if t["transfer_group"] == f"order_{order.pk}"]
    say(
        f"\n   at the sandbox: {len(mine)} transfers, "
        f"{_money(sum(t['amount'] for t in mine))} transferred, "
        f"{_money(sum(t['amount_reversed'] for t in mine))} reversed, "
        f"{sum(t['reversal_count'] for t in mine)} reversals; "
        f"ledger {'consistent' if ledger['consistent'] else 'INCONSISTENT'}"
    )
    say(f"   audit trail and more: {web_url}/admin/marketplace/order/{order.pk}/change/")
    return transfers


def _check_prerequisites(web_url: str) -> SandboxControl:
    if not getattr(settings, "STRIPE_USES_LOCAL_SANDBOX", False):
        raise DemoFailed("STRIPE_SECRET_KEY is set: the demo runs against the local sandbox only")
    try:
        with _NO_PROXY.open(f"{web_url}/healthz", timeout=5) as response:
            health = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise DemoFailed(f"{web_url}/healthz answered {exc.code}: {exc.read()!r}") from None
    except OSError as exc:
        raise DemoFailed(f"no service at {web_url} ({exc}); start `make run` first") from None
    # Beat is not needed: the workers' wake-ups move the money (and beat's first heartbeat only
    # comes an interval after it starts).
    if any(health.get(name) != "ok" for name in ("database", "redis", "workers")):
        raise DemoFailed(f"the service is unhealthy: {health}")
    sandbox = SandboxControl(settings.SANDBOX_URL)
    try:
        config = sandbox.config()
    except (OSError, SandboxControlError) as exc:
        raise DemoFailed(
            f"no Stripe sandbox at {settings.SANDBOX_URL} ({exc}); `make run` starts it "
            "when STRIPE_SECRET_KEY is unset"
        ) from None
    if not config.get("webhook_url"):
        raise DemoFailed("the sandbox sends no webhooks; start it with --webhook-url")
    return sandbox


def _wait_for(
    order: Order,
    *,
    want: set[str],
    stage: str,
    hint: str,
    timeout: float,
    say: Callable[[str], None],
) -> None:
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    seen = None
    while True:
        rows = list(order.transfers.order_by("pk").values_list("status", "error_message"))
        statuses = sorted(status for status, _ in rows)
        if statuses != seen:
            seen = statuses
            summary = ", ".join(statuses) if statuses else "no transfer rows yet"
            say(f"   {time.monotonic() - started:5.1f}s  {summary}")
        if rows and set(statuses) <= want:
            return
        stuck = [error for status, error in rows if status == TransferStatus.PERMANENTLY_FAILED]
        if stuck:
            raise DemoFailed(f"{stage}: a transfer is permanently_failed: {stuck[0]}")
        if time.monotonic() > deadline:
            raise DemoFailed(f"{stage} not done after {timeout:.0f}s; check that {hint}")
        time.sleep(POLL_SECONDS)


def _money(cents: int) -> str:
    return f"{cents / 100:,.2f}"


def _table(transfers: list[SellerTransfer]) -> str:
    header = (
        "transfer",
        "seller",
        "amount",
        "fee",
        "status",
        "stripe transfer",
        "stripe reversal",
        "reversed",
    )
    rows = [
        (
            str(t.pk),
            t.seller.name,
            _money(t.amount),
            _money(t.platform_fee),
            t.status,
            t.stripe_transfer_id,
            t.stripe_reversal_id,
            _money(t.amount_reversed),
        )
        for t in transfers
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    numeric = {2, 3, 7}

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join(["   " + line(header), "   " + rule, *("   " + line(r) for r in rows)])
