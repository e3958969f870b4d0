"""The sandbox's bank payouts of connected accounts: transfers and reversals land on the account
as payments and payment refunds, a payout of everything available carries them, and
``GET /v1/balance_transactions?payout=`` lists them, as the account, in pages; a manual payout
cannot be listed, and a failed one gives its money back.

No Django and no database: the session sandbox and the real stripe-python client."""

import pytest
import stripe

from stripe_sandbox.testing import SandboxControlError


@pytest.fixture
def control(sandbox_server):
    sandbox_server.control.reset()
    yield sandbox_server.control
    sandbox_server.control.reset()


def account_with_transfers(stripe_client, amounts):
    account = stripe_client.v1.accounts.create(params={"type": "express"})
    transfers = [
        stripe_client.v1.transfers.create(
            params={"amount": amount, "currency": "usd", "destination": account.id}
        )
        for amount in amounts
    ]
    return account, transfers


def listed(stripe_client, account_id, payout_id, **params):
    return stripe_client.v1.balance_transactions.list(
        params={"payout": payout_id, **params}, options={"stripe_account": account_id}
    )


def test_a_payout_carries_the_accounts_payments_and_payment_refunds(control, stripe_client):
    account, transfers = account_with_transfers(stripe_client, [1000, 2000])
    reversal = stripe_client.v1.transfers.reversals.create(transfers[1].id, params={"amount": 500})

    payout = control.simulate_payout(account.id)
    page = listed(stripe_client, account.id, payout["id"], expand=["data.source"])

    assert (payout["amount"], payout["automatic"], payout["status"]) == (2500, True, "paid")
    lines = {(t.type, t.net) for t in page.data}
    assert lines == {("payment", 1000), ("payment", 2000), ("payment_refund", -500)} | {
        ("payout", -2500)
    }
    payments = {t.source.id: t.source for t in page.data if t.type == "payment"}
    assert {p.source_transfer for p in payments.values()} == {t.id for t in transfers}
    assert set(payments) == {t.destination_payment for t in transfers}
    [refund] = [t.source for t in page.data if t.type == "payment_refund"]
    assert (refund.id, refund.charge) == (
        reversal.destination_payment_refund,
        transfers[1].destination_payment,
    )
    assert control.account_balance(account.id)["available"][0]["amount"] == 0


def test_the_listing_is_paged_with_starting_after(control, stripe_client):
    account, _ = account_with_transfers(stripe_client, [100] * 5)
    payout = control.simulate_payout(account.id)

    first = listed(stripe_client, account.id, payout["id"], limit=4)
    rest = listed(
        stripe_client, account.id, payout["id"], limit=4, starting_after=first.data[-1].id
    )

    assert (len(first.data), first.has_more, len(rest.data), rest.has_more) == (4, True, 2, False)
    assert len({t.id for t in [*first.data, *rest.data]}) == 6


def test_a_later_payout_carries_only_what_came_after_the_last_one(control, stripe_client):
    account, _ = account_with_transfers(stripe_client, [1000])
    first = control.simulate_payout(account.id)
    stripe_client.v1.transfers.create(
        params={"amount": 300, "currency": "usd", "destination": account.id}
    )

    second = control.simulate_payout(account.id)

    assert second["amount"] == 300
    lines = listed(stripe_client, account.id, second["id"]).data
    assert sorted(t.net for t in lines) == [-300, 300]
    assert sorted(t.net for t in listed(stripe_client, account.id, first["id"]).data) == [
        -1000,
        1000,
    ]


def test_only_the_account_can_list_its_payout(control, stripe_client):
    account, _ = account_with_transfers(stripe_client, [1000])
    other, _ = account_with_transfers(stripe_client, [1000])
    payout = control.simulate_payout(account.id)

    for options in ({}, {"stripe_account": other.id}):
        with pytest.raises(stripe.InvalidRequestError) as refused:
            stripe_client.v1.balance_transactions.list(
                params={"payout": payout["id"]}, options=options
            )
        assert (refused.value.http_status, refused.value.code) == (400, "resource_missing")


def test_a_manual_payout_cannot_be_listed(control, stripe_client):
    account, _ = account_with_transfers(stripe_client, [1000])
    payout = control.simulate_payout(account.id, 400)

    assert payout["automatic"] is False
    with pytest.raises(stripe.InvalidRequestError) as refused:
        listed(stripe_client, account.id, payout["id"])
    assert "automatic" in refused.value.user_message


def test_a_failed_payout_gives_the_money_back(control, stripe_client):
    account, _ = account_with_transfers(stripe_client, [1000])

    payout = control.simulate_payout(account.id, failure_code="no_account")

    assert (payout["status"], payout["failure_code"]) == ("failed", "no_account")
    assert "No bank account could be located" in payout["failure_message"]
    failure = stripe_client.v1.balance_transactions.retrieve(
        payout["failure_balance_transaction"], options={"stripe_account": account.id}
    )
    assert (failure.type, failure.amount) == ("payout_failure", 1000)
    assert control.account_balance(account.id)["available"][0]["amount"] == 1000
    types = [e["type"] for e in control.events() if e.get("account") == account.id]
    assert types == ["payout.created", "payout.failed"]
    [entry] = [a for a in control.ledger()["accounts"] if a["id"] == account.id]
    assert entry["paid_out"] == {} and entry["consistent"]


def test_an_adjustment_is_paid_out_with_the_rest(control, stripe_client):
    account, _ = account_with_transfers(stripe_client, [1000])
    control.adjust_account(account.id, -75)

    payout = control.simulate_payout(account.id)

    assert payout["amount"] == 925
    lines = {t.type: t.net for t in listed(stripe_client, account.id, payout["id"]).data}
    assert lines == {"payment": 1000, "adjustment": -75, "payout": -925}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"failure_code": "lost_in_the_post"}, "failure_code must be one of"),
        ({"amount": 0}, "amount must be a positive integer"),
    ],
)
def test_bad_payout_requests_are_refused(control, stripe_client, payload, message):
    account, _ = account_with_transfers(stripe_client, [1000])

    with pytest.raises(SandboxControlError) as refused:
        control._call("POST", f"accounts/{account.id}/payout", payload)

    assert refused.value.status == 400 and message in str(refused.value)


def test_nothing_to_pay_out_is_refused(control, stripe_client):
    account = stripe_client.v1.accounts.create(params={"type": "express"})

    with pytest.raises(SandboxControlError) as refused:
        control.simulate_payout(account.id)

    assert refused.value.status == 409
