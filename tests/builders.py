"""Scenario builders shared by the test modules.

A builder goes through the Stripe sandbox (and, where it says so, the service's own webhook), so
the rows it returns agree with what Stripe holds. Rows put straight into the database, in any
status, come from ``tests/factories.py``; fixtures (the sandbox, a Stripe client, the after-commit
guard) live in ``tests/conftest.py``. Test modules import from here and from factories, never
from one another (``tests/test_suite_layout.py`` checks it).

- Stripe events: ``WEBHOOK_SECRET``, ``make_event``, ``sign``, ``post_event``,
  ``post_event_over_http``, ``STRIPE_500``
- sellers and orders: ``connected_seller``, ``seller_order``, ``paid_intent``, ``paid_order``,
  ``refund_at_stripe``
- transfers: ``stripe_transfer``, ``due_row``, ``make_due``, ``age_transfer``,
  ``transfers_at_stripe_for``, ``returned_at_stripe``
- worker processes: ``reversal_backlog``, ``worker_environment``, ``reserves_backlog``,
  ``debts_backlog``, ``order_refunded``
- the book against Stripe: ``ledger_check_command``
"""

import hashlib
import hmac
import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import requests
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.db.models import F
from django.test import TestCase
from django.utils import timezone

import ledger.services
from ledger.selectors import seller_balances
from marketplace.models import Order, Seller
from marketplace.selectors import order_total
from marketplace.services import order_mark_paid
from payouts import tasks
from payouts.models import SellerTransfer
from payouts.services.policies import seller_policy_set
from payouts.services.transfers import order_settle
from payouts.transfer.moves import book_ref
from payouts.transfer.transitions import TransferStatus
from tests.factories import (
    OrderFactory,
    OrderItemFactory,
    PaidOrderFactory,
    SellerFactory,
    SellerTransferFactory,
    UserFactory,
)

# --- Stripe events, signed exactly as Stripe signs them ----------------------------------------

WEBHOOK_SECRET = "whsec_test_suite"
CONNECT_WEBHOOK_SECRET = "whsec_test_suite_connect"
# A scripted sandbox answer: Stripe failed with a 500 (and performed nothing).
STRIPE_500 = {"status": 500, "error": {"type": "api_error", "message": "boom"}}


def make_event(event_type: str, obj: dict, *, event_id: str | None = None) -> dict:
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "type": event_type,
        "livemode": False,
        "data": {"object": obj},
    }


def sign(body: bytes, secret: str = WEBHOOK_SECRET, *, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def post_connect_event(
    client, event_type: str, obj: dict, *, account: str, secret=None, created: int | None = None
):
    """POST a connected account's event to the Connect endpoint, signed with its own secret.
    ``created``: when Stripe made the event (Unix seconds; now by default)."""
    event = {**make_event(event_type, obj), "account": account}
    if created is not None:
        event["created"] = created
    body = json.dumps(event).encode()
    return client.post(
        "/webhooks/stripe/connect/",
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign(body, secret or CONNECT_WEBHOOK_SECRET),
    )


def post_signed_connect_event(client, event: dict):
    """POST an event the sandbox made for a connected account (it carries its ``account``) to
    the Connect endpoint, signed with the Connect secret, as Stripe delivers it."""
    body = json.dumps(event).encode()
    return client.post(
        "/webhooks/stripe/connect/",
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign(body, CONNECT_WEBHOOK_SECRET),
    )


def deliver_payout_events(client, sandbox, payout_id: str) -> list[dict]:
    """Deliver the sandbox's ``payout.*`` events of ``payout_id`` to the Connect endpoint, in the
    order they were made, running what they start after commit (reading the payout at
    Stripe); each must be answered 200. Returns the events."""
    events = [
        event
        for event in sandbox.events()
        if event["type"].startswith("payout.") and event["data"]["object"]["id"] == payout_id
    ]
    for event in events:
        with TestCase.captureOnCommitCallbacks(execute=True):
            response = post_signed_connect_event(client, event)
        assert response.status_code == 200, response.content
    return events


def post_event(client, event: dict, *, secret: str = WEBHOOK_SECRET):
    """POST ``event`` to the webhook endpoint with a valid signature, through Django's test
    client (in the test's thread and transaction)."""
    body = json.dumps(event).encode()
    return client.post(
        "/webhooks/stripe/",
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign(body, secret),
    )


def post_event_over_http(server_url: str, event: dict) -> int:
    """POST ``event``, signed, to a running server's webhook endpoint over real HTTP (a live
    server, from a thread of its own); the status code. The thread's database connections are
    closed after, so the test database can be dropped."""
    body = json.dumps(event).encode()
    try:
        return requests.post(
            f"{server_url}/webhooks/stripe/",
            data=body,
            headers={"Stripe-Signature": sign(body), "Content-Type": "application/json"},
            timeout=20,
        ).status_code
    finally:
        connections.close_all()


# --- Sellers and orders, paid at the sandbox ---------------------------------------------------


def connected_seller(stripe_client, **fields) -> Seller:
    """A seller with an Express account connected at the sandbox."""
    account = stripe_client.v1.accounts.create(params={"type": "express"})
    return SellerFactory(stripe_account_id=account.id, **fields)


ItemAmounts = int | tuple[int, ...]


def seller_order(
    stripe_client,
    amounts: Sequence[ItemAmounts],
    *,
    sellers: Sequence[Seller] | None = None,
    currency: str = "usd",
) -> Order:
    """A pending order in ``currency`` with one seller per entry of ``amounts``: an item of that
    amount, or one item per amount of a tuple. Each seller is connected at the sandbox, unless
    ``sellers`` gives them."""
    order = OrderFactory(currency=currency)
    sellers = sellers or [connected_seller(stripe_client) for _ in amounts]
    for seller, entry in zip(sellers, amounts, strict=True):
        for amount in entry if isinstance(entry, tuple) else (entry,):
            OrderItemFactory(order=order, seller=seller, amount=amount)
    return order


def paid_intent(stripe_client, order: Order) -> dict:
    """A payment intent for ``order``'s total, confirmed (succeeded) at the sandbox."""
    intent = stripe_client.v1.payment_intents.create(
        params={
            "amount": order_total(order=order),
            "currency": order.currency,
            "metadata": {"order_id": str(order.pk)},
            "confirm": True,
            "payment_method": "pm_card_visa",
        }
    )
    return intent.to_dict()


def paid_order(
    stripe_client,
    amounts: Sequence[ItemAmounts],
    *,
    webhook=None,
    mark_paid: bool = True,
    unpaid: Collection[int] = (),
    sellers: Sequence[Seller] | None = None,
    currency: str = "usd",
) -> tuple[Order, list[SellerTransfer]]:
    """``seller_order(amounts)``, its buyer's payment succeeded at the sandbox; the order and its
    seller transfer rows, in the order of ``amounts``.

    - ``webhook`` (a Django test client): the service hears of the payment as in production.
      The signed ``payment_intent.succeeded`` is posted to the endpoint (which must answer 200)
      and what it queued for after its commit runs: each seller is paid, or meets whatever the
      sandbox was scripted to answer.
    - ``mark_paid=False``: the service has not heard of it yet. The order is pending, carrying
      the payment intent's id as the checkout left it; no rows.
    - otherwise the order is marked paid directly, its rows are created and each seller is paid
      at the sandbox, except the sellers at the indices in ``unpaid``: their rows stay
      ``pending``, never sent.
    """
    order = seller_order(stripe_client, amounts, sellers=sellers, currency=currency)
    intent = paid_intent(stripe_client, order)
    if webhook is not None:
        assert mark_paid and not unpaid, "through the webhook every seller is sent"
        with TestCase.captureOnCommitCallbacks(execute=True):
            response = post_event(webhook, make_event("payment_intent.succeeded", intent))
        assert response.status_code == 200, response.content
    elif not mark_paid:
        Order.objects.filter(pk=order.pk).update(stripe_payment_intent_id=intent["id"])
    else:
        order_mark_paid(
            order=order,
            amount=intent["amount_received"],
            currency=intent["currency"],
            payment_intent_id=intent["id"],
            charge_id=intent["latest_charge"],
        )
        order.refresh_from_db()
        order_settle(order=order)
        rows = _rows_by_seller(order)
        _send_all_but(order, held=[rows[index] for index in unpaid])
    order.refresh_from_db()
    return order, _rows_by_seller(order)


def _rows_by_seller(order: Order) -> list[SellerTransfer]:
    """The order's transfer rows in the order its sellers' items were added."""
    first_items = {}
    for item in order.items.order_by("pk"):
        first_items.setdefault(item.seller_id, len(first_items))
    return sorted(order.transfers.all(), key=lambda row: first_items[row.seller_id])


def _send_all_but(order: Order, *, held: list[SellerTransfer]) -> None:
    """Pay the order's due rows as the wake-up after the payment does, while the ``held`` rows
    are out of reach (due tomorrow); then they are due as they were, never sent."""
    SellerTransfer.objects.filter(pk__in=[row.pk for row in held]).update(
        next_retry_at=timezone.now() + timedelta(days=1)
    )
    tasks.order_transfers_send(order_id=order.pk)
    for row in held:
        SellerTransfer.objects.filter(pk=row.pk).update(next_retry_at=row.next_retry_at)


def refund_at_stripe(stripe_client, order: Order, amount: int | None = None) -> dict:
    """Refund ``amount`` of the order's payment at the sandbox (all of it when ``None``), as
    someone at Stripe would; the service has not heard of it yet."""
    params: dict = {"payment_intent": order.stripe_payment_intent_id}
    if amount is not None:
        params["amount"] = amount
    return stripe_client.v1.refunds.create(params=params).to_dict()


# --- Seller transfers and their Stripe transfers -----------------------------------------------


def stripe_transfer(stripe_client, amount: int = 900) -> str:
    """A transfer of ``amount`` cents to a newly connected account at the sandbox; its id."""
    account = stripe_client.v1.accounts.create(params={"type": "express"})
    transfer = stripe_client.v1.transfers.create(
        params={"amount": amount, "currency": "usd", "destination": account.id}
    )
    return transfer.id


def due_row(stripe_client, amount: int = 900, **fields) -> SellerTransfer:
    """A ``reversal_pending`` row due now, for a real transfer of ``amount`` at the sandbox."""
    return SellerTransferFactory(
        reversal_due=True,
        amount=amount,
        stripe_transfer_id=stripe_transfer(stripe_client, amount),
        **fields,
    )


def make_due(transfer: SellerTransfer) -> None:
    """Move the clock, not the status: the row's backoff (or its lease) has run out."""
    SellerTransfer.objects.filter(pk=transfer.pk).update(
        next_retry_at=timezone.now() - timedelta(seconds=1)
    )


def age_transfer(transfer: SellerTransfer, by: timedelta) -> None:
    """As if ``by`` passed with no worker running: every time the row keeps about its progress
    (when it last changed, when its current idempotency key was first sent, when it is due)
    moves ``by`` into the past. Its creation time stays: it names the row in its idempotency
    keys and at Stripe."""
    kept = {field.name for field in SellerTransfer._meta.get_fields()}
    clocks = [name for name in ("updated_at", "key_first_sent_at", "next_retry_at") if name in kept]
    SellerTransfer.objects.filter(pk=transfer.pk).update(**{name: F(name) - by for name in clocks})
    transfer.refresh_from_db()


def returned_at_stripe(sandbox, row: SellerTransfer) -> list[int]:
    """The amounts of the transfers that gave money back to ``row``'s seller (every transfer
    of the row but its own)."""
    return [
        t["amount"]
        for t in sandbox.state()["transfers"]
        if t["metadata"].get("seller_transfer_id") == str(row.pk)
        and t["id"] != row.stripe_transfer_id
    ]


def transfers_at_stripe_for(sandbox, transfer: SellerTransfer) -> list[dict]:
    """The sandbox's transfers made for one seller transfer row (by their metadata)."""
    return [
        t
        for t in sandbox.state()["transfers"]
        if t["metadata"].get("seller_transfer_id") == str(transfer.pk)
    ]


# --- A reversal backlog for worker processes ---------------------------------------------------


def reversal_backlog(stripe_client, size: int) -> list[SellerTransfer]:
    """``size`` due rows, one seller each on one refunded order, each with a real transfer at the
    sandbox (made four at a time)."""
    account = stripe_client.v1.accounts.create(params={"type": "express"})
    order = PaidOrderFactory()
    sellers = Seller.objects.bulk_create(
        Seller(name=f"s{i}", email=f"s{i}@example.com", stripe_account_id=f"acct_backlog{i}")
        for i in range(size)
    )
    amounts = [100 + i for i in range(size)]

    def create_transfer(amount: int) -> str:
        params = {"amount": amount, "currency": "usd", "destination": account.id}
        return stripe_client.v1.transfers.create(params=params).id

    with ThreadPoolExecutor(4) as pool:
        transfer_ids = list(pool.map(create_transfer, amounts))
    now = timezone.now()
    rows = SellerTransfer.objects.bulk_create(
        SellerTransfer(
            order=order,
            seller=seller,
            amount=amount,
            currency="usd",
            status=TransferStatus.REVERSAL_PENDING,
            reversal_target=amount,
            stripe_transfer_id=transfer_id,
            next_retry_at=now,
        )
        for seller, amount, transfer_id in zip(sellers, amounts, transfer_ids, strict=True)
    )
    _book_paid_then_refunded(order, rows)
    return rows


def _book_paid_then_refunded(order: Order, rows: list[SellerTransfer]) -> None:
    """The book's entries for rows put straight into the database as a paid, fully refunded
    order leaves them: paid, each seller paid, the refund, each seller's share charged."""
    total = sum(row.amount for row in rows)
    shares = [ledger.services.Share(row.seller_id, row.amount, 0) for row in rows]
    with transaction.atomic():
        ledger.services.post_payment(
            order_id=order.pk, charge_id="", currency="usd", total=total, shares=shares
        )
        ledger.services.post_refund(
            order_id=order.pk, refund_id=f"re_backlog_{order.pk}", currency="usd", amount=total
        )
        for row in rows:
            ref = book_ref(row, step="backlog")
            ledger.services.post_transfer_sent(
                ref, amount=row.amount, stripe_transfer_id=row.stripe_transfer_id
            )
            ledger.services.post_refund_share(ref, previous_target=0, target=row.amount)


def worker_environment(sandbox_url: str, **overrides: str) -> dict[str, str]:
    """The environment of a ``manage.py process_reversals`` process pointed at the test database
    (the test must commit its rows: ``transaction=True``) and at the sandbox."""
    db = connection.settings_dict
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "STRIPE_API_BASE": sandbox_url,
        "STRIPE_SECRET_KEY": "sk_test_suite",
        "STRIPE_MAX_NETWORK_RETRIES": "0",
        "STRIPE_TIMEOUT": "1s",
        # A killed worker's rows come back when their lease (timeout x attempts + margin) ends;
        # the default 30 s margin would make a test wait half a minute after the last kill.
        "CLAIM_LEASE_MARGIN": "2s",
        "REVERSAL_BACKOFF_BASE": "100ms",
        "REVERSAL_BACKOFF_MAX": "500ms",
        "REVERSAL_MAX_RETRIES": "50",
        "REVERSAL_CONCURRENCY": "4",
        # The shared limiter is off: with injected 429s its fleet-wide pause per 429 would
        # stretch the run, and its Redis keys would be shared with other suites running now.
        "STRIPE_RATE_LIMITS": "off",
        "LOG_LEVEL": "WARNING",
        **overrides,
    }


def event_at(transfer: SellerTransfer, from_status: str, to_status: str, when) -> None:
    """An audit event at ``when``: the trail is append-only, so it is written with its time."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO payouts_sellertransferevent "
            "(transfer_id, from_status, to_status, created_at, caused_by, detail) "
            "VALUES (%s, %s, %s, %s, 'test', '{}')",
            [transfer.pk, from_status, to_status, when],
        )


# Every event Stripe sends about a dispute, in the order a dispute's life produces them.
DISPUTE_EVENTS = (
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
    "charge.dispute.closed",
)


def start_django(settings_module: str, **variables: str) -> subprocess.CompletedProcess:
    """``manage.py check`` in a process of its own, with ``variables`` in its environment: how
    start-up treats a setting."""
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": settings_module, **variables}
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=Path(__file__).resolve().parent.parent,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ledger_check_command() -> tuple[int, str]:
    """``manage.py ledger_check`` as an operator runs it (reading Stripe): its exit code and
    what it printed, one break a line."""
    out = io.StringIO()
    try:
        call_command("ledger_check", stdout=out)
    except SystemExit as exit_:
        return int(exit_.code or 0), out.getvalue()
    return 0, out.getvalue()


# --- Staff ---------------------------------------------------------------------------------------


def staff_with(*codenames: str, **fields):
    """A staff user holding the permissions named by codename (``"refund_order"``, …)."""
    user = UserFactory(is_staff=True, **fields)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


# --- The rolling reserve -------------------------------------------------------------------------

STRIPE_REFUSED = {
    "status": 400,
    "error": {
        "type": "invalid_request_error",
        "code": "account_invalid",
        "message": "The destination account cannot receive transfers.",
    },
}


def release_that_gave_up(client, sandbox, stripe_client, *, answer: dict):
    """A seller with a 10 % reserve paid for one order (1800 after the fee, 180 kept back); the
    release of the 180 after 31 days got ``answer`` from Stripe and gave up (the caller lets
    the workers make no retry). Returns (the release, the transfer row)."""
    from payouts.models import ReleaseState, ReserveRelease
    from payouts.services.policies import seller_policy_set
    from payouts.services.reserves import reserves_release_due

    seller = connected_seller(stripe_client)
    changes = {"reserve_bps": 1000, "reserve_days": 30}
    seller_policy_set(seller_id=seller.pk, changes=changes, user=staff_with())
    order, [row] = paid_order(stripe_client, [2000], webhook=client, sellers=[seller])
    sandbox.script("transfers.create", [answer])
    assert reserves_release_due(now=timezone.now() + timedelta(days=31)) == {
        "created": 1,
        "failed": 1,
    }
    release = ReserveRelease.objects.get(seller=seller)
    assert release.state == ReleaseState.FAILED
    return release, row


# --- Reserves due and old debts, for worker processes ------------------------------------------

# A seller keeping 10 % of each share back, due at once; a seller owing money who allows debits.
RESERVE_DUE_AT_ONCE = {"reserve_bps": 1000, "reserve_days": 0}
DEBITS_ALLOWED = {"debits_allowed": True, "debit_consent_at": "2026-11-01T10:00:00Z"}


def _deliver_refund(client, sandbox, refund: dict) -> None:
    """Post the sandbox's ``refund.created`` of ``refund`` to the webhook, running what it
    starts after commit (the sellers' shares taken, reversals sent)."""
    [event] = [
        e for e in sandbox.events("refund.created") if e["data"]["object"]["id"] == refund["id"]
    ]
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = post_event(client, event)
    assert response.status_code == 200, response.content


def reserves_backlog(
    client, sandbox, stripe_client, size: int, *, per_order: int = 10
) -> list[SellerTransfer]:
    """``size`` sellers keeping 10 % of their share back (due at once), paid through the webhook in
    orders of ``per_order`` sellers; the first ``per_order`` are paid in a second order too (one
    release carries both reserves). Each order is then refunded a part of its total, through
    the webhook, in turn: none, 2 %, 5 %, 12 % (more than the reserves: they are emptied and
    the rest is reversed at Stripe), 7 %. Returns every row paid."""
    sellers = [connected_seller(stripe_client) for _ in range(size)]
    staff = staff_with()
    for seller in sellers:
        seller_policy_set(seller_id=seller.pk, changes=RESERVE_DUE_AT_ONCE, user=staff)
    groups = [sellers[i : i + per_order] for i in range(0, size, per_order)] + [sellers[:per_order]]
    rows = []
    for index, group in enumerate(groups):
        amounts = [1000 + 37 * ((index * per_order + i) % 50) for i in range(len(group))]
        order, paid = paid_order(stripe_client, amounts, webhook=client, sellers=group)
        rows += paid
        percent = (0, 2, 5, 12, 7)[index % 5]
        if percent:
            refund = refund_at_stripe(stripe_client, order, sum(amounts) * percent // 100)
            _deliver_refund(client, sandbox, refund)
    return list(SellerTransfer.objects.filter(pk__in=[row.pk for row in rows]).order_by("pk"))


def debts_backlog(
    client, sandbox, stripe_client, size: int, *, short_every: int = 4, per_order: int = 12
) -> list[Seller]:
    """``size`` sellers who allow account debits, each in debt for their whole share: paid
    through the webhook (orders of ``per_order`` sellers), their balance paid out to their
    bank, then the order refunded in full, so the reversal is refused for their balance. Then
    money comes onto their accounts again: their debt and 500 more, except every
    ``short_every``-th seller, who gets half their debt (a debit of it is refused).

    The book keeps the database's time of each entry: the debts are as old as the time since
    this returned (workers' ``DEBT_DEBIT_AFTER`` must be shorter by the time they start)."""
    sellers = [connected_seller(stripe_client) for _ in range(size)]
    staff = staff_with()
    for seller in sellers:
        seller_policy_set(seller_id=seller.pk, changes=DEBITS_ALLOWED, user=staff)
    for start in range(0, size, per_order):
        group = sellers[start : start + per_order]
        amounts = [1500 + 41 * i for i in range(len(group))]
        order, rows = paid_order(stripe_client, amounts, webhook=client, sellers=group)
        for row in rows:
            sandbox.simulate_payout(row.seller.stripe_account_id, row.amount)
        _deliver_refund(client, sandbox, refund_at_stripe(stripe_client, order))
    for index, seller in enumerate(sellers):
        debt = seller_balances(seller_id=seller.pk)["usd"]["debt"]
        assert debt > 0, (seller.pk, debt)
        money_back = debt // 2 if index % short_every == short_every - 1 else debt + 500
        sandbox.adjust_account(seller.stripe_account_id, money_back)
    return sellers


def order_refunded(client, sandbox, stripe_client, order: Order, amount: int) -> None:
    """Refund ``amount`` of the order at the sandbox and deliver its ``refund.created`` to the
    webhook, as Stripe would: the service takes the sellers' shares (from their reserves while
    held) before this returns."""
    _deliver_refund(client, sandbox, refund_at_stripe(stripe_client, order, amount))
