"""The rolling reserve, end to end against the sandbox over HTTP: 10 % of each seller's share
kept back for 30 days; a refund inside the window taken from the reserve with no reversal at
Stripe; after 30 days the rest sent once, in one keyed transfer per seller, currency and day
(two sweeps racing make one); a chargeback takes the reserve first; after a 500 the release
reads Stripe first. ``ledger_check`` is clean after each step."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from ledger.models import BreakKind, Entry, EntryKind
from ledger.selectors import seller_balances, seller_statement_lines
from payouts.models import ReleaseState, ReserveRelease, SellerTransfer
from payouts.services.ledger_check import ledger_check
from payouts.services.policies import seller_policy_set
from payouts.services.reserves import reserves_release_due
from payouts.services.transfers import transfers_send_due
from payouts.stripe_api.gateway import get_gateway
from payouts.transfer.transitions import TransferStatus
from tests.builders import (
    DISPUTE_EVENTS,
    STRIPE_500,
    connected_seller,
    paid_order,
    refund_at_stripe,
    staff_with,
)
from tests.simulation.world import KillingGateway, WorkerKilled

TEN_PERCENT_FOR_30_DAYS = {"reserve_bps": 1000, "reserve_days": 30}


def reserved_seller(stripe_client):
    seller = connected_seller(stripe_client)
    seller_policy_set(seller_id=seller.pk, changes=TEN_PERCENT_FOR_30_DAYS, user=staff_with())
    return seller


def paid_with_reserve(client, stripe_client, amount: int = 2000):
    """A seller with a 10 % reserve paid for one order: 1800 after the fee, 180 kept back."""
    seller = reserved_seller(stripe_client)
    order, [row] = paid_order(stripe_client, [amount], webhook=client, sellers=[seller])
    return order, row


def transfers_to(sandbox, account: str) -> list[dict]:
    return [t for t in sandbox.state()["transfers"] if t["destination"] == account]


def after_days(days: int):
    return timezone.now() + timedelta(days=days)


def reserve_of(seller) -> int:
    return seller_balances(seller_id=seller.pk)["usd"]["reserve"]


@pytest.mark.django_db
def test_the_reserve_is_kept_back_at_payment_and_booked_to_the_sellers_reserve(
    client, sandbox, stripe_client
):
    order, row = paid_with_reserve(client, stripe_client)

    assert (row.status, row.amount, row.amount_reserved) == (TransferStatus.COMPLETED, 1800, 180)
    [at_stripe] = transfers_to(sandbox, row.seller.stripe_account_id)
    assert at_stripe["amount"] == 1620
    assert row.policy["reserve_bps"] == 1000 and row.policy["reserve_days"] == 30
    assert seller_balances(seller_id=row.seller_id) == {
        "usd": {"payable": 0, "debt": 0, "reserve": 180}
    }
    kinds = [
        line.kind for line in seller_statement_lines(seller_id=row.seller_id, start=None, end=None)
    ]
    assert EntryKind.RESERVE_KEPT in kinds
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_a_refund_inside_the_window_takes_from_the_reserve_with_no_reversal_at_stripe(
    client, sandbox, stripe_client, deliver
):
    order, row = paid_with_reserve(client, stripe_client)

    refund_at_stripe(stripe_client, order, 100)  # the seller's share: 90 of their 1800
    deliver("refund.created")

    row.refresh_from_db()
    assert (row.reserve_refund, row.reversal_target, row.amount_reversed) == (90, 0, 0)
    assert row.status == TransferStatus.COMPLETED
    assert sandbox.calls("reversals.create") == []
    assert reserve_of(row.seller) == 90
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_a_refund_beyond_the_reserve_takes_the_rest_from_the_transfer(
    client, sandbox, stripe_client, deliver
):
    order, row = paid_with_reserve(client, stripe_client)

    refund_at_stripe(stripe_client, order, 1000)  # the seller's share: 900
    deliver("refund.created")

    row.refresh_from_db()
    assert (row.reserve_refund, row.reversal_target, row.amount_reversed) == (180, 720, 720)
    [reversal] = sandbox.calls("reversals.create")
    assert reversal["outcome"] == "performed"
    assert reserve_of(row.seller) == 0
    assert ledger_check()[1] == []
    assert reserves_release_due(now=after_days(31)) == {}  # nothing left to release


@pytest.mark.django_db
def test_after_the_days_the_rest_of_the_reserve_is_sent_exactly_once(
    client, sandbox, stripe_client, deliver
):
    order, row = paid_with_reserve(client, stripe_client)
    refund_at_stripe(stripe_client, order, 100)
    deliver("refund.created")
    account = row.seller.stripe_account_id

    assert reserves_release_due(now=after_days(29)) == {}  # inside the window: kept
    assert reserves_release_due(now=after_days(31)) == {"created": 1, "sent": 1}
    assert reserves_release_due(now=after_days(31)) == {}
    assert reserves_release_due(now=after_days(40)) == {}

    release = ReserveRelease.objects.get()
    assert (release.state, release.amount) == (ReleaseState.SENT, 90)
    [_, released] = transfers_to(sandbox, account)
    assert (released["id"], released["amount"]) == (release.stripe_transfer_id, 90)
    assert released["metadata"]["reserve_release_id"] == str(release.pk)
    row.refresh_from_db()
    assert row.reserve_release_id == release.pk
    assert reserve_of(row.seller) == 0
    assert Entry.objects.filter(kind=EntryKind.RESERVE_RELEASED).count() == 1
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_one_release_carries_every_reserve_of_the_seller_due_that_day(
    client, sandbox, stripe_client
):
    seller = reserved_seller(stripe_client)
    paid_order(stripe_client, [2000], webhook=client, sellers=[seller])
    paid_order(stripe_client, [1000], webhook=client, sellers=[seller])

    assert reserves_release_due(now=after_days(31)) == {"created": 1, "sent": 1}

    release = ReserveRelease.objects.get()
    assert release.amount == 180 + 90
    assert release.transfers.count() == 2
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_a_chargeback_takes_the_reserve_first_then_the_transfer(
    client, sandbox, stripe_client, deliver
):
    order, row = paid_with_reserve(client, stripe_client)

    sandbox.open_dispute(order.stripe_charge_id)
    deliver(*DISPUTE_EVENTS)

    row.refresh_from_db()
    assert (row.reserve_dispute, row.dispute_target, row.amount_reversed) == (180, 1620, 1620)
    assert row.status == TransferStatus.REVERSED
    assert reserve_of(row.seller) == 0
    assert ledger_check()[1] == []
    assert reserves_release_due(now=after_days(31)) == {}


@pytest.mark.django_db
def test_a_won_dispute_gives_the_reserve_back_before_it_is_released(
    client, sandbox, stripe_client, deliver
):
    order, row = paid_with_reserve(client, stripe_client)
    dispute = sandbox.open_dispute(order.stripe_charge_id)
    deliver(*DISPUTE_EVENTS)

    sandbox.advance_dispute(dispute["id"], "won")
    deliver(*DISPUTE_EVENTS)

    row.refresh_from_db()
    assert (row.reserve_dispute, row.dispute_target) == (0, 0)
    assert reserve_of(row.seller) == 180
    assert ledger_check()[1] == []
    assert reserves_release_due(now=after_days(31)) == {"created": 1, "sent": 1}
    assert ReserveRelease.objects.get().amount == 180
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_after_a_500_the_release_reads_stripe_first_and_sends_under_a_new_key(
    client, sandbox, stripe_client
):
    order, row = paid_with_reserve(client, stripe_client)
    sandbox.script("transfers.create", [STRIPE_500])

    assert reserves_release_due(now=after_days(31)) == {"created": 1, "retry_scheduled": 1}
    release = ReserveRelease.objects.get()
    assert release.read_stripe_first and release.idempotency_key.endswith("-g1")
    lists_before = len(sandbox.calls("transfers.list"))

    assert reserves_release_due(now=after_days(32)) == {"sent": 1}

    assert len(sandbox.calls("transfers.list")) == lists_before + 1  # read before sending
    keys = [call["idempotency_key"] for call in sandbox.calls("transfers.create")][-2:]
    assert [key.rsplit("-", 1)[1] for key in keys] == ["g0", "g1"]
    assert [t["amount"] for t in transfers_to(sandbox, row.seller.stripe_account_id)] == [1620, 180]
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_an_answer_lost_after_stripe_made_the_release_is_replayed_not_sent_twice(
    client, sandbox, stripe_client
):
    order, row = paid_with_reserve(client, stripe_client)
    sandbox.script("transfers.create", [{"action": "drop_after_perform"}])

    assert reserves_release_due(now=after_days(31)) == {"created": 1, "retry_scheduled": 1}
    assert reserves_release_due(now=after_days(32)) == {"sent": 1}

    assert [t["amount"] for t in transfers_to(sandbox, row.seller.stripe_account_id)] == [1620, 180]
    assert ReserveRelease.objects.get().state == ReleaseState.SENT
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_a_release_whose_answer_was_lost_is_looked_for_once_stripe_may_forget_its_key(
    client, sandbox, stripe_client
):
    order, row = paid_with_reserve(client, stripe_client)
    sandbox.script("transfers.create", [{"action": "drop_after_perform"}])
    assert reserves_release_due(now=after_days(31)) == {"created": 1, "retry_scheduled": 1}
    # Two days pass before the next attempt, and Stripe forgets its keys after 24 hours.
    ReserveRelease.objects.update(key_first_sent_at=F("key_first_sent_at") - timedelta(days=2))
    sandbox.forget_idempotency_keys()

    assert reserves_release_due(now=after_days(33)) == {"adopted": 1}

    assert [t["amount"] for t in transfers_to(sandbox, row.seller.stripe_account_id)] == [1620, 180]
    assert ReserveRelease.objects.get().state == ReleaseState.SENT
    assert ledger_check()[1] == []


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_racing_make_one_release_and_one_stripe_transfer(client, sandbox, stripe_client):
    order, row = paid_with_reserve(client, stripe_client)
    start = threading.Barrier(2)
    outcomes = []
    when = after_days(31)

    def sweep():
        try:
            start.wait()
            outcomes.append(reserves_release_due(now=when))
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcome.get("sent", 0) for outcome in outcomes) == [0, 1]
    assert [t["amount"] for t in transfers_to(sandbox, row.seller.stripe_account_id)] == [1620, 180]
    assert ReserveRelease.objects.get().state == ReleaseState.SENT
    assert reserve_of(row.seller) == 0
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_the_console_shows_the_reserve_on_the_transfer_the_seller_and_the_dashboard(
    client, sandbox, stripe_client, deliver
):
    order, row = paid_with_reserve(client, stripe_client)
    refund_at_stripe(stripe_client, order, 100)
    deliver("refund.created")
    client.force_login(staff_with(is_superuser=True))

    page = client.get(reverse("admin:payouts_sellertransfer_change", args=[row.pk])).content
    line = page.decode()
    assert "sent <span" in line and "16.20 USD" in line
    assert "reserve <span" in line and "1.80 USD" in line and "refunds <span" in line
    sellers = client.get(reverse("admin:marketplace_seller_changelist")).content.decode()
    assert 'class="column-reserve_money"' in sellers
    assert '<td class="field-reserve_money"><span class="money">0.90 USD</span></td>' in sellers
    board = client.get(reverse("admin:index")).content.decode()
    assert 'data-risk="reserves_held" data-currency="usd">' in board
    held = board.split('data-risk="reserves_held" data-currency="usd">')[1]
    assert held.split("</div>")[0].count("0.90 USD") == 1

    reserves_release_due(now=after_days(31))
    board = client.get(reverse("admin:index")).content.decode()
    assert '<span class="console-muted" data-risk="reserves_held">nothing</span>' in board


@pytest.mark.django_db
def test_an_order_refunded_in_full_during_the_hold_takes_all_the_reserve_and_sends_nothing(
    client, sandbox, stripe_client, deliver
):
    seller = connected_seller(stripe_client)
    changes = {**TEN_PERCENT_FOR_30_DAYS, "hold": "7d"}
    seller_policy_set(seller_id=seller.pk, changes=changes, user=staff_with())
    order, [row] = paid_order(stripe_client, [2000], webhook=client, sellers=[seller])
    assert (row.status, row.amount_reserved) == (TransferStatus.HELD, 180)

    refund_at_stripe(stripe_client, order)
    deliver("refund.created")

    row.refresh_from_db()
    assert row.status == TransferStatus.PERMANENTLY_FAILED
    assert (row.reserve_refund, row.reserve_dispute) == (180, 0)
    assert transfers_to(sandbox, seller.stripe_account_id) == []
    assert reserve_of(seller) == 0
    assert ledger_check()[1] == []
    assert reserves_release_due(now=after_days(31)) == {}


@pytest.mark.django_db
def test_a_refund_during_the_hold_takes_the_reserve_first_and_the_transfer_sends_the_rest(
    client, sandbox, stripe_client, deliver
):
    seller = connected_seller(stripe_client)
    changes = {**TEN_PERCENT_FOR_30_DAYS, "hold": "7d"}
    seller_policy_set(seller_id=seller.pk, changes=changes, user=staff_with())
    order, [row] = paid_order(stripe_client, [2000], webhook=client, sellers=[seller])

    refund_at_stripe(stripe_client, order, 500)  # the seller's share: 450
    deliver("refund.created")

    row.refresh_from_db()
    assert (row.reserve_refund, row.reversal_target, row.to_send) == (180, 270, 1350)
    assert row.status == TransferStatus.HELD
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_a_refund_after_the_release_is_taken_back_from_the_transfer(
    client, sandbox, stripe_client, deliver
):
    order, row = paid_with_reserve(client, stripe_client)
    assert reserves_release_due(now=after_days(31)) == {"created": 1, "sent": 1}

    refund_at_stripe(stripe_client, order, 100)  # the seller's share: 90
    deliver("refund.created")

    row.refresh_from_db()
    assert (row.reserve_refund, row.reversal_target, row.amount_reversed) == (0, 90, 90)
    assert len(sandbox.calls("reversals.create")) == 1
    assert reserve_of(row.seller) == 0
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_a_release_stripe_made_despite_a_500_is_found_by_reading_stripe_and_adopted(
    client, sandbox, stripe_client
):
    order, row = paid_with_reserve(client, stripe_client)
    sandbox.script("transfers.create", [STRIPE_500])
    assert reserves_release_due(now=after_days(31)) == {"created": 1, "retry_scheduled": 1}
    release = ReserveRelease.objects.get()
    # A 5xx may hide a transfer Stripe made: here it did (made as that attempt would have).
    made = stripe_client.v1.transfers.create(
        params={
            "amount": 180,
            "currency": "usd",
            "destination": row.seller.stripe_account_id,
            "transfer_group": f"reserve-{row.seller_id}-usd-{release.release_on:%Y%m%d}",
            "metadata": {"reserve_release_id": str(release.pk), "seller_id": str(row.seller_id)},
        }
    )
    creates = len(sandbox.calls("transfers.create"))

    assert reserves_release_due(now=after_days(32)) == {"adopted": 1}

    release.refresh_from_db()
    assert (release.state, release.stripe_transfer_id) == (ReleaseState.SENT, made.id)
    assert len(sandbox.calls("transfers.create")) == creates  # read, not sent again
    assert [t["amount"] for t in transfers_to(sandbox, row.seller.stripe_account_id)] == [1620, 180]
    assert reserve_of(row.seller) == 0
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_a_full_refund_that_fails_after_the_hold_gives_the_reserve_back(
    client, sandbox, stripe_client, deliver, monkeypatch
):
    seller = connected_seller(stripe_client)
    changes = {**TEN_PERCENT_FOR_30_DAYS, "hold": "7d"}
    seller_policy_set(seller_id=seller.pk, changes=changes, user=staff_with())
    order, [row] = paid_order(stripe_client, [2000], webhook=client, sellers=[seller])
    refund = refund_at_stripe(stripe_client, order)
    deliver("refund.created")
    row.refresh_from_db()
    assert (row.status, row.reserve_refund) == (TransferStatus.PERMANENTLY_FAILED, 180)
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(days=8))  # hold over

    sandbox.fail_refund(refund["id"])
    deliver("refund.failed")

    row.refresh_from_db()
    assert row.reserve_refund == 0
    assert row.status in (TransferStatus.PENDING, TransferStatus.COMPLETED)
    assert row.to_send == 1620 or row.sent == 1620
    assert reserve_of(seller) == 180
    assert ledger_check()[1] == []


def released_after_a_refund(client, stripe_client, deliver):
    """Paid with a 180 reserve; a refund took 90 of it; the other 90 released after the days."""
    order, row = paid_with_reserve(client, stripe_client)
    refund = refund_at_stripe(stripe_client, order, 100)  # the seller's share: 90
    deliver("refund.created")
    assert reserves_release_due(now=after_days(31)) == {"created": 1, "sent": 1}
    return order, row, refund


@pytest.mark.django_db
def test_a_refund_that_fails_after_the_release_sends_what_the_reserve_covered_exactly_once(
    client, sandbox, stripe_client, deliver
):
    order, row, refund = released_after_a_refund(client, stripe_client, deliver)

    sandbox.fail_refund(refund["id"])
    deliver("refund.failed")

    row.refresh_from_db()
    assert (row.reserve_refund, row.reserve_given_back) == (0, 90)
    assert sandbox.calls("reversals.create") == []
    assert reserve_of(row.seller) == 90  # owed to the seller again, until sent
    assert ledger_check()[1] == []
    assert reserves_release_due(now=after_days(31)) == {"sent": 1}
    assert reserves_release_due(now=after_days(32)) == {}

    back = ReserveRelease.objects.get(given_back_for=row)
    assert (back.state, back.amount) == (ReleaseState.SENT, 90)
    assert back.idempotency_key == f"payouts-reserve-back-{row.pk}-90-g0"
    account = row.seller.stripe_account_id
    assert [t["amount"] for t in transfers_to(sandbox, account)] == [1620, 90, 90]
    assert transfers_to(sandbox, account)[-1]["metadata"]["reserve_release_id"] == str(back.pk)
    assert reserve_of(row.seller) == 0
    assert Entry.objects.filter(kind=EntryKind.RESERVE_RELEASED).count() == 2
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_a_refund_that_fails_after_the_release_is_made_before_that_release_is_sent_counts_once(
    client, sandbox, stripe_client, deliver
):
    order, row = paid_with_reserve(client, stripe_client)
    refund = refund_at_stripe(stripe_client, order, 100)
    deliver("refund.created")
    sandbox.script("transfers.create", [STRIPE_500])
    assert reserves_release_due(now=after_days(31)) == {"created": 1, "retry_scheduled": 1}

    sandbox.fail_refund(refund["id"])  # the release of 90 is made, not sent yet
    deliver("refund.failed")
    assert ledger_check()[1] == []

    assert reserves_release_due(now=after_days(32)) == {"sent": 2}
    amounts = sorted(t["amount"] for t in transfers_to(sandbox, row.seller.stripe_account_id))
    assert amounts == [90, 90, 1620]
    assert reserve_of(row.seller) == 0
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_a_give_back_whose_answer_was_lost_is_replayed_not_sent_twice(
    client, sandbox, stripe_client, deliver
):
    order, row, refund = released_after_a_refund(client, stripe_client, deliver)
    sandbox.fail_refund(refund["id"])
    deliver("refund.failed")
    sandbox.script("transfers.create", [{"action": "drop_after_perform"}])

    assert reserves_release_due(now=after_days(31)) == {"retry_scheduled": 1}
    assert reserves_release_due(now=after_days(32)) == {"sent": 1}

    account = row.seller.stripe_account_id
    assert [t["amount"] for t in transfers_to(sandbox, account)] == [1620, 90, 90]
    assert reserve_of(row.seller) == 0
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_a_give_back_whose_worker_died_after_stripe_made_it_is_sent_once_after_the_lease(
    client, sandbox, stripe_client, deliver
):
    order, row, refund = released_after_a_refund(client, stripe_client, deliver)
    sandbox.fail_refund(refund["id"])
    deliver("refund.failed")
    back = ReserveRelease.objects.get(given_back_for=row)
    # A worker claimed it, asked Stripe (which made it) and died before recording anything.
    ReserveRelease.objects.filter(pk=back.pk).update(next_retry_at=after_days(31))
    stripe_client.v1.transfers.create(
        params={
            "amount": 90,
            "currency": "usd",
            "destination": row.seller.stripe_account_id,
            "transfer_group": f"reserve-{row.seller_id}-usd-{back.release_on:%Y%m%d}",
            "metadata": {"reserve_release_id": str(back.pk), "seller_id": str(row.seller_id)},
        },
        options={"idempotency_key": back.idempotency_key},
    )

    assert reserves_release_due(now=timezone.now()) == {}  # its lease still runs
    assert reserves_release_due(now=after_days(32)) == {"sent": 1}

    account = row.seller.stripe_account_id
    assert [t["amount"] for t in transfers_to(sandbox, account)] == [1620, 90, 90]
    assert reserve_of(row.seller) == 0
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_a_new_refund_after_the_give_back_is_taken_from_the_transfer_not_twice(
    client, sandbox, stripe_client, deliver
):
    order, row, refund = released_after_a_refund(client, stripe_client, deliver)
    sandbox.fail_refund(refund["id"])
    deliver("refund.failed")
    assert reserves_release_due(now=after_days(31)) == {"sent": 1}

    refund_at_stripe(stripe_client, order, 100)  # the seller's share: 90 again
    deliver("refund.created")

    row.refresh_from_db()
    assert (row.reserve_refund, row.reserve_given_back) == (0, 90)
    assert (row.reversal_target, row.amount_reversed) == (90, 90)
    assert ReserveRelease.objects.filter(given_back_for=row).count() == 1
    assert reserve_of(row.seller) == 0
    assert reserves_release_due(now=after_days(32)) == {}
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_a_dispute_won_after_the_release_sends_what_the_reserve_covered(
    client, sandbox, stripe_client, deliver
):
    order, row = paid_with_reserve(client, stripe_client)
    dispute = sandbox.open_dispute(order.stripe_charge_id, amount=100)  # the share: 90
    deliver(*DISPUTE_EVENTS)
    row.refresh_from_db()
    assert (row.reserve_dispute, row.dispute_target) == (90, 0)
    assert reserves_release_due(now=after_days(31)) == {"created": 1, "sent": 1}

    sandbox.advance_dispute(dispute["id"], "won")
    deliver(*DISPUTE_EVENTS)

    row.refresh_from_db()
    assert (row.reserve_dispute, row.reserve_given_back) == (0, 90)
    assert reserves_release_due(now=after_days(32)) == {"sent": 1}
    account = row.seller.stripe_account_id
    assert [t["amount"] for t in transfers_to(sandbox, account)] == [1620, 90, 90]
    assert reserve_of(row.seller) == 0
    assert ledger_check()[1] == []


def released_then_refunded_in_full(client, sandbox, stripe_client, deliver):
    """Paid with a 180 reserve, all of it released after the days; then refunded in full."""
    order, row = paid_with_reserve(client, stripe_client)
    assert reserves_release_due(now=after_days(31)) == {"created": 1, "sent": 1}
    refund = refund_at_stripe(stripe_client, order)  # the seller's share: all 1800
    deliver("refund.created")
    row.refresh_from_db()
    return order, row, refund


@pytest.mark.django_db
def test_a_full_refund_after_the_release_books_what_the_release_paid_as_the_sellers_debt(
    client, sandbox, stripe_client, deliver
):
    order, row, _ = released_then_refunded_in_full(client, sandbox, stripe_client, deliver)

    # The transfer part (1620) is taken back at Stripe; the 180 the release sent cannot be
    # reversed from this transfer, so the seller owes it.
    assert seller_balances(seller_id=row.seller_id)["usd"]["debt"] == 180
    assert (row.reversal_target, row.amount_reversed) == (1620, 1620)
    assert (row.reserve_owed_refund, row.reserve_owed_dispute) == (180, 0)
    assert reserve_of(row.seller) == 0
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_that_refund_failing_cancels_the_debt_of_the_released_reserve_and_sends_nothing_more(
    client, sandbox, stripe_client, deliver
):
    order, row, refund = released_then_refunded_in_full(client, sandbox, stripe_client, deliver)

    sandbox.fail_refund(refund["id"])
    deliver("refund.failed")

    row.refresh_from_db()
    assert (row.reserve_owed_refund, row.reserve_owed_given_back) == (0, 0)
    assert seller_balances(seller_id=row.seller_id)["usd"]["debt"] == 0
    assert not ReserveRelease.objects.filter(given_back_for=row).exists()
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_a_debt_of_the_released_reserve_netted_then_no_longer_owed_is_sent_back_by_release(
    client, sandbox, stripe_client, deliver
):
    order, row, refund = released_then_refunded_in_full(client, sandbox, stripe_client, deliver)
    paid_order(stripe_client, [2000], webhook=client, sellers=[row.seller])  # nets the 180
    assert seller_balances(seller_id=row.seller_id)["usd"]["debt"] == 0

    sandbox.fail_refund(refund["id"])
    deliver("refund.failed")

    row.refresh_from_db()
    assert (row.reserve_owed_refund, row.reserve_owed_given_back) == (0, 180)
    assert seller_balances(seller_id=row.seller_id)["usd"]["debt"] == 0
    # Owed to the seller again until sent, beside the new order's own reserve of 180.
    assert reserve_of(row.seller) == 180 + 180
    assert ledger_check()[1] == []
    assert reserves_release_due(now=after_days(1)) == {"sent": 1}
    back = ReserveRelease.objects.get(given_back_for=row)
    assert (back.state, back.amount) == (ReleaseState.SENT, 180)
    assert back.idempotency_key == f"payouts-reserve-owed-back-{row.pk}-180-g0"
    assert reserve_of(row.seller) == 180
    assert ledger_check()[1] == []


def cancelled_before_it_was_sent(stripe_client, deliver):
    """A seller with a 10 % reserve whose transfer was never sent; the order refunded in full."""
    seller = reserved_seller(stripe_client)
    order, [row] = paid_order(stripe_client, [2000], sellers=[seller], unpaid=(0,))
    assert (row.status, row.amount_reserved) == (TransferStatus.PENDING, 180)
    refund_at_stripe(stripe_client, order)
    deliver("refund.created")
    transfers_send_due(order_id=order.pk)
    row.refresh_from_db()
    assert (row.status, row.end_reason) == (TransferStatus.PERMANENTLY_FAILED, "order_refunded")
    return order, row


@pytest.mark.django_db
def test_a_transfer_cancelled_before_it_was_sent_gives_its_reserve_to_the_refund(
    client, sandbox, stripe_client, deliver
):
    order, row = cancelled_before_it_was_sent(stripe_client, deliver)

    assert (row.reserve_refund, row.reserve_dispute) == (180, 0)
    assert reserve_of(row.seller) == 0
    assert ledger_check()[1] == []
    assert reserves_release_due(now=after_days(31)) == {}
    assert transfers_to(sandbox, row.seller.stripe_account_id) == []


@pytest.mark.django_db
def test_the_ledger_check_reports_a_reserve_kept_for_a_transfer_cancelled_with_its_order(
    client, sandbox, stripe_client, deliver
):
    order, row = cancelled_before_it_was_sent(stripe_client, deliver)
    # As the rows stood before cancelling took the reserve: 180 kept that nothing releases.
    SellerTransfer.objects.filter(pk=row.pk).update(reserve_refund=0)

    stranded = [f for f in ledger_check()[1] if f.kind == BreakKind.TRANSFER_STRANDED]

    assert [f.transfer_id for f in stranded] == [row.pk]
    assert "reserve keeps 180" in stranded[0].detail


@pytest.mark.django_db
def test_a_reinstated_transfer_cancelled_before_it_was_sent_owes_its_reserve_again(
    client, sandbox, stripe_client, deliver
):
    seller = reserved_seller(stripe_client)
    order, [row] = paid_order(stripe_client, [2000], sellers=[seller], unpaid=(0,))
    refund = refund_at_stripe(stripe_client, order)
    deliver("refund.created")
    transfers_send_due(order_id=order.pk)

    sandbox.fail_refund(refund["id"])
    deliver("refund.failed")
    transfers_send_due(order_id=order.pk)

    row.refresh_from_db()
    assert row.status == TransferStatus.COMPLETED
    assert (row.reserve_refund, row.reserve_dispute) == (0, 0)
    assert reserve_of(seller) == 180
    assert ledger_check()[1] == []
    assert reserves_release_due(now=after_days(31)) == {"created": 1, "sent": 1}
    assert reserve_of(seller) == 0


@pytest.mark.django_db
def test_a_refund_in_full_failing_during_the_hold_takes_the_reserve_as_the_share_left_asks(
    client, sandbox, stripe_client, deliver
):
    seller = connected_seller(stripe_client)
    changes = {**TEN_PERCENT_FOR_30_DAYS, "hold": "7d"}
    seller_policy_set(seller_id=seller.pk, changes=changes, user=staff_with())
    order, [row] = paid_order(stripe_client, [2000], webhook=client, sellers=[seller])
    refund_at_stripe(stripe_client, order, 500)  # the seller's share: 450, 180 of it reserved
    deliver("refund.created")
    rest = refund_at_stripe(stripe_client, order)  # refunded in full: cancelled during the hold
    deliver("refund.created")
    row.refresh_from_db()
    assert (row.status, row.reserve_refund) == (TransferStatus.PERMANENTLY_FAILED, 180)

    sandbox.fail_refund(rest["id"])
    deliver("refund.failed")

    row.refresh_from_db()
    assert row.status == TransferStatus.HELD
    assert (row.reserve_refund, row.reversal_target, row.to_send) == (180, 270, 1350)
    assert reserve_of(seller) == 0
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_a_release_whose_worker_died_behind_stripe_is_looked_for_a_day_later_not_sent_again(
    client, sandbox, stripe_client
):
    order, row = paid_with_reserve(client, stripe_client)
    gateway = KillingGateway(get_gateway())
    gateway.armed.add("create_transfer")
    with pytest.raises(WorkerKilled):  # Stripe made the transfer; nothing was recorded
        reserves_release_due(now=after_days(31), gateway=gateway)
    release = ReserveRelease.objects.get()
    assert (release.state, release.retry_count) == (ReleaseState.PENDING, 0)
    # No sweep runs for two days, and Stripe forgets its keys after 24 hours.
    ReserveRelease.objects.update(
        key_first_sent_at=F("key_first_sent_at") - timedelta(days=2),
        created_at=F("created_at") - timedelta(days=2),
        next_retry_at=timezone.now(),
    )
    sandbox.forget_idempotency_keys()

    assert reserves_release_due(now=after_days(33)) == {"adopted": 1}

    assert [t["amount"] for t in transfers_to(sandbox, row.seller.stripe_account_id)] == [1620, 180]
    assert ReserveRelease.objects.get().state == ReleaseState.SENT
    assert ledger_check()[1] == []
