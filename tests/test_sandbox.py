"""Tests of the Stripe sandbox, driven through the real stripe-python client.

No Django and no database: the sandbox is a standalone package the payouts
tests build on, so its Stripe fidelity is checked here on its own.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import stripe

from stripe_sandbox.testing import RunningSandbox, SandboxControlError, SandboxProcess

API_KEY = "sk_test_sandbox"
WEBHOOK_SECRET = "whsec_test_secret"


@pytest.fixture(scope="module")
def sandbox():
    with RunningSandbox() as running:
        yield running


@pytest.fixture(autouse=True)
def clean(sandbox):
    sandbox.control.reset()


def make_client(url: str, timeout: float = 5.0) -> stripe.StripeClient:
    return stripe.StripeClient(
        API_KEY,
        base_addresses={"api": url},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=timeout),
    )


@pytest.fixture
def client(sandbox):
    return make_client(sandbox.url)


@pytest.fixture
def transfer(client):
    """A 1000-cent transfer to a fresh connected account."""
    account = client.v1.accounts.create(params={"type": "express", "email": "s@example.com"})
    return client.v1.transfers.create(
        params={
            "amount": 1000,
            "currency": "usd",
            "destination": account.id,
            "transfer_group": "order_1",
            "metadata": {"payout_id": "7"},
        }
    )


def ledger_entry(sandbox, transfer_id: str) -> dict:
    ledger = sandbox.control.ledger()
    assert ledger["consistent"]
    (entry,) = [t for t in ledger["transfers"] if t["id"] == transfer_id]
    return entry


def outcomes(sandbox, operation: str) -> list[str]:
    return [c["outcome"] for c in sandbox.control.calls(operation)]


# -- resources ---------------------------------------------------------------


def test_payment_intent_charge_and_transfer(client):
    account = client.v1.accounts.create(params={"type": "express", "country": "US"})
    assert account.id.startswith("acct_") and account.object == "account"
    assert client.v1.accounts.retrieve(account.id).id == account.id

    intent = client.v1.payment_intents.create(
        params={
            "amount": 2500,
            "currency": "USD",
            "confirm": True,
            "payment_method": "pm_card_visa",
            "transfer_group": "order_42",
            "metadata": {"order_id": "42", "note": "a[b]=c&d"},
        }
    )
    assert intent.id.startswith("pi_") and intent.status == "succeeded"
    assert intent.currency == "usd" and intent.livemode is False
    assert intent.metadata.to_dict() == {"order_id": "42", "note": "a[b]=c&d"}

    charge = client.v1.charges.retrieve(intent.latest_charge)
    assert charge.id.startswith("ch_")
    assert (charge.amount, charge.amount_refunded, charge.refunded) == (2500, 0, False)
    assert charge.payment_intent == intent.id and charge.transfer_group == "order_42"

    transfer = client.v1.transfers.create(
        params={
            "amount": 2000,
            "currency": "usd",
            "destination": account.id,
            "source_transaction": charge.id,
            "transfer_group": "order_42",
            "description": "seller share",
            "metadata": {"order_id": "42"},
        }
    )
    assert transfer.id.startswith("tr_") and transfer.object == "transfer"
    assert (transfer.amount, transfer.amount_reversed, transfer.reversed) == (2000, 0, False)
    assert transfer.source_transaction == charge.id
    assert transfer.reversals.total_count == 0 and transfer.reversals.data == []
    assert client.v1.transfers.retrieve(transfer.id).metadata["order_id"] == "42"


def test_confirm_later_and_validation_errors(client):
    intent = client.v1.payment_intents.create(params={"amount": 500, "currency": "usd"})
    assert intent.status == "requires_payment_method" and intent.latest_charge is None
    confirmed = client.v1.payment_intents.confirm(
        intent.id, params={"payment_method": "pm_card_visa"}
    )
    assert confirmed.status == "succeeded" and confirmed.latest_charge.startswith("ch_")

    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.transfers.create(params={"currency": "usd", "destination": "acct_x"})
    assert missing.value.code == "parameter_missing" and missing.value.param == "amount"

    with pytest.raises(stripe.InvalidRequestError) as destination:
        client.v1.transfers.create(
            params={"amount": 100, "currency": "usd", "destination": "acct_missing"}
        )
    assert destination.value.http_status == 400
    assert destination.value.user_message == "No such destination: 'acct_missing'"


def test_partial_then_full_reversal(client, sandbox, transfer):
    partial = client.v1.transfers.reversals.create(
        transfer.id, params={"amount": 300, "metadata": {"reason": "refund"}}
    )
    assert partial.id.startswith("trr_") and partial.object == "transfer_reversal"
    assert (partial.amount, partial.transfer, partial.currency) == (300, transfer.id, "usd")
    after_partial = client.v1.transfers.retrieve(transfer.id)
    assert (after_partial.amount_reversed, after_partial.reversed) == (300, False)

    rest = client.v1.transfers.reversals.create(transfer.id)
    assert rest.amount == 700
    after_full = client.v1.transfers.retrieve(transfer.id)
    assert (after_full.amount_reversed, after_full.reversed) == (1000, True)
    assert [r.id for r in after_full.reversals.data] == [rest.id, partial.id]
    assert after_full.reversals.total_count == 2

    listed = client.v1.transfers.reversals.list(transfer.id)
    assert [r.id for r in listed.data] == [rest.id, partial.id]
    assert client.v1.transfers.reversals.retrieve(transfer.id, partial.id).amount == 300
    assert ledger_entry(sandbox, transfer.id)["reversal_amounts"] == [300, 700]


def test_second_full_reversal_has_stripes_exact_error(client, transfer):
    client.v1.transfers.reversals.create(transfer.id)
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.transfers.reversals.create(transfer.id)
    error = info.value
    expected = f"The transfer {transfer.id} is already fully reversed."
    assert error.http_status == 400
    assert error.user_message == expected and error.error.message == expected
    assert error.error.type == "invalid_request_error"
    assert error.code is None and error.error.code is None


def test_reversal_above_unreversed_amount(client, sandbox, transfer):
    client.v1.transfers.reversals.create(transfer.id, params={"amount": 600})
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.transfers.reversals.create(transfer.id, params={"amount": 401})
    assert info.value.http_status == 400 and info.value.param == "amount"
    assert "is greater than the unreversed amount (400)" in info.value.user_message
    assert ledger_entry(sandbox, transfer.id)["amount_reversed"] == 600


def test_unknown_ids_are_404_resource_missing(client):
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.transfers.reversals.create("tr_doesnotexist")
    error = info.value
    assert error.http_status == 404 and error.code == "resource_missing"
    assert error.param == "id" and error.user_message == "No such transfer: 'tr_doesnotexist'"
    assert error.error.doc_url == "https://stripe.com/docs/error-codes/resource-missing"

    with pytest.raises(stripe.InvalidRequestError) as refund:
        client.v1.refunds.retrieve("re_nope")
    assert refund.value.user_message == "No such refund: 're_nope'"


def test_unknown_path_and_bad_api_key(sandbox, client):
    response = requests.get(
        f"{sandbox.url}/v1/payouts", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert response.status_code == 404 and response.headers["Request-Id"].startswith("req_")
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "Unrecognized request URL (GET: /v1/payouts)" in response.json()["error"]["message"]

    publishable = stripe.StripeClient("pk_test_nope", base_addresses={"api": sandbox.url})
    with pytest.raises(stripe.AuthenticationError) as info:
        publishable.v1.transfers.list()
    assert info.value.http_status == 401


def test_form_decoding_of_nested_keys_and_expand(sandbox):
    def post(body: str) -> requests.Response:
        return requests.post(
            f"{sandbox.url}/v1/accounts",
            data=body,
            headers={
                "Authorization": f"Bearer {API_KEY}",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )

    response = post(
        "type=custom&metadata[seller_id]=9&capabilities[transfers][requested]=true"
        "&expand[]=capabilities&expand[]=external_accounts"
    )
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "custom"
    assert response.json()["metadata"] == {"seller_id": "9"}

    nested_metadata = post("metadata[seller][id]=9")
    assert nested_metadata.status_code == 400
    assert nested_metadata.json()["error"]["param"] == "metadata[seller]"


# -- idempotency --------------------------------------------------------------


def test_idempotent_replay_moves_no_more_money(client, sandbox, transfer):
    options = {"idempotency_key": "reverse-1"}
    first = client.v1.transfers.reversals.create(
        transfer.id, params={"amount": 250}, options=options
    )
    again = client.v1.transfers.reversals.create(
        transfer.id, params={"amount": 250}, options=options
    )
    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.last_response.headers
    entry = ledger_entry(sandbox, transfer.id)
    assert (entry["reversal_count"], entry["amount_reversed"]) == (1, 250)
    assert outcomes(sandbox, "reversals.create") == ["performed", "replayed"]


def test_dropped_response_then_retry_with_same_key(client, sandbox, transfer):
    sandbox.control.script("reversals.create", [{"action": "drop_after_perform"}])
    options = {"idempotency_key": "reverse-dropped"}
    with pytest.raises(stripe.APIConnectionError):
        client.v1.transfers.reversals.create(transfer.id, options=options)
    # Stripe did the work even though the client never heard back.
    assert ledger_entry(sandbox, transfer.id)["amount_reversed"] == 1000

    retried = client.v1.transfers.reversals.create(transfer.id, options=options)
    assert retried.amount == 1000
    assert [r["id"] for r in sandbox.control.state()["transfer_reversals"]] == [retried.id]
    entry = ledger_entry(sandbox, transfer.id)
    assert (entry["reversal_count"], entry["amount_reversed"]) == (1, 1000)
    calls = sandbox.control.calls("reversals.create")
    assert [(c["outcome"], c["status"]) for c in calls] == [
        ("dropped_after_perform", None),
        ("replayed", 200),
    ]


def test_timeout_performs_nothing_and_keeps_key_free(sandbox, transfer):
    sandbox.control.script("reversals.create", [{"action": "timeout", "timeout_seconds": 5}])
    impatient = make_client(sandbox.url, timeout=0.3)
    options = {"idempotency_key": "reverse-timeout"}
    with pytest.raises(stripe.APIConnectionError):
        impatient.v1.transfers.reversals.create(transfer.id, options=options)
    assert ledger_entry(sandbox, transfer.id)["reversal_count"] == 0

    # The held request never started executing, so the key is not in use.
    reversal = impatient.v1.transfers.reversals.create(transfer.id, options=options)
    assert reversal.amount == 1000
    assert outcomes(sandbox, "reversals.create") == ["timeout", "performed"]


def test_same_key_with_different_parameters(client, transfer):
    options = {"idempotency_key": "reverse-2"}
    client.v1.transfers.reversals.create(transfer.id, params={"amount": 100}, options=options)
    with pytest.raises(stripe.IdempotencyError) as info:
        client.v1.transfers.reversals.create(transfer.id, params={"amount": 200}, options=options)
    assert info.value.http_status == 400 and info.value.error.type == "idempotency_error"
    assert "Try using a key other than 'reverse-2'" in info.value.user_message


def test_injected_500_is_replayed_under_its_key(client, sandbox, transfer):
    sandbox.control.script("reversals.create", [{"action": "error_500"}])
    options = {"idempotency_key": "reverse-500"}
    for _ in range(2):
        with pytest.raises(stripe.APIError) as info:
            client.v1.transfers.reversals.create(transfer.id, options=options)
        assert info.value.http_status == 500 and info.value.error.type == "api_error"
    assert info.value.headers["Idempotent-Replayed"] == "true"
    assert ledger_entry(sandbox, transfer.id)["reversal_count"] == 0
    assert outcomes(sandbox, "reversals.create") == ["injected_500", "replayed"]

    fresh = client.v1.transfers.reversals.create(
        transfer.id, options={"idempotency_key": "reverse-500-b"}
    )
    assert fresh.amount == 1000


def test_key_in_use_while_first_request_executes(client, sandbox, transfer):
    sandbox.control.set_faults("reversals.create", latency_ms=400)
    options = {"idempotency_key": "reverse-concurrent"}
    results = {}

    def first():
        results["first"] = client.v1.transfers.reversals.create(transfer.id, options=options)

    thread = threading.Thread(target=first)
    thread.start()
    time.sleep(0.15)
    with pytest.raises(stripe.APIError) as info:
        make_client(sandbox.url).v1.transfers.reversals.create(transfer.id, options=options)
    thread.join()
    assert info.value.http_status == 409
    assert info.value.error.type == "idempotency_error"
    assert info.value.error.code == "idempotency_key_in_use"
    assert results["first"].amount == 1000
    assert ledger_entry(sandbox, transfer.id)["reversal_count"] == 1


# -- faults -------------------------------------------------------------------


def test_global_rate_limit_returns_429(client, sandbox, transfer):
    sandbox.control.set_rate_limit(per_second=0.001, burst=2)
    client.v1.transfers.retrieve(transfer.id)
    client.v1.transfers.retrieve(transfer.id)
    with pytest.raises(stripe.RateLimitError) as info:
        client.v1.transfers.reversals.create(transfer.id, options={"idempotency_key": "rl"})
    # stripe-python leaves RateLimitError.code unset; the code is on the error object.
    assert info.value.http_status == 429 and info.value.error.code == "rate_limit"
    assert info.value.error.type == "invalid_request_error"
    assert outcomes(sandbox, "reversals.create") == ["rate_limited"]

    sandbox.control.set_rate_limit(per_second=None)
    # Nothing was stored for the 429, so the same key now performs.
    reversal = client.v1.transfers.reversals.create(transfer.id, options={"idempotency_key": "rl"})
    assert reversal.amount == 1000


@pytest.mark.parametrize(
    ("status", "error", "exception", "code"),
    [
        (
            402,
            {"type": "invalid_request_error", "code": "balance_insufficient", "message": "No."},
            stripe.CardError,
            "balance_insufficient",
        ),
        (
            400,
            {
                "type": "invalid_request_error",
                "message": "THE TRANSFER tr_x IS ALREADY FULLY REVERSED.",
            },
            stripe.InvalidRequestError,
            None,
        ),
        (
            404,
            {"type": "invalid_request_error", "code": "something_else", "message": "Gone."},
            stripe.InvalidRequestError,
            "something_else",
        ),
        (
            429,
            {"type": "invalid_request_error", "code": "lock_timeout", "message": "Locked."},
            stripe.RateLimitError,
            "lock_timeout",
        ),
    ],
)
def test_scripted_errors_surface_exactly(client, sandbox, transfer, status, error, exception, code):
    sandbox.control.script("reversals.create", [{"status": status, "error": error}])
    with pytest.raises(exception) as info:
        client.v1.transfers.reversals.create(transfer.id, options={"idempotency_key": "s1"})
    assert info.value.http_status == status
    assert info.value.error.code == code
    assert info.value.user_message == error["message"]
    assert outcomes(sandbox, "reversals.create") == ["injected"]
    # A scripted 4xx is not stored, so the same key performs afterwards.
    reversal = client.v1.transfers.reversals.create(transfer.id, options={"idempotency_key": "s1"})
    assert reversal.amount == 1000


def test_random_faults_are_deterministic_for_a_seed(client, sandbox, transfer):
    sandbox.control.set_faults("transfers.retrieve", error_500_rate=0.5)

    def run() -> None:
        sandbox.control.configure(seed=1234)
        for _ in range(20):
            with contextlib.suppress(stripe.APIError):
                client.v1.transfers.retrieve(transfer.id)

    run()
    run()
    log = outcomes(sandbox, "transfers.retrieve")
    assert set(log) == {"performed", "injected_500"}
    assert log[:20] == log[20:]


def test_latency_is_slept_without_holding_the_lock(sandbox, transfer):
    sandbox.control.set_faults("*", latency_ms=200)
    errors = []

    def fetch():
        try:
            make_client(sandbox.url).v1.transfers.retrieve(transfer.id)
        except Exception as exc:  # surfaced through the assertion below
            errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=fetch) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert time.monotonic() - started < 1.0


# -- refunds ------------------------------------------------------------------


def test_refunds_pending_status_and_limits(client, sandbox):
    intent = client.v1.payment_intents.create(
        params={"amount": 1000, "currency": "usd", "confirm": True, "payment_method": "pm_x"}
    )
    sandbox.control.configure(new_refund_status="pending")
    refund = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 600})
    assert refund.id.startswith("re_") and refund.status == "pending"
    assert refund.charge == intent.latest_charge and refund.payment_intent == intent.id

    with pytest.raises(stripe.InvalidRequestError) as too_much:
        client.v1.refunds.create(params={"charge": intent.latest_charge, "amount": 500})
    assert too_much.value.code == "amount_too_large"

    failed = sandbox.control.set_refund_status(refund.id, "failed")
    assert failed["status"] == "failed"
    assert client.v1.charges.retrieve(intent.latest_charge).amount_refunded == 0
    assert [e["type"] for e in sandbox.control.events()][-1] == "refund.failed"

    sandbox.control.configure(new_refund_status="succeeded")
    whole = client.v1.refunds.create(params={"payment_intent": intent.id})
    assert whole.amount == 1000 and whole.status == "succeeded"
    assert client.v1.charges.retrieve(intent.latest_charge).refunded is True
    with pytest.raises(stripe.InvalidRequestError) as nothing_left:
        client.v1.refunds.create(params={"payment_intent": intent.id})
    assert nothing_left.value.code == "charge_already_refunded"

    listed = client.v1.refunds.list(params={"payment_intent": intent.id})
    assert [r.id for r in listed.data] == [whole.id, refund.id]
    assert sandbox.control.ledger()["consistent"]


# -- lists --------------------------------------------------------------------


def test_list_transfers_by_transfer_group(client):
    account = client.v1.accounts.create(params={"type": "express"})

    def create(group: str):
        params = {"amount": 100, "currency": "usd", "destination": account.id}
        return client.v1.transfers.create(params={**params, "transfer_group": group}).id

    group_a = [create("order_a") for _ in range(3)]
    create("order_b")
    page = client.v1.transfers.list(params={"transfer_group": "order_a", "limit": 2})
    assert [t.id for t in page.data] == [group_a[2], group_a[1]] and page.has_more is True
    rest = client.v1.transfers.list(
        params={"transfer_group": "order_a", "limit": 2, "starting_after": group_a[1]}
    )
    assert [t.id for t in rest.data] == [group_a[0]] and rest.has_more is False
    all_a = client.v1.transfers.list(params={"transfer_group": "order_a"}).auto_paging_iter()
    assert [t.id for t in all_a] == group_a[::-1]


# -- webhooks -----------------------------------------------------------------


@pytest.fixture
def receiver():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.headers["Stripe-Signature"], body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/webhooks", received
    server.shutdown()
    server.server_close()
    thread.join()


def wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_webhooks_are_signed_like_stripe(client, sandbox, receiver):
    url, received = receiver
    sandbox.control.configure_webhooks(url, WEBHOOK_SECRET)
    intent = client.v1.payment_intents.create(
        params={
            "amount": 700,
            "currency": "usd",
            "confirm": True,
            "payment_method": "pm_card_visa",
            "metadata": {"order_id": "77"},
        },
        options={"idempotency_key": "pi-77"},
    )
    wait_for(lambda: len(received) == 1)
    header, body = received[0]
    assert stripe.WebhookSignature.verify_header(body.decode(), header, WEBHOOK_SECRET)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(body.decode(), header, "whsec_wrong")
    event = json.loads(body)
    assert event["type"] == "payment_intent.succeeded" and event["object"] == "event"
    assert event["id"].startswith("evt_") and event["livemode"] is False
    assert event["data"]["object"]["id"] == intent.id
    assert event["data"]["object"]["metadata"] == {"order_id": "77"}
    assert event["request"]["idempotency_key"] == "pi-77"
    wait_for(lambda: len(sandbox.control.deliveries()) == 1)
    assert sandbox.control.deliveries()[0]["status"] == 200

    duplicate = sandbox.control.resend_event(event["id"])
    assert duplicate["status"] == 200 and duplicate["event"]["id"] == event["id"]
    custom = sandbox.control.send_event("transfer.reversed", {"id": "tr_x", "object": "transfer"})
    assert custom["status"] == 200 and custom["event"]["type"] == "transfer.reversed"
    assert [json.loads(b)["id"] for _, b in received[1:]] == [event["id"], custom["event"]["id"]]


def test_out_of_band_reversal_sends_transfer_reversed(client, sandbox, receiver, transfer):
    url, received = receiver
    sandbox.control.configure_webhooks(url, WEBHOOK_SECRET)
    reversal = sandbox.control.reverse_out_of_band(transfer.id, 400)
    assert reversal["amount"] == 400
    wait_for(lambda: len(received) == 1)
    event = json.loads(received[0][1])
    assert event["type"] == "transfer.reversed"
    assert event["data"]["object"]["amount_reversed"] == 400
    assert event["request"] == {"id": None, "idempotency_key": None}

    sandbox.control.reverse_out_of_band(transfer.id)
    with pytest.raises(SandboxControlError) as info:
        sandbox.control.reverse_out_of_band(transfer.id)
    assert info.value.status == 400
    assert info.value.body["error"]["message"].endswith("is already fully reversed.")


# -- control and processes ----------------------------------------------------


def test_reset_forgets_everything(client, sandbox, transfer):
    sandbox.control.set_faults("*", latency_ms=1)
    sandbox.control.reset()
    state = sandbox.control.state()
    assert state["transfers"] == [] and state["accounts"] == [] and state["events"] == []
    assert sandbox.control.calls() == []
    assert sandbox.control.faults()["knobs"] == {}
    with pytest.raises(SandboxControlError):
        sandbox.control.set_faults("transfers.nope", latency_ms=1)


@pytest.mark.slow
def test_runs_as_a_separate_process():
    with SandboxProcess() as process:
        account = make_client(process.url).v1.accounts.create(params={"type": "express"})
        assert process.control.state()["accounts"][0]["id"] == account.id
        process.process.send_signal(signal.SIGTERM)
        assert process.process.wait(timeout=10) == 0


def test_an_operation_over_its_own_limit_gets_stripes_429(client, sandbox, transfer):
    # Stripe live: 100 a second in all, 25 on each operation; here 2 on each to see it.
    sandbox.control.set_rate_limit(per_second=100, per_operation=2)
    client.v1.transfers.retrieve(transfer.id)
    client.v1.transfers.retrieve(transfer.id)
    with pytest.raises(stripe.RateLimitError) as info:
        client.v1.transfers.retrieve(transfer.id)

    assert info.value.http_status == 429 and info.value.error.code == "rate_limit"
    assert info.value.headers["Stripe-Rate-Limited-Reason"] == "endpoint-rate"
    # Another operation has a budget of its own.
    assert client.v1.transfers.reversals.list(transfer.id).data == []
    assert outcomes(sandbox, "transfers.retrieve") == ["performed", "performed", "rate_limited"]


def test_a_named_operation_limit_overrides_the_per_operation_one(client, sandbox, transfer):
    sandbox.control.set_rate_limit(
        per_second=None, per_operation=5, operations={"transfers.retrieve": 1}
    )
    client.v1.transfers.retrieve(transfer.id)
    with pytest.raises(stripe.RateLimitError):
        client.v1.transfers.retrieve(transfer.id)
    for _ in range(5):
        client.v1.transfers.reversals.list(transfer.id)
    with pytest.raises(stripe.RateLimitError):
        client.v1.transfers.reversals.list(transfer.id)


def test_the_global_limit_refuses_across_operations_and_says_so(client, sandbox, transfer):
    sandbox.control.set_rate_limit(per_second=0.001, burst=2, per_operation=25)
    client.v1.transfers.retrieve(transfer.id)
    client.v1.transfers.reversals.list(transfer.id)
    with pytest.raises(stripe.RateLimitError) as info:
        client.v1.transfers.list()

    assert info.value.headers["Stripe-Rate-Limited-Reason"] == "global-rate"


def test_a_request_refused_by_its_operation_spends_no_global_budget(client, sandbox, transfer):
    sandbox.control.set_rate_limit(per_second=0.001, burst=2, per_operation=1)
    client.v1.transfers.retrieve(transfer.id)
    for _ in range(3):
        with pytest.raises(stripe.RateLimitError):
            client.v1.transfers.retrieve(transfer.id)

    # The second global token is still there for another operation.
    client.v1.transfers.reversals.list(transfer.id)


def test_rate_limit_settings_are_checked(sandbox):
    with pytest.raises(SandboxControlError):
        sandbox.control.set_rate_limit(per_second=None, operations={"transfers.craete": 25})
    with pytest.raises(SandboxControlError):
        sandbox.control.set_rate_limit(per_second=None, per_operation=0)


def test_transfers_are_listed_by_creation_time_in_pages(client, sandbox):
    account = client.v1.accounts.create(params={"type": "express"})
    made = [
        client.v1.transfers.create(
            params={"amount": 100 + i, "currency": "usd", "destination": account.id}
        )
        for i in range(5)
    ]
    first, last = made[0].created, made[-1].created
    window = {"gte": first, "lt": last + 1}

    page = client.v1.transfers.list(params={"created": window, "limit": 2})
    rest = client.v1.transfers.list(
        params={"created": window, "limit": 100, "starting_after": page.data[-1].id}
    )

    assert page.has_more and not rest.has_more
    assert [t.id for t in page.data + rest.data] == [t.id for t in reversed(made)]
    assert client.v1.transfers.list(params={"created": {"lt": first}}).data == []
    assert client.v1.transfers.list(params={"created": {"gt": last}}).data == []
    assert len(client.v1.transfers.list(params={"created": {"lte": last}}).data) == 5


def test_a_listed_transfer_embeds_its_reversals(client, transfer):
    client.v1.transfers.reversals.create(transfer.id, params={"amount": 300})

    (listed,) = client.v1.transfers.list(params={"created": {"gte": transfer.created}}).data

    assert listed.amount_reversed == 300
    assert [r.amount for r in listed.reversals.data] == [300]


def test_refunds_are_listed_by_creation_time(client):
    intent = client.v1.payment_intents.create(
        params={
            "amount": 1000,
            "currency": "usd",
            "confirm": True,
            "payment_method": "pm_card_visa",
        }
    )
    refund = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 100})

    found = client.v1.refunds.list(params={"created": {"gte": refund.created}}).data
    none = client.v1.refunds.list(params={"created": {"lt": refund.created}}).data

    assert [r.id for r in found] == [refund.id] and none == []


def test_a_malformed_created_filter_is_stripes_400(client):
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.transfers.list(params={"created": {"after": 5}})

    assert info.value.http_status == 400


def test_events_are_listed_by_type_and_creation_time(client, transfer):
    client.v1.transfers.reversals.create(transfer.id, params={"amount": 100})
    client.v1.transfers.reversals.create(transfer.id, params={"amount": 200})

    listed = client.v1.events.list(
        params={"type": "transfer.reversed", "created": {"gte": transfer.created}, "limit": 1}
    )
    rest = client.v1.events.list(
        params={"type": "transfer.reversed", "starting_after": listed.data[0].id}
    )

    assert listed.has_more and not rest.has_more
    # Newest first: the latest event carries the transfer's latest amount reversed.
    assert [e.data.object.amount_reversed for e in listed.data + rest.data] == [300, 100]
    assert {e.type for e in client.v1.events.list(params={"limit": 100}).data} >= {
        "transfer.created",
        "transfer.reversed",
    }
    assert client.v1.events.list(params={"created": {"lt": transfer.created}}).data == []
