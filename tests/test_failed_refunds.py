"""A refund that succeeds and later fails (the buyer's card was closed): the buyer never got the
money, so each seller gets back exactly what their share's reversal took, once, whatever order
and however often Stripe's events arrive. Where the seller could not cover the reversal (a
debt), the debt is cancelled instead of sending money."""

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from ledger.models import Entry, EntryKind
from ledger.selectors import seller_balances
from marketplace.models import Order, Refund
from payouts import tasks
from payouts.models import SellerTransfer
from payouts.services.ledger_check import ledger_check
from payouts.services.reversals import reversals_process_due
from payouts.transfer.idempotency import KEY_MEMORY
from payouts.transfer.transitions import TransferStatus
from tests.builders import (
    age_transfer,
    make_event,
    paid_order,
    post_event,
    post_event_over_http,
    refund_at_stripe,
    returned_at_stripe,
)

pytestmark = pytest.mark.django_db

REFUND_EVENTS = ("refund.created", "refund.updated", "charge.refund.updated", "refund.failed")


def rows(order: Order) -> list[SellerTransfer]:
    return list(SellerTransfer.objects.filter(order=order).order_by("pk"))


def assert_books_agree_with_stripe(sandbox) -> None:
    assert sandbox.ledger()["consistent"]
    assert ledger_check()[1] == []


def test_each_seller_is_paid_back_exactly_once_with_the_failure_duplicated_and_out_of_order(
    client, sandbox, stripe_client, deliver
):
    order, _ = paid_order(stripe_client, [1000, 2000, 3000], webhook=client)
    refund = refund_at_stripe(stripe_client, order, 3000)  # half: 450, 900, 1350 taken back
    deliver("refund.created")
    assert [(r.status, r.amount_reversed) for r in rows(order)] == [
        (TransferStatus.PARTIALLY_REVERSED, 450),
        (TransferStatus.PARTIALLY_REVERSED, 900),
        (TransferStatus.PARTIALLY_REVERSED, 1350),
    ]

    sandbox.fail_refund(refund["id"], "expired_or_canceled_card")
    events = [e for e in sandbox.events() if e["type"] in REFUND_EVENTS] * 3
    random.Random(7).shuffle(events)  # every refund event, thrice, in any order
    deliver(events=events)
    tasks.reversals_process_due()  # and the sweep passes by too

    assert Refund.objects.get(stripe_refund_id=refund["id"]).status == Refund.Status.FAILED
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert [(r.status, r.reversal_target, r.amount_returned) for r in rows(order)] == [
        (TransferStatus.COMPLETED, 0, 450),
        (TransferStatus.COMPLETED, 0, 900),
        (TransferStatus.COMPLETED, 0, 1350),
    ]
    assert [returned_at_stripe(sandbox, r) for r in rows(order)] == [[450], [900], [1350]]
    assert Entry.objects.filter(kind=EntryKind.REFUND_FAILED).count() == 1
    for row in rows(order):
        assert seller_balances(seller_id=row.seller_id) == {"usd": {"payable": 0, "debt": 0}}
    assert_books_agree_with_stripe(sandbox)


def test_a_seller_who_could_not_cover_the_reversal_has_the_debt_cancelled_not_money_sent(
    client, sandbox, stripe_client, deliver
):
    order, [row] = paid_order(stripe_client, [2000], webhook=client)
    account = row.seller.stripe_account_id
    sandbox.simulate_payout(account, 1800)  # the seller's balance is at their bank already
    refund = refund_at_stripe(stripe_client, order)
    deliver("refund.created")
    row.refresh_from_db()
    assert (row.status, row.amount_owed) == (TransferStatus.REVERSAL_REFUSED, 1800)

    sandbox.fail_refund(refund["id"])
    deliver("refund.failed", "refund.updated", "charge.refund.updated")
    deliver(events=[e for e in sandbox.events() if e["type"] == "refund.failed"])  # again

    row.refresh_from_db()
    assert (row.status, row.reversal_target, row.amount_returned) == (
        TransferStatus.COMPLETED,
        0,
        0,
    )
    assert returned_at_stripe(sandbox, row) == []  # nothing sent: the debt was the reversal
    assert seller_balances(seller_id=row.seller_id) == {"usd": {"payable": 0, "debt": 0}}
    assert_books_agree_with_stripe(sandbox)


def test_a_refund_that_fails_before_any_reversal_only_cancels_the_pending_share(
    client, sandbox, stripe_client
):
    order, _ = paid_order(stripe_client, [1000, 2000], webhook=client)
    refund = refund_at_stripe(stripe_client, order)
    post_event(client, make_event("refund.created", refund))  # its drain never ran
    assert {r.status for r in rows(order)} == {TransferStatus.REVERSAL_PENDING}

    sandbox.fail_refund(refund["id"])
    [failed] = [e for e in sandbox.events() if e["type"] == "refund.failed"]
    post_event(client, failed)
    tasks.reversals_process_due()

    assert [(r.status, r.reversal_target, r.amount_reversed) for r in rows(order)] == [
        (TransferStatus.COMPLETED, 0, 0),
        (TransferStatus.COMPLETED, 0, 0),
    ]
    assert sandbox.calls("reversals.create") == []
    assert len(sandbox.state()["transfers"]) == 2  # nothing given back: nothing was taken
    assert_books_agree_with_stripe(sandbox)


def test_a_failed_refund_on_a_eur_order_gives_back_the_usd_its_reversals_took(
    client, sandbox, stripe_client, deliver
):
    # €20.00 + €40.00 at 1.0873 settle as 6524¢ (65.238 → 6524), split 2175 / 4349 (2174.67,
    # 4349.33), less 10%: 1957 and 3914. €30.00 back at 1.1 is $33.00: 3300 / 6524 of each
    # transfer, 989.9 and 1979.8 → 990 and 1980 (2969.7 → 2970 in all).
    sandbox.set_settlement("usd", {"eur": 1.0873})
    order, _ = paid_order(stripe_client, [2000, 4000], webhook=client, currency="eur")
    sandbox.set_settlement(rates={"eur": 1.1})
    refund = refund_at_stripe(stripe_client, order, 3000)
    deliver("refund.created")
    assert [(r.amount, r.amount_reversed) for r in rows(order)] == [(1957, 990), (3914, 1980)]

    sandbox.fail_refund(refund["id"])
    deliver("refund.failed", "refund.updated")

    assert [(r.currency, r.amount_returned) for r in rows(order)] == [("usd", 990), ("usd", 1980)]
    failed = Entry.objects.get(kind=EntryKind.REFUND_FAILED)
    assert {(line.currency, abs(line.amount)) for line in failed.lines.all()} == {("usd", 3300)}
    assert_books_agree_with_stripe(sandbox)


@pytest.mark.parametrize("key_forgotten", [False, True])
def test_a_give_back_whose_answer_was_lost_is_never_sent_twice(
    client, sandbox, stripe_client, deliver, key_forgotten
):
    order, [row] = paid_order(stripe_client, [2000], webhook=client)
    refund = refund_at_stripe(stripe_client, order, 1000)
    deliver("refund.created")
    sandbox.fail_refund(refund["id"])
    # Stripe makes the give-back transfer, then the connection drops before its answer.
    sandbox.script("transfers.create", [{"action": "drop_after_perform"}])

    deliver("refund.failed")
    row.refresh_from_db()
    assert row.status == TransferStatus.REVERSAL_PENDING and row.amount_returned == 0
    if key_forgotten:
        # A day later: Stripe no longer knows the key, so the retry must look before sending.
        sandbox.forget_idempotency_keys()
        age_transfer(row, KEY_MEMORY + timedelta(minutes=1))
    SellerTransfer.objects.filter(pk=row.pk).update(next_retry_at=timezone.now())
    tasks.reversals_process_due()

    row.refresh_from_db()
    assert (row.status, row.amount_returned) == (TransferStatus.COMPLETED, 900)
    assert returned_at_stripe(sandbox, row) == [900]
    assert_books_agree_with_stripe(sandbox)


@pytest.mark.django_db(transaction=True)  # the live server's threads have their own connections
@pytest.mark.slow
def test_failure_events_at_once_with_workers_running_give_each_seller_back_once(
    live_server, sandbox, stripe_client
):
    order, _ = paid_order(stripe_client, [1000, 2000, 3000])
    refund = refund_at_stripe(stripe_client, order)
    refund_events = [e for e in sandbox.events() if e["type"] == "refund.created"]
    assert [post_event_over_http(live_server.url, e) for e in refund_events] == [200]
    drain_until_settled()
    sandbox.fail_refund(refund["id"])
    failures = [e for e in sandbox.events() if e["type"] in REFUND_EVENTS[1:]] * 2
    start = threading.Barrier(len(failures) + 2)

    def deliver(event) -> int:
        start.wait()
        return post_event_over_http(live_server.url, event)

    def work() -> None:
        start.wait()
        try:
            for _ in range(5):
                reversals_process_due()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(len(failures) + 2) as pool:
        workers = [pool.submit(work), pool.submit(work)]
        statuses = list(pool.map(deliver, failures))
        for worker in workers:
            worker.result()
    drain_until_settled()

    assert statuses == [200] * len(failures)
    assert [(r.status, r.amount_returned) for r in rows(order)] == [
        (TransferStatus.COMPLETED, 900),
        (TransferStatus.COMPLETED, 1800),
        (TransferStatus.COMPLETED, 2700),
    ]
    assert [returned_at_stripe(sandbox, r) for r in rows(order)] == [[900], [1800], [2700]]
    assert Entry.objects.filter(kind=EntryKind.REFUND_FAILED).count() == 1
    assert_books_agree_with_stripe(sandbox)


def drain_until_settled() -> None:
    """Run the reversal worker, with every row due now, until none is left to do."""
    for _ in range(10):
        SellerTransfer.objects.filter(status=TransferStatus.REVERSAL_PENDING).update(
            next_retry_at=timezone.now()
        )
        reversals_process_due()
        if not SellerTransfer.objects.filter(status=TransferStatus.REVERSAL_PENDING).exists():
            return
    raise AssertionError("reversal rows still pending")
