"""The book: every flow leaves it agreeing with itself, the transfer rows and Stripe; the
database refuses an unbalanced or edited entry; replays post nothing; a seller whose balance
refuses a reversal owes the rest, and their next transfer is netted by exactly that debt."""

import csv
import io
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from ledger.models import Break, Entry, EntryKind, Line
from ledger.selectors import seller_balances
from ledger.services import debt_write_off
from marketplace.models import Order
from payouts import tasks
from payouts.models import SellerTransfer
from payouts.services.ledger_check import ledger_check
from payouts.transfer.transitions import TransferStatus
from tests.builders import (
    STRIPE_500,
    make_due,
    make_event,
    paid_order,
    post_event,
    refund_at_stripe,
)
from tests.factories import SellerFactory, UserFactory

pytestmark = pytest.mark.django_db


def clean() -> list:
    """The breaks ``ledger_check`` finds, against the sandbox (none is the goal)."""
    return ledger_check()[1]


def refund(client, stripe_client, order, amount=None, capture=None):
    event = make_event("refund.created", refund_at_stripe(stripe_client, order, amount))
    with capture(execute=True):
        assert post_event(client, event).status_code == 200


# --- Every flow leaves the book clean ---------------------------------------------------------


def test_paying_three_sellers_books_the_payment_the_fees_and_each_transfer(
    client, sandbox, stripe_client
):
    order, rows = paid_order(stripe_client, [1000, 2000, 3333], webhook=client)

    assert clean() == []
    kinds = sorted(Entry.objects.filter(order=order).values_list("kind", flat=True))
    assert kinds == [EntryKind.PAYMENT] + [EntryKind.TRANSFER] * 3
    balances = {row.seller_id: seller_balances(seller_id=row.seller_id) for row in rows}
    assert all(b == {"usd": {"payable": 0, "debt": 0}} for b in balances.values())


def test_a_partial_then_the_full_refund_leave_the_book_clean(
    client, sandbox, stripe_client, django_capture_on_commit_callbacks
):
    order, _ = paid_order(stripe_client, [1000, 2000, 3333], webhook=client)

    refund(client, stripe_client, order, 1000, django_capture_on_commit_callbacks)
    assert clean() == []
    refund(client, stripe_client, order, None, django_capture_on_commit_callbacks)

    assert set(order.transfers.values_list("status", flat=True)) == {TransferStatus.REVERSED}
    assert clean() == []


def test_a_transfer_paid_after_a_500_and_a_retry_is_booked_once(client, sandbox, stripe_client):
    order, [row] = paid_order(stripe_client, [2000], unpaid=[0])
    sandbox.script("transfers.create", [STRIPE_500])
    tasks.transfers_send_due()
    make_due(row)

    tasks.transfers_send_due()

    assert Entry.objects.filter(transfer_id=row.pk, kind=EntryKind.TRANSFER).count() == 1
    assert clean() == []


def test_a_seller_paid_after_a_partial_refund_gives_back_their_share_and_the_book_is_clean(
    client, sandbox, stripe_client, django_capture_on_commit_callbacks
):
    order, [paid, late] = paid_order(stripe_client, [1000, 3000], unpaid=[1])
    refund(client, stripe_client, order, 2000, django_capture_on_commit_callbacks)

    with django_capture_on_commit_callbacks(execute=True):
        tasks.transfers_send_due()

    late.refresh_from_db()
    assert (late.status, late.amount_reversed) == (TransferStatus.PARTIALLY_REVERSED, 1350)
    assert clean() == []


def test_a_seller_unpaid_when_the_order_is_refunded_in_full_is_cancelled_in_the_book(
    client, sandbox, stripe_client, django_capture_on_commit_callbacks
):
    order, [paid, unpaid] = paid_order(stripe_client, [1000, 3000], unpaid=[1])
    refund(client, stripe_client, order, None, django_capture_on_commit_callbacks)

    tasks.transfers_send_due()

    unpaid.refresh_from_db()
    assert unpaid.end_reason == "order_refunded"
    assert seller_balances(seller_id=unpaid.seller_id) == {"usd": {"payable": 0, "debt": 0}}
    assert clean() == []


# --- Seller debt: refused, netted, written off -----------------------------------------------


@pytest.fixture
def seller_in_debt(client, sandbox, stripe_client, django_capture_on_commit_callbacks):
    """A seller paid 1,800 for an order, paid out to their bank at once; the order is refunded
    in full and Stripe refuses the reversal for their balance."""
    order, [row] = paid_order(stripe_client, [2000], webhook=client)
    sandbox.simulate_payout(row.seller.stripe_account_id, 1800, "usd")
    refund(client, stripe_client, order, None, django_capture_on_commit_callbacks)
    row.refresh_from_db()
    return row


def test_a_reversal_the_sellers_balance_refuses_becomes_their_debt(seller_in_debt):
    row = seller_in_debt

    assert (row.status, row.amount_owed, row.amount_reversed) == (
        TransferStatus.REVERSAL_REFUSED,
        1800,
        0,
    )
    assert "balance" in row.error_message
    assert seller_balances(seller_id=row.seller_id) == {"usd": {"payable": 0, "debt": 1800}}
    assert clean() == []


def test_the_sellers_next_order_pays_them_less_by_exactly_the_debt(
    client, stripe_client, seller_in_debt
):
    seller = seller_in_debt.seller

    order, [row] = paid_order(stripe_client, [3000], webhook=client, sellers=[seller])

    assert (row.amount, row.amount_netted, row.status) == (2700, 1800, TransferStatus.COMPLETED)
    [remote] = [t for t in stripe_client.v1.transfers.list().data if t.id == row.stripe_transfer_id]
    assert remote.amount == 900
    assert seller_balances(seller_id=seller.pk) == {"usd": {"payable": 0, "debt": 0}}
    assert clean() == []


def test_a_debt_larger_than_the_next_transfer_is_netted_over_several_orders(
    client, stripe_client, seller_in_debt
):
    seller = seller_in_debt.seller

    _, [first] = paid_order(stripe_client, [1000], webhook=client, sellers=[seller])
    _, [second] = paid_order(stripe_client, [2000], webhook=client, sellers=[seller])

    assert (first.amount_netted, first.stripe_transfer_id) == (900, "")  # nothing sent
    assert (second.amount_netted, second.amount) == (900, 1800)
    assert seller_balances(seller_id=seller.pk) == {"usd": {"payable": 0, "debt": 0}}
    assert clean() == []


def test_staff_write_off_a_debt_with_a_reason_and_the_book_records_who_and_why(
    client, seller_in_debt, approval_rules
):
    approval_rules("write_off=never")
    seller_id = seller_in_debt.seller_id
    staff = UserFactory(is_superuser=True, is_staff=True)
    client.force_login(staff)
    url = f"/api/admin/sellers/{seller_id}/debt/write-off/"

    response = client.post(
        url,
        {"currency": "usd", "amount": 800, "reason": "goodwill"},
        content_type="application/json",
    )

    assert response.status_code == 200, response.content
    assert response.json() == {"usd": {"payable": 0, "debt": 1000}}
    entry = Entry.objects.get(kind=EntryKind.DEBT_WRITTEN_OFF)
    assert (entry.memo, entry.posted_by) == ("goodwill", staff)
    assert clean() == []


def test_a_new_debt_of_the_same_size_as_one_written_off_can_be_written_off_too(
    client, sandbox, stripe_client, seller_in_debt, django_capture_on_commit_callbacks
):
    seller = seller_in_debt.seller
    staff = UserFactory(is_superuser=True, is_staff=True)
    assert (
        debt_write_off(seller_id=seller.pk, currency="usd", amount=1800, reason="a", user=staff)
        == 0
    )
    # The same again: paid out at once, refunded, refused.
    order, [row] = paid_order(stripe_client, [2000], webhook=client, sellers=[seller])
    sandbox.simulate_payout(seller.stripe_account_id, 1800, "usd")
    refund(client, stripe_client, order, None, django_capture_on_commit_callbacks)
    assert seller_balances(seller_id=seller.pk)["usd"]["debt"] == 1800

    left = debt_write_off(seller_id=seller.pk, currency="usd", amount=1800, reason="b", user=staff)

    assert left == seller_balances(seller_id=seller.pk)["usd"]["debt"] == 0
    assert Entry.objects.filter(kind=EntryKind.DEBT_WRITTEN_OFF).count() == 2
    assert clean() == []


def test_writing_off_more_than_the_debt_is_refused_and_changes_nothing(client, seller_in_debt):
    client.force_login(UserFactory(is_superuser=True, is_staff=True))
    url = f"/api/admin/sellers/{seller_in_debt.seller_id}/debt/write-off/"
    entries = Entry.objects.count()

    response = client.post(
        url, {"currency": "usd", "amount": 1801, "reason": "x"}, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["code"] == "write_off_refused"
    assert Entry.objects.count() == entries


def test_the_statement_shows_the_debt_and_its_netting_in_json_and_csv(
    client, stripe_client, seller_in_debt
):
    seller = seller_in_debt.seller
    paid_order(stripe_client, [3000], webhook=client, sellers=[seller])
    client.force_login(UserFactory(is_staff=True))
    url = f"/api/admin/sellers/{seller.pk}/statement/"

    statement = client.get(url).json()
    as_csv = list(csv.DictReader(io.StringIO(client.get(url, {"format": "csv"}).content.decode())))

    kinds = [(line["kind"], line["account"], line["amount"]) for line in statement["lines"]]
    assert ("reversal_refused", "debt", 1800) in kinds
    assert ("debt_netted", "debt", -1800) in kinds
    assert statement["closing"] == {"usd": {"payable": 0, "debt": 0}}
    assert [row["kind"] for row in as_csv][-2:] == ["closing_balance", "closing_balance"]
    assert len(as_csv) == len(statement["lines"]) + 2


# --- The statement and balance APIs refuse bad input ------------------------------------------


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": "2026-11-02", "to": "2026-11-01"}, "from"),
        ({"format": "xml"}, "format"),
    ],
)
def test_a_malformed_or_reversed_period_answers_400_naming_the_parameter(client, query, named):
    client.force_login(UserFactory(is_staff=True))
    response = client.get(f"/api/admin/sellers/{SellerFactory().pk}/statement/", query)

    assert response.status_code == 400
    assert f"`{named}`" in response.json()["detail"]


def test_an_unknown_seller_answers_404(client):
    client.force_login(UserFactory(is_staff=True))

    assert client.get("/api/admin/sellers/987654/balance/").status_code == 404
    assert client.get("/api/admin/sellers/987654/statement/").status_code == 404


# --- Planted breaks are found and named -----------------------------------------------------


def test_a_row_changed_by_raw_sql_is_a_break_that_names_it(client, sandbox, stripe_client):
    _, [row] = paid_order(stripe_client, [2000], webhook=client)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE payouts_sellertransfer SET amount = 1700 WHERE id = %s", [row.pk])
    out = StringIO()

    with pytest.raises(SystemExit) as exited:
        call_command("ledger_check", stdout=out)

    assert exited.value.code == 1
    assert f"transfer {row.pk}" in out.getvalue()
    assert Break.objects.filter(transfer_id=row.pk).exists()


def test_a_reversal_made_at_stripe_only_is_a_break_that_names_the_transfer(
    client, sandbox, stripe_client
):
    _, [row] = paid_order(stripe_client, [2000], webhook=client)
    stripe_client.v1.transfers.reversals.create(row.stripe_transfer_id, params={"amount": 100})
    out = StringIO()

    with pytest.raises(SystemExit):
        call_command("ledger_check", stdout=out)

    assert f"transfer {row.pk} (seller {row.seller_id}, usd): {row.stripe_transfer_id}" in (
        out.getvalue()
    )
    assert "at Stripe" in out.getvalue()


# --- The database keeps the book honest -------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # the balance check runs when a transaction commits
def test_an_unbalanced_entry_cannot_be_committed_even_by_raw_sql():
    with (
        pytest.raises(DatabaseError, match="does not balance"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "INSERT INTO ledger_account (kind) VALUES ('platform_cash'), ('fee_revenue')"
        )
        cursor.execute(
            "INSERT INTO ledger_entry (kind, external_id, posted_at, stripe_id, memo) "
            "VALUES ('payment', 'forged', now(), '', '') RETURNING id"
        )
        entry = cursor.fetchone()[0]
        cursor.execute(
            "INSERT INTO ledger_line (entry_id, account_id, currency, amount) "
            "SELECT %s, id, 'usd', CASE kind WHEN 'platform_cash' THEN 100 ELSE -99 END "
            "FROM ledger_account",
            [entry],
        )

    assert not Entry.objects.exists()


@pytest.mark.parametrize(
    "statement", ["UPDATE ledger_line SET amount = 1", "DELETE FROM ledger_line"]
)
def test_book_lines_refuse_update_and_delete(client, sandbox, stripe_client, statement):
    paid_order(stripe_client, [2000], webhook=client)

    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)


def test_a_replayed_payment_and_refund_post_nothing_more(
    client, sandbox, stripe_client, django_capture_on_commit_callbacks
):
    order, _ = paid_order(stripe_client, [1000, 2000], webhook=client)
    refund_object = refund_at_stripe(stripe_client, order, 500)
    intent = stripe_client.v1.payment_intents.retrieve(order.stripe_payment_intent_id).to_dict()
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            post_event(client, make_event("refund.created", refund_object))
    lines = Line.objects.count()

    for event in (
        make_event("payment_intent.succeeded", intent),
        make_event("refund.updated", refund_object),
    ):
        with django_capture_on_commit_callbacks(execute=True):
            assert post_event(client, event).status_code == 200

    assert Line.objects.count() == lines
    assert Order.objects.get(pk=order.pk).status == Order.Status.PARTIALLY_REFUNDED
    assert SellerTransfer.objects.filter(order=order).count() == 2
    assert clean() == []
