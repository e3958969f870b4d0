"""Webhook intake: what the endpoint accepts, what it refuses, and what it stores."""

import json
import threading
import time
from io import StringIO

import pytest
import requests
from django.core.management import call_command
from django.db import connections
from django.test import Client

from marketplace.models import Order
from marketplace.selectors import order_total
from payouts.models import SellerTransfer, WebhookEvent, WebhookOutcome
from payouts.transfer.transitions import TransferStatus
from tests.builders import (
    connected_seller,
    make_event,
    paid_intent,
    post_event,
    seller_order,
    sign,
)
from tests.factories import OrderFactory, OrderItemFactory

WEBHOOK_URL = "/webhooks/stripe/"


def post_raw(client, body: bytes, signature: str | None):
    headers = {} if signature is None else {"HTTP_STRIPE_SIGNATURE": signature}
    return client.post(WEBHOOK_URL, data=body, content_type="application/json", **headers)


def intent_for(order: Order) -> dict:
    """A succeeded payment intent that matches ``order``, as Stripe would put it in an event;
    if the endpoint ever let it through, the order would become paid."""
    return {
        "id": f"pi_intake{order.pk:08d}",
        "object": "payment_intent",
        "amount": order_total(order=order),
        "amount_received": order_total(order=order),
        "currency": order.currency,
        "status": "succeeded",
        "latest_charge": f"ch_intake{order.pk:08d}",
        "metadata": {"order_id": str(order.pk)},
    }


@pytest.fixture
def pending_order(db):
    order = OrderFactory()
    OrderItemFactory(order=order, amount=2500)
    return order


def assert_nothing_stored(order: Order) -> None:
    assert not WebhookEvent.objects.exists()
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    assert order.stripe_charge_id == ""
    assert not SellerTransfer.objects.exists()


# --- refused before anything is stored -------------------------------------------------------


@pytest.mark.parametrize(
    "signature_for",
    [
        pytest.param(lambda body, secret: None, id="missing"),
        pytest.param(lambda body, secret: "t=garbled,v1=not-a-digest", id="garbled"),
        pytest.param(
            lambda body, secret: sign(body, secret, timestamp=int(time.time()) - 600),
            id="ten-minutes-old",
        ),
        pytest.param(lambda body, secret: sign(body, "whsec_someone_else"), id="other-secret"),
        pytest.param(lambda body, secret: sign(body + b" ", secret), id="signed-a-different-body"),
    ],
)
def test_a_bad_signature_is_refused_with_400_and_stores_nothing(
    client, webhook_secret, pending_order, signature_for
):
    body = json.dumps(make_event("payment_intent.succeeded", intent_for(pending_order))).encode()

    response = post_raw(client, body, signature_for(body, webhook_secret))

    assert response.status_code == 400, response.content
    assert_nothing_stored(pending_order)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"\xff\xfe\x00binary", id="not-utf8"),
        pytest.param(b"[]", id="json-array"),
        pytest.param(b'"evt_1"', id="json-string"),
        pytest.param(b'{"type": "payment_intent.succeeded", "data": {"object": {}}}', id="no-id"),
        pytest.param(b'{"id": "", "type": "x.y", "data": {"object": {}}}', id="empty-id"),
        pytest.param(b'{"id": "evt_1", "data": {"object": {}}}', id="no-type"),
        pytest.param(b'{"id": "evt_1", "type": "x.y"}', id="no-data"),
        pytest.param(b'{"id": "evt_1", "type": "x.y", "data": {"object": []}}', id="object-list"),
        pytest.param(b'{"id": 7, "type": "x.y", "data": {"object": {}}}', id="numeric-id"),
        pytest.param(
            b'{"id": "evt_1", "type": "x.y", "data": "oops"}',
            id="data-is-a-string",
        ),
        pytest.param(
            b'{"id": "evt_1", "type": "x.y", "data": ["object"]}',
            id="data-is-a-list",
        ),
        pytest.param(
            json.dumps({"id": "evt_" + "x" * 300, "type": "x.y", "data": {"object": {}}}).encode(),
            id="id-over-255-chars",
        ),
        pytest.param(
            json.dumps({"id": "evt_1", "type": "x" * 300, "data": {"object": {}}}).encode(),
            id="type-over-255-chars",
        ),
    ],
)
def test_a_validly_signed_body_that_is_not_a_stripe_event_is_refused_with_400(
    webhook_secret, pending_order, body
):
    # A client that answers a server error with a 500 response instead of raising it, so a
    # crash shows up as a wrong status code.
    client = Client(raise_request_exception=False)

    response = post_raw(client, body, sign(body, webhook_secret))

    assert response.status_code == 400, response.content
    assert_nothing_stored(pending_order)


def test_a_body_over_256_kib_is_refused_with_413_even_when_validly_signed(
    client, webhook_secret, pending_order
):
    intent = intent_for(pending_order)
    intent["description"] = "x" * (256 * 1024)
    body = json.dumps(make_event("payment_intent.succeeded", intent)).encode()
    assert len(body) > 256 * 1024

    response = post_raw(client, body, sign(body, webhook_secret))

    assert response.status_code == 413, response.content
    assert_nothing_stored(pending_order)


def test_a_body_of_exactly_256_kib_is_accepted(client, webhook_secret, db):
    event = make_event("customer.created", {"id": "cus_1", "object": "customer"})
    skeleton = json.dumps({**event, "padding": ""}).encode()
    event["padding"] = "x" * (256 * 1024 - len(skeleton))
    body = json.dumps(event).encode()
    assert len(body) == 256 * 1024

    response = post_raw(client, body, sign(body, webhook_secret))

    assert response.status_code == 200, response.content


# --- accepted and stored ---------------------------------------------------------------------

OLD_SECRET = "whsec_before_rotation"
NEW_SECRET = "whsec_after_rotation"


@pytest.mark.parametrize("secret", [OLD_SECRET, NEW_SECRET], ids=["old", "new"])
def test_during_a_secret_rotation_an_event_signed_with_either_secret_is_accepted(
    client, settings, db, secret
):
    settings.STRIPE_WEBHOOK_SECRETS = [NEW_SECRET, OLD_SECRET]
    event = make_event("customer.created", {"id": "cus_1", "object": "customer"})

    response = post_event(client, event, secret=secret)

    assert response.status_code == 200, response.content
    assert WebhookEvent.objects.filter(stripe_event_id=event["id"]).exists()


def test_an_unknown_event_type_is_answered_200_and_stored_as_ignored(client, webhook_secret, db):
    event = make_event("customer.created", {"id": "cus_1", "object": "customer"})

    response = post_event(client, event)

    assert response.status_code == 200, response.content
    assert response.json() == {"id": event["id"], "outcome": "ignored"}
    stored = WebhookEvent.objects.get()
    assert (stored.stripe_event_id, stored.type) == (event["id"], "customer.created")
    assert stored.outcome == WebhookOutcome.IGNORED
    assert stored.payload == event
    assert stored.processed_at is not None


# --- events that cannot be applied -----------------------------------------------------------


def payment_for_no_order(stripe_client) -> dict:
    """A payment of 2,500 that succeeded at the sandbox before the checkout stored its order."""
    return stripe_client.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "usd",
            "confirm": True,
            "payment_method": "pm_card_visa",
        }
    ).to_dict()


@pytest.mark.django_db
def test_an_event_for_an_unknown_order_is_422_and_recorded_as_failed(
    client, sandbox, stripe_client, django_capture_on_commit_callbacks
):
    intent = payment_for_no_order(stripe_client)

    with django_capture_on_commit_callbacks(execute=True):
        response = post_event(client, make_event("payment_intent.succeeded", intent))

    assert response.status_code == 422, response.content
    stored = WebhookEvent.objects.get()
    assert stored.outcome == WebhookOutcome.FAILED
    assert intent["id"] in stored.error
    assert not SellerTransfer.objects.exists()
    assert sandbox.calls("transfers.create") == []


@pytest.mark.django_db
def test_an_event_for_an_unknown_order_is_replayable_once_the_order_exists(
    client, sandbox, stripe_client, django_capture_on_commit_callbacks
):
    seller = connected_seller(stripe_client)
    intent = payment_for_no_order(stripe_client)
    event = make_event("payment_intent.succeeded", intent)
    assert post_event(client, event).status_code == 422
    stored = WebhookEvent.objects.get()

    # The checkout commits the order after Stripe's event arrived; staff replay the event.
    order = OrderFactory(stripe_payment_intent_id=intent["id"])
    OrderItemFactory(order=order, seller=seller, amount=2500)
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("replay_webhook_events", event["id"], stdout=out)

    assert "processed" in out.getvalue()
    stored.refresh_from_db()
    assert (stored.outcome, stored.error) == (WebhookOutcome.PROCESSED, "")
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert order.stripe_charge_id == intent["latest_charge"]
    transfer = SellerTransfer.objects.get(order=order)
    assert transfer.status == TransferStatus.COMPLETED
    assert [t["id"] for t in sandbox.state()["transfers"]] == [transfer.stripe_transfer_id]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("amount_delta", "currency"),
    [(1, "usd"), (-1, "usd"), (0, "eur")],
    ids=["amount-over", "amount-under", "other-currency"],
)
def test_a_payment_that_disagrees_with_the_order_is_422_and_pays_nobody(
    client, sandbox, stripe_client, amount_delta, currency, django_capture_on_commit_callbacks
):
    order = OrderFactory(currency="usd")
    OrderItemFactory(order=order, seller=connected_seller(stripe_client), amount=2000)
    intent = stripe_client.v1.payment_intents.create(
        params={
            "amount": 2000 + amount_delta,
            "currency": currency,
            "metadata": {"order_id": str(order.pk)},
            "confirm": True,
            "payment_method": "pm_card_visa",
        }
    ).to_dict()

    with django_capture_on_commit_callbacks(execute=True):
        response = post_event(client, make_event("payment_intent.succeeded", intent))

    assert response.status_code == 422, response.content
    stored = WebhookEvent.objects.get()
    assert stored.outcome == WebhookOutcome.FAILED
    assert "expects 2000 usd" in stored.error
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    assert order.stripe_charge_id == ""
    assert not SellerTransfer.objects.exists()
    assert sandbox.calls("transfers.create") == []


# --- duplicates ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # the live server's threads have their own connections
@pytest.mark.slow
def test_five_deliveries_of_one_payment_two_at_once_pay_each_seller_once(
    live_server, sandbox, stripe_client
):
    order = seller_order(stripe_client, [1000, 2000, 3000])
    event = make_event("payment_intent.succeeded", paid_intent(stripe_client, order))
    body = json.dumps(event).encode()
    url = f"{live_server.url}{WEBHOOK_URL}"

    def deliver() -> int:
        headers = {"Content-Type": "application/json", "Stripe-Signature": sign(body)}
        return requests.post(url, data=body, headers=headers, timeout=30).status_code

    statuses: list[int] = []
    start_together = threading.Barrier(2)

    def deliver_concurrently() -> None:
        try:
            start_together.wait(timeout=10)
            statuses.append(deliver())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver_concurrently) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    statuses += [deliver() for _ in range(3)]

    assert statuses == [200] * 5
    stored = WebhookEvent.objects.get()
    assert (stored.outcome, stored.attempts) == (WebhookOutcome.PROCESSED, 1)
    transfers = list(SellerTransfer.objects.filter(order=order))
    assert len(transfers) == 3
    assert {t.status for t in transfers} == {TransferStatus.COMPLETED}
    assert len(sandbox.calls("transfers.create", outcome="performed")) == 3
    at_stripe = sorted(t["id"] for t in sandbox.state()["transfers"])
    assert at_stripe == sorted(t.stripe_transfer_id for t in transfers)
