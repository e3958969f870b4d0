"""Sellers' bank payouts: the Connect endpoint's ``payout.*`` events are recorded, a paid payout is
read at Stripe in pages (as the seller's account) and each of its lines is tied to our transfers
and reversals, the amounts adding up; what we cannot place is listed; staff see it per seller
(API, CSV, console, statement) and a failed payout needs attention."""

import csv
import io

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from console.dashboard import needs_attention
from devtools.management.commands.sandbox_payout import Command as SandboxPayoutCommand
from payouts import tasks
from payouts.models import Payout, PayoutItemKind, SellerTransfer, WebhookEvent, WebhookOutcome
from payouts.services.bank_payouts import payout_reconcile
from payouts.transfer.transitions import TransferStatus
from tests.builders import (
    STRIPE_500,
    connected_seller,
    deliver_payout_events,
    make_event,
    paid_order,
    post_connect_event,
    post_event,
    post_signed_connect_event,
    refund_at_stripe,
)
from tests.factories import SellerTransferFactory, UserFactory

K = PayoutItemKind
pytestmark = pytest.mark.django_db


def three_orders_one_partly_refunded(client, stripe_client):
    """One seller, three orders paid through the webhook (transfers of 900, 1,800 and 2,700),
    the second refunded 1,000 of 2,000 and its seller's share (900) reversed at Stripe."""
    seller = connected_seller(stripe_client)
    orders = [
        paid_order(stripe_client, [amount], webhook=client, sellers=[seller])[0]
        for amount in (1000, 2000, 3000)
    ]
    refund = refund_at_stripe(stripe_client, orders[1], 1000)
    assert post_event(client, make_event("refund.updated", refund)).status_code == 200
    tasks.reversals_process_due()
    return seller, orders, refund


def staff(client):
    client.force_login(UserFactory(is_staff=True))
    return client


def listing_calls(sandbox) -> int:
    return len(sandbox.calls("balance_transactions.list"))


def test_a_payout_lists_exactly_our_transfers_and_the_reversal_and_adds_up(
    client, sandbox, stripe_client
):
    seller, orders, refund = three_orders_one_partly_refunded(client, stripe_client)
    rows = {row.order_id: row for row in SellerTransfer.objects.filter(seller=seller)}
    assert [rows[o.pk].status for o in orders] == [
        TransferStatus.COMPLETED,
        TransferStatus.PARTIALLY_REVERSED,
        TransferStatus.COMPLETED,
    ]
    assert all(row.stripe_destination_payment_id.startswith("py_") for row in rows.values())

    at_stripe = sandbox.simulate_payout(seller.stripe_account_id)
    deliver_payout_events(client, sandbox, at_stripe["id"])

    payout = Payout.objects.get(stripe_payout_id=at_stripe["id"])
    assert (payout.seller, payout.status, payout.amount) == (seller, "paid", 900 + 900 + 2700)
    items = list(payout.items.order_by("pk"))
    transfers = sorted((i.transfer_id, i.net) for i in items if i.kind == K.TRANSFER)
    reversals = [(i.transfer_id, i.net) for i in items if i.kind == K.REVERSAL]
    assert transfers == sorted((rows[o.pk].pk, rows[o.pk].amount) for o in orders)
    assert reversals == [(rows[orders[1].pk].pk, -900)]
    assert [i for i in items if i.kind == K.UNMATCHED] == []
    assert sum(i.net for i in items) == payout.amount == payout.items_total
    assert payout.balanced and payout.reconcile_calls == 1 == listing_calls(sandbox)

    response = staff(client).get(f"/api/admin/sellers/{seller.pk}/payouts/{at_stripe['id']}/")
    assert response.status_code == 200, response.content
    body = response.json()
    by_order = {entry["order_id"]: entry for entry in body["orders"]}
    assert sorted(by_order) == sorted(o.pk for o in orders)
    assert (by_order[orders[1].pk]["transferred"], by_order[orders[1].pk]["reversed"]) == (
        1800,
        -900,
    )
    assert [r["stripe_refund_id"] for r in by_order[orders[1].pk]["refunds"]] == [refund["id"]]
    assert by_order[orders[0].pk]["refunds"] == []
    assert (body["transfers_total"], body["reversals_total"], body["unmatched"]) == (
        5400,
        -900,
        [],
    )
    assert body["payout"]["balanced"] is True


def test_the_payout_as_csv_has_a_row_per_line_with_its_order_and_refunds(
    client, sandbox, stripe_client
):
    seller, orders, refund = three_orders_one_partly_refunded(client, stripe_client)
    at_stripe = sandbox.simulate_payout(seller.stripe_account_id)
    deliver_payout_events(client, sandbox, at_stripe["id"])

    response = staff(client).get(
        f"/api/admin/sellers/{seller.pk}/payouts/{at_stripe['id']}/", {"format": "csv"}
    )

    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert sorted((row["kind"], int(row["net"]), int(row["order_id"])) for row in rows) == sorted(
        [("transfer", 900, orders[0].pk), ("transfer", 1800, orders[1].pk)]
        + [("transfer", 2700, orders[2].pk), ("reversal", -900, orders[1].pk)]
    )
    reversal = next(row for row in rows if row["kind"] == "reversal")
    assert reversal["refunds"] == f"{refund['id']}:1000:succeeded"


def test_lines_we_cannot_place_are_listed_not_dropped(client, sandbox, stripe_client):
    seller = connected_seller(stripe_client)
    _, [row] = paid_order(stripe_client, [1000], webhook=client, sellers=[seller])
    foreign = stripe_client.v1.transfers.create(
        params={"amount": 500, "currency": "usd", "destination": seller.stripe_account_id}
    )
    sandbox.adjust_account(seller.stripe_account_id, -50)

    at_stripe = sandbox.simulate_payout(seller.stripe_account_id)
    deliver_payout_events(client, sandbox, at_stripe["id"])

    payout = Payout.objects.get(stripe_payout_id=at_stripe["id"])
    assert payout.amount == 900 + 500 - 50
    matched = [(i.kind, i.transfer_id, i.net) for i in payout.items.exclude(kind=K.UNMATCHED)]
    assert matched == [(K.TRANSFER, row.pk, 900)]
    unmatched = {i.stripe_type: i for i in payout.items.filter(kind=K.UNMATCHED)}
    assert sorted(unmatched) == ["adjustment", "payment"]
    assert unmatched["payment"].net == 500 and foreign.id in unmatched["payment"].note
    assert "money we did not send" in unmatched["payment"].note
    assert unmatched["adjustment"].net == -50 and "cannot place" in unmatched["adjustment"].note
    assert (payout.items_total, payout.unmatched_count, payout.balanced) == (1350, 2, True)

    body = staff(client).get(f"/api/admin/sellers/{seller.pk}/payouts/{payout.stripe_payout_id}/")
    assert sorted(item["net"] for item in body.json()["unmatched"]) == [-50, 500]
    assert body.json()["unmatched_total"] == 450


def test_a_failed_payout_needs_attention_and_shows_in_the_statement(client, sandbox, stripe_client):
    seller = connected_seller(stripe_client)
    paid_order(stripe_client, [1000], webhook=client, sellers=[seller])

    at_stripe = sandbox.simulate_payout(seller.stripe_account_id, failure_code="account_closed")
    events = deliver_payout_events(client, sandbox, at_stripe["id"])

    assert [e["type"] for e in events] == ["payout.created", "payout.failed"]
    payout = Payout.objects.get(stripe_payout_id=at_stripe["id"])
    assert (payout.status, payout.failure_code) == ("failed", "account_closed")
    assert payout.failure_message == "The bank account has been closed."
    report = needs_attention(now=timezone.now())
    assert report.payouts_count == 1 and report.payouts == [payout]

    client.force_login(UserFactory(is_superuser=True, is_staff=True))
    page = client.get("/admin/needs-attention/")
    assert page.status_code == 200
    assert "The bank account has been closed." in page.content.decode()
    statement = client.get(f"/api/admin/sellers/{seller.pk}/statement/").json()
    [deposit] = [line for line in statement["lines"] if line["account"] == "bank"]
    assert (deposit["kind"], deposit["amount"], deposit["stripe_id"]) == (
        "payout_failed",
        900,
        at_stripe["id"],
    )
    assert "account_closed" in deposit["memo"] and "has been closed" in deposit["memo"]
    # A deposit is not the book's money: the balances are the book's alone.
    assert statement["closing"] == {"usd": {"payable": 0, "debt": 0}}


def test_the_statement_has_a_line_per_deposit(client, sandbox, stripe_client):
    seller = connected_seller(stripe_client)
    paid_order(stripe_client, [1000], webhook=client, sellers=[seller])
    first = sandbox.simulate_payout(seller.stripe_account_id)
    paid_order(stripe_client, [2000], webhook=client, sellers=[seller])
    second = sandbox.simulate_payout(seller.stripe_account_id)
    for at_stripe in (first, second):
        deliver_payout_events(client, sandbox, at_stripe["id"])

    statement = staff(client).get(f"/api/admin/sellers/{seller.pk}/statement/").json()

    deposits = [(line["stripe_id"], line["amount"], line["kind"]) for line in statement["lines"]]
    deposits = [entry for entry in deposits if entry[0].startswith("po_")]
    assert deposits == [(first["id"], 900, "payout"), (second["id"], 1800, "payout")]


def test_a_payout_event_for_an_account_that_is_not_a_seller_is_stored_and_ignored(
    client, sandbox, stripe_client
):
    stranger = stripe_client.v1.accounts.create(params={"type": "express"})
    stripe_client.v1.transfers.create(
        params={"amount": 700, "currency": "usd", "destination": stranger.id}
    )
    at_stripe = sandbox.simulate_payout(stranger.id)

    events = deliver_payout_events(client, sandbox, at_stripe["id"])

    stored = WebhookEvent.objects.filter(stripe_event_id__in=[e["id"] for e in events])
    assert {(e.outcome, e.account) for e in stored} == {(WebhookOutcome.IGNORED, stranger.id)}
    assert not Payout.objects.exists()
    assert listing_calls(sandbox) == 0


def test_duplicate_and_late_payout_events_change_nothing(client, sandbox, stripe_client):
    seller = connected_seller(stripe_client)
    paid_order(stripe_client, [1000], webhook=client, sellers=[seller])
    at_stripe = sandbox.simulate_payout(seller.stripe_account_id)
    created, paid = deliver_payout_events(client, sandbox, at_stripe["id"])
    payout = Payout.objects.get()
    items = list(payout.items.values_list("stripe_balance_transaction_id", "net"))

    again = post_signed_connect_event(client, paid)  # the same event, delivered twice
    late = post_connect_event(
        client, "payout.created", created["data"]["object"], account=seller.stripe_account_id
    )  # another event with the payout's earlier state, arriving after it was paid

    assert (again.status_code, late.status_code) == (200, 200)
    payout.refresh_from_db()
    assert (Payout.objects.count(), payout.status) == (1, "paid")
    assert list(payout.items.values_list("stripe_balance_transaction_id", "net")) == items
    assert listing_calls(sandbox) == 1


def test_a_payout_is_read_in_pages_not_one_call_per_transfer(client, sandbox, stripe_client):
    seller = connected_seller(stripe_client)
    rows = []
    for _ in range(205):
        sent = stripe_client.v1.transfers.create(
            params={"amount": 100, "currency": "usd", "destination": seller.stripe_account_id}
        )
        rows.append(
            SellerTransferFactory(
                seller=seller,
                amount=100,
                status=TransferStatus.COMPLETED,
                stripe_transfer_id=sent.id,
                stripe_destination_payment_id=sent.destination_payment,
            )
        )
    at_stripe = sandbox.simulate_payout(seller.stripe_account_id)
    calls_before = len(sandbox.calls())

    deliver_payout_events(client, sandbox, at_stripe["id"])

    payout = Payout.objects.get()
    # 205 payments and the payout's own line: three pages of 100.
    assert payout.reconcile_calls == 3 == listing_calls(sandbox)
    assert len(sandbox.calls()) - calls_before == 3  # nothing else was asked of Stripe
    assert payout.items.filter(kind=K.TRANSFER).count() == 205
    assert set(payout.items.values_list("transfer_id", flat=True)) == {row.pk for row in rows}
    assert payout.items_total == payout.amount == 20500


def test_transfers_sent_before_destination_payments_were_kept_are_placed_by_their_transfer(
    client, sandbox, stripe_client
):
    seller = connected_seller(stripe_client)
    _, [row] = paid_order(stripe_client, [2000], webhook=client, sellers=[seller])
    payment = row.stripe_destination_payment_id
    SellerTransfer.objects.filter(pk=row.pk).update(stripe_destination_payment_id="")
    at_stripe = sandbox.simulate_payout(seller.stripe_account_id)

    deliver_payout_events(client, sandbox, at_stripe["id"])

    [item] = Payout.objects.get().items.all()
    assert (item.kind, item.transfer_id, item.net) == (K.TRANSFER, row.pk, 1800)
    row.refresh_from_db()
    assert row.stripe_destination_payment_id == payment  # learnt for its later reversals


def test_a_payout_can_be_read_again_on_demand(client, sandbox, stripe_client):
    seller = connected_seller(stripe_client)
    paid_order(stripe_client, [1000], webhook=client, sellers=[seller])
    at_stripe = sandbox.simulate_payout(seller.stripe_account_id)
    deliver_payout_events(client, sandbox, at_stripe["id"])
    payout = Payout.objects.get()
    url = f"/api/admin/sellers/{seller.pk}/payouts/{payout.stripe_payout_id}/reconcile/"

    staff(client)
    refused = client.post(url)
    client.force_login(UserFactory(is_superuser=True, is_staff=True))
    response = client.post(url)

    assert refused.status_code == 403
    assert response.status_code == 200, response.content
    assert [item["net"] for item in response.json()["items"]] == [900]
    assert listing_calls(sandbox) == 2
    out = io.StringIO()
    call_command("reconcile_payouts", payout.stripe_payout_id, stdout=out)
    assert "reconciled, 1 call(s), 2 line(s), 0 unmatched, lines 900 of 900 usd" in out.getvalue()


def test_a_stripe_error_while_reading_is_recorded_and_needs_attention(
    client, sandbox, stripe_client
):
    seller = connected_seller(stripe_client)
    paid_order(stripe_client, [1000], webhook=client, sellers=[seller])
    at_stripe = sandbox.simulate_payout(seller.stripe_account_id)
    sandbox.script("balance_transactions.list", [STRIPE_500])

    deliver_payout_events(client, sandbox, at_stripe["id"])

    payout = Payout.objects.get()
    assert payout.reconciled_at is None and payout.reconcile_error
    assert needs_attention(now=timezone.now()).payouts == [payout]
    result = payout_reconcile(payout_id=payout.pk)  # Stripe answers again
    assert (result.outcome, result.matched) == ("reconciled", 1)
    assert needs_attention(now=timezone.now()).payouts == []


# --- Bad input -------------------------------------------------------------------------------


def test_unknown_seller_or_payout_is_404(client, sandbox, stripe_client):
    seller = connected_seller(stripe_client)
    staff(client)

    assert client.get("/api/admin/sellers/999999/payouts/").status_code == 404
    missing = client.get(f"/api/admin/sellers/{seller.pk}/payouts/po_missing/")
    assert (missing.status_code, missing.json()["code"]) == (404, "unknown_payout")


def test_another_sellers_payout_is_404(client, sandbox, stripe_client):
    owner, other = connected_seller(stripe_client), connected_seller(stripe_client)
    paid_order(stripe_client, [1000], webhook=client, sellers=[owner])
    at_stripe = sandbox.simulate_payout(owner.stripe_account_id)
    deliver_payout_events(client, sandbox, at_stripe["id"])

    response = staff(client).get(f"/api/admin/sellers/{other.pk}/payouts/{at_stripe['id']}/")

    assert response.status_code == 404


@pytest.mark.parametrize(
    "query",
    [{"cursor": "not-a-cursor"}, {"cursor": "YmVmb3JlOng="}, {"limit": "0"}, {"format": "xml"}],
)
def test_malformed_query_is_400(client, sandbox, stripe_client, query):
    seller = connected_seller(stripe_client)

    response = staff(client).get(f"/api/admin/sellers/{seller.pk}/payouts/", query)

    assert response.status_code == 400
    assert response.json()["code"] == "bad_query"


def test_the_list_pages_with_its_cursor_newest_first(client, sandbox, stripe_client):
    seller = connected_seller(stripe_client)
    made = []
    for amount in (1000, 2000, 3000):
        paid_order(stripe_client, [amount], webhook=client, sellers=[seller])
        made.append(sandbox.simulate_payout(seller.stripe_account_id)["id"])
        deliver_payout_events(client, sandbox, made[-1])
    url = f"/api/admin/sellers/{seller.pk}/payouts/"

    first = staff(client).get(url, {"limit": 2}).json()
    second = client.get(url, {"limit": 2, "cursor": first["next_cursor"]}).json()
    as_csv = client.get(url, {"format": "csv"})

    assert [p["stripe_payout_id"] for p in first["payouts"]] == made[::-1][:2]
    assert [p["stripe_payout_id"] for p in second["payouts"]] == made[:1]
    assert second["next_cursor"] is None
    assert [p["amount"] for p in first["payouts"]] == [2700, 1800]
    rows = list(csv.DictReader(io.StringIO(as_csv.content.decode())))
    assert [row["stripe_payout_id"] for row in rows] == made[::-1]


def test_a_paid_payout_whose_wake_up_was_lost_is_read_by_the_sweep(client, sandbox, stripe_client):
    seller = connected_seller(stripe_client)
    paid_order(stripe_client, [1000], webhook=client, sellers=[seller])
    at_stripe = sandbox.simulate_payout(seller.stripe_account_id)
    for event in sandbox.events():
        if event["type"].startswith("payout."):
            # Posted without running what it queued after commit: the broker lost it.
            assert post_signed_connect_event(client, event).status_code == 200
    payout = Payout.objects.get(stripe_payout_id=at_stripe["id"])
    assert (payout.status, payout.reconciled_at, listing_calls(sandbox)) == ("paid", None, 0)

    summary = tasks.payouts_reconcile_unread()

    payout.refresh_from_db()
    assert summary == {"reconciled": 1}
    assert (payout.items_total, payout.balanced) == (900, True)
    assert tasks.payouts_reconcile_unread() == {}  # read once


def test_the_console_goes_from_the_seller_to_their_payouts_to_the_lines(
    client, sandbox, stripe_client
):
    seller, orders, _ = three_orders_one_partly_refunded(client, stripe_client)
    other = connected_seller(stripe_client)
    paid_order(stripe_client, [1000], webhook=client, sellers=[other])
    mine = sandbox.simulate_payout(seller.stripe_account_id)
    theirs = sandbox.simulate_payout(other.stripe_account_id)
    for at_stripe in (mine, theirs):
        deliver_payout_events(client, sandbox, at_stripe["id"])
    client.force_login(UserFactory(is_superuser=True, is_staff=True))

    seller_page = client.get(f"/admin/marketplace/seller/{seller.pk}/change/").content.decode()
    listing = client.get(f"/admin/payouts/payout/?seller_id={seller.pk}").content.decode()
    payout = Payout.objects.get(stripe_payout_id=mine["id"])
    lines = client.get(f"/admin/payouts/payout/{payout.pk}/change/").content.decode()

    assert f"/admin/payouts/payout/?seller_id={seller.pk}" in seller_page
    assert mine["id"] in listing and theirs["id"] not in listing
    assert "(adds up)" in listing
    for order in orders:
        assert f"/admin/marketplace/order/{order.pk}/change/" in lines
    assert lines.count(">reversal<") == 1 and lines.count(">transfer<") == 3


def test_the_development_command_pays_a_seller_out_at_the_sandbox(
    client, sandbox, sandbox_server, stripe_client, settings
):
    seller = connected_seller(stripe_client)
    paid_order(stripe_client, [1000], webhook=client, sellers=[seller])
    settings.DEBUG, settings.STRIPE_USES_LOCAL_SANDBOX = True, True
    settings.SANDBOX_URL = sandbox_server.url
    out = io.StringIO()

    call_command(SandboxPayoutCommand(), seller.pk, "--fail", "no_account", stdout=out)

    [payout_id] = {e["data"]["object"]["id"] for e in sandbox.events("payout.failed")}
    assert out.getvalue().strip() == f"{payout_id}: 900 usd failed (no_account)"
    deliver_payout_events(client, sandbox, payout_id)
    assert Payout.objects.get().failure_code == "no_account"


def test_the_development_command_refuses_to_run_without_debug(sandbox, stripe_client, settings):
    seller = connected_seller(stripe_client)
    settings.DEBUG = False

    with pytest.raises(CommandError, match="only runs in development"):
        call_command(SandboxPayoutCommand(), seller.pk)
    assert sandbox.state()["payouts"] == []


def test_a_disputes_give_back_is_placed_by_its_transfer(client, sandbox, stripe_client):
    seller = connected_seller(stripe_client)

    def sent(amount):
        return stripe_client.v1.transfers.create(
            params={"amount": amount, "currency": "usd", "destination": seller.stripe_account_id}
        )

    first, given_back = sent(900), sent(400)
    row = SellerTransferFactory(
        seller=seller,
        status=TransferStatus.COMPLETED,
        stripe_transfer_id=first.id,
        stripe_destination_payment_id=first.destination_payment,
        stripe_return_id=given_back.id,
    )
    at_stripe = sandbox.simulate_payout(seller.stripe_account_id)

    deliver_payout_events(client, sandbox, at_stripe["id"])

    items = Payout.objects.get().items.order_by("net")
    assert [(i.kind, i.transfer_id, i.net) for i in items] == [
        (K.TRANSFER, row.pk, 400),
        (K.TRANSFER, row.pk, 900),
    ]


def test_a_pending_payout_canceled_is_recorded_and_never_read(client, sandbox, stripe_client):
    seller = connected_seller(stripe_client)
    pending = {
        "id": "po_canceled1",
        "object": "payout",
        "amount": 1500,
        "currency": "usd",
        "status": "pending",
        "automatic": True,
        "arrival_date": 1_780_000_000,
        "created": 1_779_900_000,
    }
    account = seller.stripe_account_id

    for event_type, status in [("payout.created", "pending"), ("payout.canceled", "canceled")]:
        response = post_connect_event(
            client, event_type, {**pending, "status": status}, account=account
        )
        assert response.status_code == 200, response.content
    late = post_connect_event(
        client, "payout.updated", {**pending, "status": "in_transit"}, account=account
    )

    assert late.status_code == 200
    payout = Payout.objects.get()
    assert (payout.status, payout.amount, payout.reconciled_at) == ("canceled", 1500, None)
    assert payout.arrival_date.timestamp() == 1_780_000_000
    assert needs_attention(now=timezone.now()).payouts == []
    assert listing_calls(sandbox) == 0
