"""Lifecycles the sandbox can play out: settlement in another currency, refunds that fail after
succeeding, disputes, connected accounts that can't receive, reversals the seller's balance
can't cover, and state that survives a restart.

Driven through the real stripe-python client and the control API. No Django and no database:
only the session sandbox (``sandbox_server``) and ``stripe_client`` from conftest are used, and
the sandbox is reset around every test.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import stripe

from stripe_sandbox import ZERO_DECIMAL_CURRENCIES
from stripe_sandbox.money import convert
from stripe_sandbox.testing import SandboxControlError, SandboxProcess

PLATFORM_SECRET = "whsec_platform_lifecycles"
CONNECT_SECRET = "whsec_connect_lifecycles"


@pytest.fixture
def control(sandbox_server):
    sandbox_server.control.reset()
    yield sandbox_server.control
    sandbox_server.control.reset()


class Receiver:
    """A local webhook endpoint that keeps what it was sent."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.headers["Stripe-Signature"], body.decode()))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}
        )
        self.thread.start()

    def events(self) -> list[dict]:
        return [json.loads(body) for _, body in self.received]

    def types(self) -> list[str]:
        return sorted(event["type"] for event in self.events())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def endpoints(control):
    """Platform and Connect webhook endpoints, each with its own signing secret."""
    platform, connect = Receiver(), Receiver()
    control.configure_webhooks(platform.url, PLATFORM_SECRET)
    control.configure_connect_webhooks(connect.url, CONNECT_SECRET)
    yield platform, connect
    platform.close()
    connect.close()


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def pay(client, amount: int, currency: str = "usd", **extra):
    intent = client.v1.payment_intents.create(
        params={
            "amount": amount,
            "currency": currency,
            "confirm": True,
            "payment_method": "pm_card_visa",
            **extra,
        }
    )
    return intent, intent.latest_charge


def seller(client):
    return client.v1.accounts.create(params={"type": "express", "country": "US"})


def event_types(control) -> list[str]:
    return [event["type"] for event in control.events()]


# -- currencies ------------------------------------------------------------------


def test_zero_decimal_currencies_and_conversion_rounding():
    stripes_list = "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf"
    assert set(stripes_list.split()) == ZERO_DECIMAL_CURRENCIES
    assert convert(1000, "jpy", 0.0067, "usd") == 670  # 1000 yen = 6.70 dollars
    assert convert(1000, "eur", 1.0873, "usd") == 1087  # 10.873 dollars, rounded down
    assert convert(5, "eur", 0.5, "usd") == 3  # 2.5 cents: half rounds up
    assert convert(1000, "usd", 151.55, "jpy") == 1516  # 1515.5 yen: half rounds up
    assert convert(1000, "usd", None, "usd") == 1000


# -- settlement and balance transactions -----------------------------------------


def test_charges_settle_in_the_settlement_currency(control, stripe_client):
    settlement = control.set_settlement("usd", {"eur": 1.0873, "jpy": 0.0067})
    assert settlement["rates"] == {"eur": 1.0873, "jpy": 0.0067}

    _, euro_charge = pay(stripe_client, 1000, "eur")
    charge = stripe_client.v1.charges.retrieve(
        euro_charge, params={"expand": ["balance_transaction"]}
    )
    txn = charge.balance_transaction
    assert txn.id.startswith("txn_") and txn.object == "balance_transaction"
    assert (txn.amount, txn.currency, txn.exchange_rate) == (1087, "usd", 1.0873)
    assert (txn.fee, txn.net, txn.source, txn.type) == (0, 1087, euro_charge, "charge")
    assert txn.reporting_category == "charge" and txn.fee_details == []

    yen_intent, _ = pay(stripe_client, 1000, "JPY")
    expanded = stripe_client.v1.payment_intents.retrieve(
        yen_intent.id, params={"expand": ["latest_charge.balance_transaction"]}
    )
    assert expanded.latest_charge.currency == "jpy"
    assert expanded.latest_charge.balance_transaction.amount == 670

    _, dollar_charge = pay(stripe_client, 2500)
    txn_id = stripe_client.v1.charges.retrieve(dollar_charge).balance_transaction
    dollars = stripe_client.v1.balance_transactions.retrieve(txn_id)
    assert (dollars.amount, dollars.currency, dollars.exchange_rate) == (2500, "usd", None)
    assert control.ledger()["platform_balance"] == {"usd": 1087 + 670 + 2500}


def test_processing_fees_come_out_of_the_net(control, stripe_client):
    control.set_settlement(fee_percent=2.9, fee_fixed=30)
    _, charge_id = pay(stripe_client, 1000)
    charge = stripe_client.v1.charges.retrieve(
        charge_id, params={"expand": ["balance_transaction"]}
    )
    txn = charge.balance_transaction
    assert (txn.amount, txn.fee, txn.net) == (1000, 59, 941)  # 29 + 30 cents
    assert txn.fee_details[0].to_dict() == {
        "amount": 59,
        "application": None,
        "currency": "usd",
        "description": "Stripe processing fees",
        "type": "stripe_fee",
    }


def test_a_refund_settles_at_the_rate_of_its_own_day(control, stripe_client):
    control.set_settlement("usd", {"eur": 1.0873})
    intent, charge_id = pay(stripe_client, 1000, "eur")
    control.set_settlement(rates={"eur": 1.2})

    refund = stripe_client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 500})
    again = stripe_client.v1.refunds.retrieve(refund.id, params={"expand": ["balance_transaction"]})
    txn = again.balance_transaction
    assert (txn.amount, txn.currency, txn.exchange_rate) == (-600, "usd", 1.2)
    assert (txn.type, txn.source, txn.net) == ("refund", refund.id, -600)
    charge_txn = stripe_client.v1.charges.retrieve(
        charge_id, params={"expand": ["balance_transaction"]}
    ).balance_transaction
    assert charge_txn.exchange_rate == 1.0873

    [entry] = control.ledger()["charges"]
    assert entry["settlement"]["amount"] == 1087
    assert entry["refunds"][0]["settled_amount"] == -600


def test_a_currency_without_a_rate_settles_unconverted(control, stripe_client):
    account = seller(stripe_client)
    _, charge_id = pay(stripe_client, 1000, "gbp")
    txn = stripe_client.v1.charges.retrieve(
        charge_id, params={"expand": ["balance_transaction"]}
    ).balance_transaction
    assert (txn.amount, txn.currency, txn.exchange_rate) == (1000, "gbp", None)
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.transfers.create(
            params={
                "amount": 500,
                "currency": "usd",
                "destination": account.id,
                "source_transaction": charge_id,
            }
        )
    assert "balance transaction (gbp) must be the same as the transfer currency (usd)" in (
        info.value.user_message
    )
    assert control.ledger()["platform_balance"] == {"gbp": 1000}

    with pytest.raises(SandboxControlError) as bad:
        control.set_settlement(rates={"eur": -1})
    assert bad.value.status == 400 and bad.value.body["error"]["type"] == "sandbox_error"


def test_settling_in_yen(control, stripe_client):
    control.set_settlement("jpy", {"usd": 151.55})
    _, charge_id = pay(stripe_client, 1000)
    txn = stripe_client.v1.charges.retrieve(
        charge_id, params={"expand": ["balance_transaction"]}
    ).balance_transaction
    assert (txn.amount, txn.currency, txn.exchange_rate) == (1516, "jpy", 151.55)


def test_expanding_what_cannot_be_expanded(control, stripe_client):
    _, charge_id = pay(stripe_client, 1000)
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.charges.retrieve(charge_id, params={"expand": ["metadata"]})
    assert info.value.user_message == "This property cannot be expanded (metadata)."


# -- transfers drawing on a charge -----------------------------------------------


def test_transfer_currency_must_match_the_source_charges_settlement(control, stripe_client):
    control.set_settlement("usd", {"eur": 1.0873})
    account = seller(stripe_client)
    _, charge_id = pay(stripe_client, 1000, "eur")
    params = {"destination": account.id, "source_transaction": charge_id}

    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.transfers.create(params={**params, "amount": 500, "currency": "eur"})
    assert info.value.http_status == 400 and info.value.param == "source_transaction"
    assert info.value.user_message == (
        "The currency of source_transaction's balance transaction (usd) must be the same as "
        "the transfer currency (eur)"
    )
    transfer = stripe_client.v1.transfers.create(
        params={**params, "amount": 1087, "currency": "usd"}
    )
    assert transfer.source_transaction == charge_id


def test_transfers_cannot_take_more_than_the_charge_brought_in(control, stripe_client):
    control.set_settlement(fee_percent=2.9, fee_fixed=30)  # 1000 cents settle to 941 net
    account = seller(stripe_client)
    _, charge_id = pay(stripe_client, 1000)
    params = {"currency": "usd", "destination": account.id, "source_transaction": charge_id}

    stripe_client.v1.transfers.create(params={**params, "amount": 600})
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.transfers.create(params={**params, "amount": 342})
    assert info.value.http_status == 400 and info.value.code == "balance_insufficient"
    assert "($3.42) is greater than what is left of the charge's funds ($3.41)" in (
        info.value.user_message
    )
    stripe_client.v1.transfers.create(params={**params, "amount": 341})
    [entry] = control.ledger()["charges"]
    assert (entry["transferred"], entry["settlement"]["net"]) == (941, 941)
    assert control.ledger()["consistent"]


# -- refunds that fail after succeeding ------------------------------------------


def test_a_succeeded_refund_fails_later(control, stripe_client, endpoints):
    platform, connect = endpoints
    intent, charge_id = pay(stripe_client, 1000)
    refund = stripe_client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 400})
    assert refund.status == "succeeded"
    wait_for(lambda: len(platform.received) == 3)  # payment, charge.refunded, refund.created

    failed = control.fail_refund(refund.id, "expired_or_canceled_card")
    assert (failed["status"], failed["failure_reason"]) == ("failed", "expired_or_canceled_card")
    assert stripe_client.v1.charges.retrieve(charge_id).amount_refunded == 0
    again = stripe_client.v1.refunds.retrieve(
        refund.id, params={"expand": ["failure_balance_transaction"]}
    )
    restored = again.failure_balance_transaction
    assert (restored.type, restored.amount, restored.source) == ("refund_failure", 400, refund.id)

    wait_for(lambda: len(platform.received) == 6)
    for header, body in platform.received:
        assert stripe.WebhookSignature.verify_header(body, header, PLATFORM_SECRET)
    late = {e["type"]: e for e in platform.events()[3:]}
    assert sorted(late) == ["charge.refund.updated", "refund.failed", "refund.updated"]
    assert late["refund.updated"]["data"]["previous_attributes"] == {
        "status": "succeeded",
        "failure_reason": None,
        "failure_balance_transaction": None,
    }
    assert late["refund.failed"]["data"]["object"]["failure_balance_transaction"] == restored.id
    assert all("account" not in e for e in late.values()) and connect.received == []

    with pytest.raises(SandboxControlError) as twice:
        control.fail_refund(refund.id)
    assert twice.value.body["error"]["message"] == f"Refund {refund.id} is already failed."
    [entry] = control.ledger()["charges"]
    assert entry["refunds"][0]["restored_amount"] == 400 and control.ledger()["consistent"]


def test_failure_reason_must_be_one_of_stripes(control, stripe_client):
    intent, _ = pay(stripe_client, 1000)
    refund = stripe_client.v1.refunds.create(params={"payment_intent": intent.id})
    with pytest.raises(SandboxControlError) as info:
        control.fail_refund(refund.id, "bad_luck")
    assert info.value.status == 400
    assert stripe_client.v1.refunds.retrieve(refund.id).status == "succeeded"
    declined = control.set_refund_status(refund.id, "failed", failure_reason="declined")
    assert declined["failure_reason"] == "declined"


# -- disputes --------------------------------------------------------------------


def test_a_chargeback_won(control, stripe_client):
    intent, charge_id = pay(stripe_client, 2000)
    dispute = control.open_dispute(charge_id, reason="product_not_received")
    assert dispute["id"].startswith("dp_") and dispute["object"] == "dispute"
    assert (dispute["amount"], dispute["currency"], dispute["status"]) == (
        2000,
        "usd",
        "needs_response",
    )
    assert (dispute["charge"], dispute["payment_intent"]) == (charge_id, intent.id)
    assert dispute["is_charge_refundable"] is False and dispute["livemode"] is False
    assert dispute["evidence_details"]["due_by"] > dispute["created"]
    [withdrawal] = dispute["balance_transactions"]
    assert (withdrawal["amount"], withdrawal["fee"], withdrawal["net"]) == (-2000, 1500, -3500)
    assert withdrawal["description"] == f"Chargeback withdrawal for {charge_id}"
    assert stripe_client.v1.charges.retrieve(charge_id).disputed is True
    assert event_types(control)[-2:] == ["charge.dispute.created", "charge.dispute.funds_withdrawn"]

    with pytest.raises(stripe.InvalidRequestError) as refused:
        stripe_client.v1.refunds.create(params={"charge": charge_id})
    assert refused.value.http_status == 400 and refused.value.code == "charge_disputed"
    assert refused.value.user_message == (
        f"Charge {charge_id} has been charged back; cannot issue a refund."
    )

    reviewing = control.advance_dispute(dispute["id"], "under_review")
    assert reviewing["evidence_details"]["submission_count"] == 1
    updated = control.events("charge.dispute.updated")[-1]
    assert updated["data"]["previous_attributes"]["status"] == "needs_response"

    won = control.advance_dispute(dispute["id"], "won")
    reinstated = won["balance_transactions"][1]
    assert (reinstated["amount"], reinstated["fee"], reinstated["net"]) == (2000, -1500, 3500)
    assert event_types(control)[-2:] == ["charge.dispute.funds_reinstated", "charge.dispute.closed"]

    [entry] = control.ledger()["disputes"]
    assert (entry["withdrawn"], entry["reinstated"], entry["fees"]) == (2000, 2000, 0)
    assert stripe_client.v1.refunds.create(params={"charge": charge_id}).amount == 2000


def test_disputes_are_read_through_the_api(control, stripe_client):
    intent, charge_id = pay(stripe_client, 1500)
    dispute = control.open_dispute(charge_id, metadata={"case": "7"})
    fetched = stripe_client.v1.disputes.retrieve(
        dispute["id"], params={"expand": ["charge", "payment_intent"]}
    )
    assert (fetched.charge.id, fetched.payment_intent.id) == (charge_id, intent.id)
    assert fetched.metadata.to_dict() == {"case": "7"} and fetched.reason == "fraudulent"
    assert fetched.evidence.uncategorized_text is None
    assert fetched.payment_method_details.card.case_type == "chargeback"
    listed = stripe_client.v1.disputes.list(params={"charge": charge_id})
    assert [d.id for d in listed.data] == [dispute["id"]]
    by_intent = stripe_client.v1.disputes.list(params={"payment_intent": intent.id})
    assert [d.id for d in by_intent.data] == [dispute["id"]]
    assert stripe_client.v1.disputes.list(params={"charge": "ch_other"}).data == []
    txn_id = fetched.balance_transactions[0].id
    txn = stripe_client.v1.balance_transactions.retrieve(txn_id, params={"expand": ["source"]})
    assert (txn.type, txn.reporting_category, txn.source.id) == (
        "adjustment",
        "dispute",
        dispute["id"],
    )


def test_a_chargeback_lost_in_another_currency(control, stripe_client):
    control.set_settlement("usd", {"eur": 1.0873}, dispute_fee=1500)
    _, charge_id = pay(stripe_client, 1000, "eur")
    dispute = control.open_dispute(charge_id, amount=600)
    assert (dispute["amount"], dispute["currency"]) == (600, "eur")
    withdrawal = dispute["balance_transactions"][0]
    assert (withdrawal["amount"], withdrawal["currency"], withdrawal["exchange_rate"]) == (
        -652,
        "usd",
        1.0873,
    )
    lost = control.advance_dispute(dispute["id"], "lost")
    assert len(lost["balance_transactions"]) == 1
    assert control.events()[-1]["type"] == "charge.dispute.closed"
    with pytest.raises(stripe.InvalidRequestError) as refused:
        stripe_client.v1.refunds.create(params={"charge": charge_id})
    assert refused.value.code == "charge_disputed"
    with pytest.raises(SandboxControlError) as closed:
        control.advance_dispute(dispute["id"], "won")
    assert closed.value.status == 409
    ledger = control.ledger()
    assert ledger["totals"]["disputes_withdrawn"] == {"usd": 652}
    assert ledger["platform_balance"] == {"usd": 1087 - 652 - 1500}


def test_an_inquiry_moves_no_money_unless_it_escalates(control, stripe_client):
    _, first = pay(stripe_client, 1000)
    inquiry = control.open_dispute(first, inquiry=True)
    assert inquiry["status"] == "warning_needs_response"
    assert inquiry["is_charge_refundable"] is True and inquiry["balance_transactions"] == []
    assert control.advance_dispute(inquiry["id"], "warning_under_review")["status"] == (
        "warning_under_review"
    )
    closed = control.advance_dispute(inquiry["id"], "warning_closed")
    assert closed["balance_transactions"] == [] and event_types(control)[-1] == (
        "charge.dispute.closed"
    )
    assert stripe_client.v1.refunds.create(params={"charge": first}).amount == 1000

    _, second = pay(stripe_client, 700)
    escalating = control.open_dispute(second, inquiry=True)
    escalated = control.advance_dispute(escalating["id"], "needs_response")
    assert escalated["is_charge_refundable"] is False
    assert escalated["balance_transactions"][0]["amount"] == -700
    assert event_types(control)[-2:] == ["charge.dispute.updated", "charge.dispute.funds_withdrawn"]
    with pytest.raises(SandboxControlError) as twice:
        control.open_dispute(second)
    assert twice.value.status == 409


# -- connected accounts that can't receive ---------------------------------------


def test_transfers_capability_switched_off_and_on(control, stripe_client, endpoints):
    platform, connect = endpoints
    account = seller(stripe_client)
    assert account.capabilities.transfers == "active" and account.charges_enabled is True
    assert account.payouts_enabled is True and account.details_submitted is True
    assert account.requirements.past_due == [] and account.requirements.disabled_reason is None

    control.set_transfers_capability(account.id, "inactive", requirements=["external_account"])
    params = {"amount": 500, "currency": "usd", "destination": account.id}
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.transfers.create(params=params)
    assert info.value.http_status == 400
    assert info.value.code == "insufficient_capabilities_for_transfer"
    assert info.value.user_message == (
        "Your destination account needs to have at least one of the following capabilities "
        "enabled: transfers, crypto_transfers, legacy_payments"
    )
    restricted = stripe_client.v1.accounts.retrieve(account.id)
    assert restricted.requirements.past_due == ["external_account"]
    assert restricted.requirements.disabled_reason == "requirements.past_due"
    assert restricted.payouts_enabled is False and restricted.charges_enabled is True

    control.set_transfers_capability(account.id, "active")
    assert stripe_client.v1.transfers.create(params=params).amount == 500

    assert_capability_events(connect, account.id)
    wait_for(lambda: len(platform.received) == 1)
    assert platform.types() == ["transfer.created"]
    deliveries = control.wait_for_deliveries(5)
    assert sorted(d["endpoint"] for d in deliveries) == ["connect"] * 4 + ["platform"]


def assert_capability_events(connect: Receiver, account_id: str) -> None:
    """Off then on: account.updated and capability.updated twice, signed for Connect."""
    wait_for(lambda: len(connect.received) == 4)
    for header, body in connect.received:
        assert stripe.WebhookSignature.verify_header(body, header, CONNECT_SECRET)
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.WebhookSignature.verify_header(body, header, PLATFORM_SECRET)
    events = connect.events()
    assert {e["account"] for e in events} == {account_id}
    assert connect.types() == ["account.updated"] * 2 + ["capability.updated"] * 2
    [switched_off] = [
        e
        for e in events
        if e["type"] == "account.updated"
        and e["data"]["object"]["capabilities"]["transfers"] == "inactive"
    ]
    assert switched_off["data"]["previous_attributes"]["capabilities"]["transfers"] == "active"


def test_pending_verification_also_blocks_transfers(control, stripe_client):
    account = seller(stripe_client)
    updated = control.set_transfers_capability(account.id, "pending")
    assert updated["requirements"]["disabled_reason"] == "requirements.pending_verification"
    assert updated["requirements"]["pending_verification"] == ["individual.verification.document"]
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.transfers.create(
            params={"amount": 100, "currency": "usd", "destination": account.id}
        )
    assert info.value.code == "insufficient_capabilities_for_transfer"


def test_deauthorized_account(control, stripe_client, endpoints):
    platform, connect = endpoints
    account = seller(stripe_client)
    result = control.deauthorize_account(account.id)
    assert result["application"]["object"] == "application"
    assert result["application"]["id"].startswith("ca_")

    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.transfers.create(
            params={"amount": 100, "currency": "usd", "destination": account.id}
        )
    assert info.value.http_status == 400 and info.value.code == "account_invalid"
    assert info.value.param == "destination"
    with pytest.raises(stripe.PermissionError) as denied:
        stripe_client.v1.accounts.retrieve(account.id)
    # stripe-python leaves PermissionError.code unset; the code is on the error object.
    assert denied.value.http_status == 403 and denied.value.error.code == "account_invalid"
    assert denied.value.user_message == (
        "The provided key 'sk_test_*uite' does not have access to account "
        f"'{account.id}' (or that account does not exist). Application access may have been "
        "revoked."
    )
    with pytest.raises(stripe.PermissionError):
        stripe_client.v1.balance.retrieve(options={"stripe_account": account.id})

    wait_for(lambda: len(connect.received) == 1)
    header, body = connect.received[0]
    event = stripe.Webhook.construct_event(body, header, CONNECT_SECRET)
    assert event.type == "account.application.deauthorized" and event.account == account.id
    assert event.data.object.id == result["application"]["id"]
    assert platform.received == []
    with pytest.raises(SandboxControlError) as twice:
        control.deauthorize_account(account.id)
    assert twice.value.status == 409


def test_a_connect_event_sent_by_hand_goes_to_the_connect_endpoint(control, endpoints):
    platform, connect = endpoints
    sent = control.send_event("account.updated", {"id": "acct_x"}, account="acct_x")
    assert sent["status"] == 200 and sent["event"]["account"] == "acct_x"
    assert len(connect.received) == 1 and platform.received == []


# -- the seller's balance --------------------------------------------------------


def test_a_reversal_the_sellers_balance_cannot_cover(control, stripe_client):
    account = seller(stripe_client)
    transfer = stripe_client.v1.transfers.create(
        params={"amount": 1000, "currency": "usd", "destination": account.id}
    )
    payout = control.simulate_payout(account.id, 800, "usd")
    assert payout["id"].startswith("po_") and payout["status"] == "paid"
    balance = stripe_client.v1.balance.retrieve(options={"stripe_account": account.id})
    assert [(b.amount, b.currency) for b in balance.available] == [(200, "usd")]
    assert control.account_balance(account.id)["available"][0]["amount"] == 200

    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.transfers.reversals.create(transfer.id, params={"amount": 500})
    assert info.value.http_status == 400 and info.value.code == "balance_insufficient"
    assert "available balance is $2.00 and the reversal needs $5.00" in info.value.user_message
    assert stripe_client.v1.transfers.retrieve(transfer.id).amount_reversed == 0

    reversal = stripe_client.v1.transfers.reversals.create(transfer.id, params={"amount": 200})
    txn = stripe_client.v1.balance_transactions.retrieve(reversal.balance_transaction)
    assert (txn.type, txn.amount, txn.reporting_category) == (
        "transfer_refund",
        200,
        "transfer_reversal",
    )
    with pytest.raises(SandboxControlError) as broke:
        control.simulate_payout(account.id, 1)
    assert broke.value.body["error"]["code"] == "balance_insufficient"

    [entry] = control.ledger()["accounts"]
    assert entry["balances"] == {"usd": 0} and entry["paid_out"] == {"usd": 800}
    assert entry["consistent"]


def test_a_payout_belongs_to_the_seller(control, stripe_client, endpoints):
    _, connect = endpoints
    account = seller(stripe_client)
    stripe_client.v1.transfers.create(
        params={"amount": 1000, "currency": "usd", "destination": account.id}
    )
    payout = control.simulate_payout(account.id, 800)  # in the account's default currency
    assert (payout["object"], payout["currency"], payout["type"]) == (
        "payout",
        "usd",
        "bank_account",
    )
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.balance_transactions.retrieve(payout["balance_transaction"])
    seen = stripe_client.v1.balance_transactions.retrieve(
        payout["balance_transaction"], options={"stripe_account": account.id}
    )
    assert (seen.type, seen.amount, seen.description) == ("payout", -800, "STRIPE PAYOUT")
    wait_for(lambda: len(connect.received) == 2)
    assert connect.types() == ["payout.created", "payout.paid"]
    assert {e["account"] for e in connect.events()} == {account.id}
    platform_balance = stripe_client.v1.balance.retrieve()
    assert [(b.amount, b.currency) for b in platform_balance.available] == [(-1000, "usd")]


# -- the ledger ------------------------------------------------------------------


def test_the_ledger_follows_all_the_money(control, stripe_client):
    control.set_settlement("usd", {"eur": 1.1}, fee_percent=1)
    account = seller(stripe_client)
    _, charge_id = pay(stripe_client, 10000, "eur")  # settles 11000, fee 110, net 10890
    stripe_client.v1.transfers.create(
        params={
            "amount": 8000,
            "currency": "usd",
            "destination": account.id,
            "source_transaction": charge_id,
        }
    )
    refund = stripe_client.v1.refunds.create(params={"charge": charge_id, "amount": 1000})
    control.fail_refund(refund.id)
    dispute = control.open_dispute(charge_id, amount=2000)
    control.advance_dispute(dispute["id"], "won")
    control.simulate_payout(account.id, 3000)

    ledger = control.ledger()
    assert ledger["consistent"]
    totals = ledger["totals"]
    assert totals["settled"] == {"usd": 11000} and totals["fees"] == {"usd": 110}
    assert totals["refunds_settled"] == {"usd": 1100}
    assert totals["refunds_restored"] == {"usd": 1100}
    assert totals["disputes_withdrawn"] == {"usd": 2200}
    assert totals["disputes_reinstated"] == {"usd": 2200}
    assert totals["dispute_fees"] == {"usd": 0} and totals["paid_out"] == {"usd": 3000}
    [charge] = ledger["charges"]
    assert charge["transferred"] == 8000 and charge["disputes"] == [dispute["id"]]
    assert charge["refunds"][0]["status"] == "failed"
    [seller_entry] = ledger["accounts"]
    assert seller_entry["balances"] == {"usd": 5000}
    assert ledger["platform_balance"] == {"usd": 10890 - 8000}


# -- state that survives a restart ----------------------------------------------


def client_for(url: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_restart", base_addresses={"api": url}, max_network_retries=0
    )


@pytest.mark.slow
def test_state_survives_a_restart(tmp_path):
    state_file = tmp_path / "sandbox.json"
    with SandboxProcess(state_file=state_file) as first:
        client = client_for(first.url)
        first.control.set_settlement("usd", {"eur": 1.0873})
        account = client.v1.accounts.create(params={"type": "express"})
        options = {"idempotency_key": "pay-order-1"}
        intent = client.v1.payment_intents.create(
            params={"amount": 1000, "currency": "eur", "confirm": True, "payment_method": "pm_x"},
            options=options,
        )
        first.control.open_dispute(intent.latest_charge, inquiry=True)
        ledger = first.control.ledger()
    assert "state is saved to" in first.log_path.read_text()
    assert list(json.loads(state_file.read_text())["store"]["accounts"]) == [account.id]

    with SandboxProcess(state_file=state_file) as second:
        client = client_for(second.url)
        assert client.v1.accounts.retrieve(account.id).id == account.id
        replayed = client.v1.payment_intents.create(
            params={"amount": 1000, "currency": "eur", "confirm": True, "payment_method": "pm_x"},
            options=options,
        )
        assert replayed.id == intent.id
        assert replayed.last_response.headers["Idempotent-Replayed"] == "true"
        assert second.control.ledger() == ledger
        assert second.control.settlement()["rates"] == {"eur": 1.0873}
    assert "(4 objects loaded from it)" in second.log_path.read_text()


@pytest.mark.slow
def test_without_a_state_file_it_says_state_is_forgotten():
    with SandboxProcess() as process:
        process.control.health()
    assert (
        "stripe_sandbox: state is kept in memory only and is forgotten on restart "
        "(use --state-file PATH to keep it)"
    ) in process.log_path.read_text()
