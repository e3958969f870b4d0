"""The console's dashboard, the admin's first page: money at risk by currency, rows per status,
the oldest due rows, what needs attention, and the charts of moves and backlog, each figure
checked against rows put in the database for it. Through the test client as a superuser."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

import ledger.services
from console import dashboard
from marketplace.models import Dispute, DisputeStatus
from payouts.models import SellerTransfer
from payouts.transfer.moves import book_ref
from payouts.transfer.transitions import HeldReason, TransferStatus
from tests.builders import event_at
from tests.factories import (
    PaidOrderFactory,
    SellerFactory,
    SellerTransferFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db
INDEX = reverse("admin:index")


def figure(page: str, name: str) -> str:
    found = re.search(rf'data-figure="{re.escape(name)}"[^>]*>(.*?)</td>', page, re.S)
    assert found, f"no figure {name}"
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


def risk(page: str, key: str, currency: str) -> str:
    found = re.search(
        rf'data-risk="{key}" data-currency="{currency}">\s*<span class="money[^"]*">([^<]+)<',
        page,
    )
    assert found, f"no {key} in {currency}"
    return found.group(1)


def debt(seller, amount: int, currency: str = "usd") -> None:
    """A refused reversal of ``amount`` booked as the seller's debt."""
    order = PaidOrderFactory(currency=currency)
    row = SellerTransferFactory(order=order, seller=seller, status=TransferStatus.REVERSAL_REFUSED)
    ledger.services.post_refund_share(book_ref(row, "scenario"), previous_target=0, target=amount)
    ledger.services.post_reversal_refused(
        book_ref(row, "scenario"), previous_owed=0, owed_total=amount
    )


@pytest.fixture
def staff(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_money_at_risk_adds_up_each_kind_per_currency(staff):
    now = timezone.now()
    SellerTransferFactory(reversal_due=True, amount=900, amount_reversed=0)
    SellerTransferFactory(reversal_due=True, amount=1000, reversal_target=600, amount_reversed=100)
    SellerTransferFactory(
        reversal_due=True, amount=5000, order=PaidOrderFactory(currency="jpy"), next_retry_at=now
    )
    SellerTransferFactory(
        status=TransferStatus.FAILED, amount=2000, amount_netted=500, next_retry_at=now
    )
    SellerTransferFactory(
        status=TransferStatus.HELD, amount=700, held_reason=HeldReason.AWAITING_RELEASE
    )
    SellerTransferFactory(completed=True, amount=99999)  # paid: not at risk
    debt(SellerFactory(), 1800)
    debt(SellerFactory(), 250)

    page = staff.get(INDEX).content.decode()

    assert risk(page, "reversals_pending", "usd") == "14.00 USD"  # 900 + (600 - 100)
    assert risk(page, "reversals_pending", "jpy") == "5,000 JPY"
    assert risk(page, "transfers_failing", "usd") == "15.00 USD"  # 2000 - 500 netted
    assert risk(page, "held", "usd") == "7.00 USD"
    assert risk(page, "seller_debts", "usd") == "20.50 USD"
    assert figure(page, "debtors") == "2"


def test_reversals_pending_count_chargeback_shares_and_never_what_is_given_back(staff):
    """What is still to take back (``money.balances(...).to_take_back``): a chargeback's share
    counts as a refund's does, and a row giving money back owes nothing to take."""
    SellerTransferFactory(reversal_due=True, amount=1000, reversal_target=0, dispute_target=400)
    SellerTransferFactory(
        reversal_due=True,
        amount=1000,
        reversal_target=0,
        amount_reversed=600,
        amount_to_give_back=600,
    )

    page = staff.get(INDEX).content.decode()

    assert risk(page, "reversals_pending", "usd") == "4.00 USD"


def test_open_disputes_are_money_at_risk_and_closed_ones_are_not(staff):
    for number, (status, amount) in enumerate(
        [
            (DisputeStatus.NEEDS_RESPONSE, 2500),
            (DisputeStatus.UNDER_REVIEW, 1000),
            (DisputeStatus.WON, 9999),
        ]
    ):
        Dispute.objects.create(
            order=PaidOrderFactory(),
            stripe_dispute_id=f"dp_console{number}",
            amount=amount,
            currency="usd",
            status=status,
        )

    page = staff.get(INDEX).content.decode()

    assert risk(page, "disputes_open", "usd") == "35.00 USD"
    assert figure(page, "disputes-open") == "2"


def test_rows_per_status_are_what_the_table_holds_now_every_status_included(staff):
    now = timezone.now()
    SellerTransferFactory.create_batch(2, status=TransferStatus.FAILED, next_retry_at=now)
    SellerTransferFactory(reversal_due=True)
    SellerTransferFactory(status=TransferStatus.PERMANENTLY_FAILED)
    SellerTransferFactory.create_batch(3, completed=True)

    page = staff.get(INDEX).content.decode()

    assert figure(page, "status-failed") == "2"
    assert figure(page, "status-reversal_pending") == "1"
    assert figure(page, "status-permanently_failed") == "1"
    assert figure(page, "status-pending") == "0"
    # Settled rows too: the counters the database keeps, not a count of the table.
    assert figure(page, "status-completed") == "3"


def test_moves_into_each_status_are_counted_over_the_chosen_window(staff):
    now = timezone.now()
    row = SellerTransferFactory(completed=True)
    event_at(row, TransferStatus.PENDING, TransferStatus.COMPLETED, now - timedelta(hours=2))
    event_at(row, TransferStatus.PENDING, TransferStatus.COMPLETED, now - timedelta(days=3))
    event_at(
        row, TransferStatus.FAILED, TransferStatus.FAILED, now - timedelta(hours=1)
    )  # an attempt, not a move

    day = staff.get(INDEX).content.decode()
    week = staff.get(INDEX, {"window": "7d"}).content.decode()

    assert figure(day, "entered-completed") == "1"
    assert figure(week, "entered-completed") == "2"
    assert figure(day, "entered-failed") == "0"


def test_the_oldest_due_rows_say_how_long_they_have_waited(staff):
    now = timezone.now()
    SellerTransferFactory(reversal_due=True, next_retry_at=now - timedelta(minutes=5, seconds=3))
    SellerTransferFactory(reversal_due=True, next_retry_at=now + timedelta(minutes=5))
    SellerTransferFactory(
        status=TransferStatus.FAILED, next_retry_at=now - timedelta(hours=2, minutes=1)
    )

    page = staff.get(INDEX).content.decode()

    assert figure(page, "oldest-due-reversal").startswith("5 min")
    assert figure(page, "oldest-due-send") == "2 h 1 min"


def test_needs_attention_is_counted_per_reason_with_a_link_to_each_list(staff):
    now = timezone.now()
    unpaid = SellerTransferFactory(status=TransferStatus.FAILED, next_retry_at=now)
    SellerTransfer.objects.filter(pk=unpaid.pk).update(created_at=now - timedelta(hours=1))
    SellerTransferFactory(
        status=TransferStatus.FAILED, next_retry_at=now
    )  # failed a moment ago: not yet
    SellerTransferFactory(status=TransferStatus.REVERSAL_REFUSED)

    page = staff.get(INDEX).content.decode()

    assert figure(page, "attention-unpaid_failed") == "1"
    assert figure(page, "attention-reversal_refused") == "1"
    assert figure(page, "attention-permanently_failed") == "0"
    changelist = reverse("admin:payouts_sellertransfer_changelist")
    assert f'href="{changelist}?attention=unpaid_failed"' in page


def test_the_charts_draw_each_hour_of_the_window_without_anything_from_outside(staff):
    now = timezone.now()
    row = SellerTransferFactory(completed=True)
    event_at(row, TransferStatus.PENDING, TransferStatus.COMPLETED, now - timedelta(hours=3))

    day = staff.get(INDEX).content.decode()
    week = staff.get(INDEX, {"window": "7d"}).content.decode()

    assert day.count('<svg class="chart"') == 2
    # One hover target per hour, in each chart.
    assert day.count('class="hover"') == 2 * 24
    assert week.count('class="hover"') == 2 * 24 * 7
    assert "paid 1" in day
    assert not re.search(r'(src|href)="https?://', day.split('<svg class="chart"', 1)[1])


def test_the_backlog_is_walked_back_from_now_through_the_moves():
    now = timezone.now().replace(minute=30)
    hours = dashboard.window_hours(now=now, window=dashboard.DEFAULT_WINDOW)
    moves = {
        hours[-3]: {
            (TransferStatus.COMPLETED, TransferStatus.REVERSAL_PENDING): 5
        },  # five refunds came in
        hours[-2]: {
            (TransferStatus.REVERSAL_PENDING, TransferStatus.REVERSED): 3
        },  # three were reversed
        hours[-1]: {
            (TransferStatus.REVERSAL_PENDING, TransferStatus.REVERSAL_PENDING): 4
        },  # attempts: no change
    }

    chart = dashboard.backlog_chart(
        hours, moves, {TransferStatus.REVERSAL_PENDING: 2, TransferStatus.FAILED: 0}
    )

    reversals = next(s for s in chart.series if s.key == TransferStatus.REVERSAL_PENDING)
    assert reversals.values[-4:] == [0, 5, 2, 2]


def test_staff_without_access_to_transfers_get_the_plain_index(client):
    client.force_login(UserFactory(is_staff=True))

    response = client.get(INDEX)

    assert response.status_code == 200
    assert "board" not in response.context
    assert client.get(reverse("admin:needs_attention")).status_code == 403


def test_the_dashboard_reads_a_fixed_number_of_statements(staff, django_assert_max_num_queries):
    SellerTransferFactory.create_batch(
        5, status=TransferStatus.FAILED, next_retry_at=timezone.now()
    )
    debt(SellerFactory(), 100)

    # Session and user, then the console's own reads: none grows with the rows (sellers held
    # for risk and debt by age are one statement each).
    with django_assert_max_num_queries(19):
        assert staff.get(INDEX, {"window": "7d"}).status_code == 200
