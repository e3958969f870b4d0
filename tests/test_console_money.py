"""Money as money, everywhere in the admin: minor units become ``58.05 USD`` with the decimals
of each currency (Stripe's zero- and three-decimal ones included), debts show their minus sign,
and every date-time carries its seconds and time zone."""

import re

import pytest
from django.urls import reverse

import ledger.services
from config.money import format_money
from ledger.models import Entry
from marketplace.models import Order
from payouts.transfer.moves import book_ref
from payouts.transfer.transitions import TransferStatus
from tests.factories import (
    OrderItemFactory,
    PaidOrderFactory,
    RefundFactory,
    SellerFactory,
    SellerTransferFactory,
    UserFactory,
)


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (5805, "usd", "58.05 USD"),
        (5, "usd", "0.05 USD"),
        (0, "usd", "0.00 USD"),
        (123456789, "eur", "1,234,567.89 EUR"),
        (5805, "jpy", "5,805 JPY"),
        (5805, "JPY", "5,805 JPY"),
        (300, "krw", "300 KRW"),
        (1234, "kwd", "1.234 KWD"),
        (-1800, "usd", "-18.00 USD"),
        (-5, "eur", "-0.05 EUR"),
        (-5805, "jpy", "-5,805 JPY"),
    ],
)
def test_minor_units_are_shown_in_the_currencys_own_decimals(amount, currency, shown):
    assert format_money(amount, currency) == shown


@pytest.fixture
def staff(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def text(response) -> str:
    assert response.status_code == 200, response.content[:300]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


@pytest.mark.django_db
def test_the_transfer_list_and_page_show_money_in_the_transfers_currency(staff):
    usd = SellerTransferFactory(completed=True, amount=5805, platform_fee=645)
    jpy = SellerTransferFactory(completed=True, amount=5805, order=PaidOrderFactory(currency="jpy"))

    listed = text(staff.get(reverse("admin:payouts_sellertransfer_changelist")))
    page = text(staff.get(reverse("admin:payouts_sellertransfer_change", args=[usd.pk])))

    assert "58.05 USD" in listed and "5,805 JPY" in listed
    assert "58.05 USD" in page and "6.45 USD" in page
    assert jpy.pk


@pytest.mark.django_db
def test_the_order_page_shows_its_total_items_refunds_and_transfers_as_money(staff):
    order = PaidOrderFactory(status=Order.Status.PARTIALLY_REFUNDED, currency="eur")
    item = OrderItemFactory(order=order, amount=6450)
    RefundFactory(order=order, amount=1250, status="succeeded")
    SellerTransferFactory(order=order, seller=item.seller, completed=True, amount=5805)

    page = text(staff.get(reverse("admin:marketplace_order_change", args=[order.pk])))
    listed = text(staff.get(reverse("admin:marketplace_order_changelist")))

    for shown in ("64.50 EUR", "12.50 EUR", "58.05 EUR"):
        assert shown in page
    assert "64.50 EUR" in listed


@pytest.mark.django_db
def test_the_refund_list_shows_money(staff):
    RefundFactory(amount=1999, order=PaidOrderFactory(currency="gbp"))

    assert "19.99 GBP" in text(staff.get(reverse("admin:marketplace_refund_changelist")))


@pytest.mark.django_db
def test_a_sellers_page_shows_their_balances_and_statement_with_the_debt_as_money(staff):
    seller = SellerFactory()
    row = SellerTransferFactory(seller=seller, status=TransferStatus.REVERSAL_REFUSED)
    ledger.services.post_refund_share(book_ref(row, "scenario"), previous_target=0, target=1800)
    ledger.services.post_reversal_refused(
        book_ref(row, "scenario"), previous_owed=0, owed_total=1800
    )

    page = text(staff.get(reverse("admin:marketplace_seller_change", args=[seller.pk])))

    assert "0.00 USD owed to them, 18.00 USD owed by them" in page
    statement = page.split("Statement, last 30 days", 1)[1]
    # The share to give back (minus, as the seller sees their payable), then the debt.
    assert "refund_share payable -18.00 USD" in statement
    assert "reversal_refused debt 18.00 USD" in statement


@pytest.mark.django_db
def test_ledger_entries_show_their_size_and_their_lines_as_debits_and_credits(staff):
    row = SellerTransferFactory(status=TransferStatus.REVERSAL_REFUSED)
    ledger.services.post_refund_share(book_ref(row, "scenario"), previous_target=0, target=1800)
    ledger.services.post_reversal_refused(
        book_ref(row, "scenario"), previous_owed=0, owed_total=1800
    )

    listed = text(staff.get(reverse("admin:ledger_entry_changelist")))

    assert "18.00 USD" in listed
    entry = Entry.objects.get(transfer_id=row.pk, kind="reversal_refused")
    page = text(staff.get(reverse("admin:ledger_entry_change", args=[entry.pk])))
    assert page.count("18.00 USD") == 2  # one debit, one credit
    assert "-18.00 USD" not in page


@pytest.mark.django_db
def test_every_date_time_shows_its_seconds_and_time_zone(staff):
    transfer = SellerTransferFactory(completed=True)

    page = staff.get(reverse("admin:payouts_sellertransfer_changelist")).content.decode()

    shown = f"{transfer.updated_at:%Y-%m-%d %H:%M:%S} UTC"
    assert shown in page
