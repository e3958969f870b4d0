"""Regressions from the audit of money moved wrongly: each test failed on the code before its
fix, and on that history ``manage.py ledger_check`` exited 1 naming the seller and the amount.
Each ends with the check exiting 0: Stripe, the transfer rows and the book agree.

1. a full refund during the hold that fails leaves the seller unpaid;
2. a give-back whose answer was lost is forgotten when a new refund raises the shares (also
   when the worker was killed behind it, and the same for a reversal when the shares fall);
3. a written-off debt is paid out again when the shares fall;
4. a refund during the hold of a mostly netted transfer asks Stripe for a negative transfer;
5. Stripe reversing a transfer whose reversal it had refused leaves the seller's debt in place;
11. the shares falling while a refused reversal is in flight make a negative debt.
"""

from dataclasses import replace
from datetime import timedelta

import pytest
from django.db import transaction

from ledger.selectors import seller_balances
from ledger.services import debt_write_off, post_refund
from marketplace.models import Refund
from marketplace.services import refund_record
from payouts import tasks
from payouts.models import SellerTransfer
from payouts.services.holds import order_release
from payouts.services.reversals import reversals_process_due
from payouts.stripe_api.gateway import get_gateway
from payouts.transfer.actors import Actor
from payouts.transfer.transitions import HeldReason, TransferStatus
from tests.builders import (
    DISPUTE_EVENTS,
    connected_seller,
    ledger_check_command,
    make_due,
    make_event,
    paid_order,
    post_event,
    refund_at_stripe,
    returned_at_stripe,
    transfers_at_stripe_for,
)
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

REFUND_FAILURE_EVENTS = ("refund.failed", "refund.updated", "charge.refund.updated")


@pytest.fixture
def seven_day_hold(settings):
    settings.PAYOUTS = replace(settings.PAYOUTS, transfer_hold=timedelta(days=7))


def assert_ledger_check_clean(sandbox) -> None:
    assert sandbox.ledger()["consistent"]
    code, printed = ledger_check_command()
    assert code == 0, printed


def reversed_at_stripe(sandbox, row: SellerTransfer) -> int:
    return next(t for t in sandbox.ledger()["transfers"] if t["id"] == row.stripe_transfer_id)[
        "amount_reversed"
    ]


class BeforeTheReversalLands:
    """The real gateway, but something happens (and the service hears of it) while the
    reversal call is on its way to Stripe."""

    def __init__(self, gateway, meanwhile):
        self.gateway, self.meanwhile = gateway, meanwhile

    def __getattr__(self, name):
        return getattr(self.gateway, name)

    def reverse_transfer(self, *args, **kwargs):
        self.meanwhile()
        return self.gateway.reverse_transfer(*args, **kwargs)


class WorkerDied(BaseException):  # noqa: N818 - it stands for the process dying, not an error
    """The worker process died (SIGKILL): nothing in the service may catch it."""


class DiesAfter:
    """The real gateway, but the worker dies right after Stripe did ``operation`` (its
    answer came back), before the worker could record it."""

    def __init__(self, gateway, operation: str):
        self.gateway, self.operation = gateway, operation

    def __getattr__(self, name):
        attribute = getattr(self.gateway, name)
        if name != self.operation:
            return attribute

        def call(*args, **kwargs):
            attribute(*args, **kwargs)
            raise WorkerDied(f"killed after Stripe answered {name}")

        return call


def deliver_without_wake_up(client, sandbox, event_type: str) -> None:
    """Deliver the events as Stripe does, the worker not woken: its next tick takes the row."""
    for event in [e for e in sandbox.events() if e["type"] == event_type]:
        assert post_event(client, event).status_code == 200


# --- 1 -----------------------------------------------------------------------------------------


def test_a_full_refund_during_the_hold_that_fails_pays_the_seller_at_release(
    client, sandbox, stripe_client, deliver, seven_day_hold, django_capture_on_commit_callbacks
):
    order, [row] = paid_order(stripe_client, [4000], webhook=client)
    refund = refund_at_stripe(stripe_client, order)
    deliver("refund.created")
    row.refresh_from_db()
    assert (row.status, row.end_reason) == (TransferStatus.PERMANENTLY_FAILED, "order_refunded")

    sandbox.fail_refund(refund["id"])
    deliver(*REFUND_FAILURE_EVENTS)

    row.refresh_from_db()
    code, printed = ledger_check_command()
    assert (row.status, row.held_reason, code) == (
        TransferStatus.HELD,
        HeldReason.AWAITING_RELEASE,
        0,
    ), printed
    with django_capture_on_commit_callbacks(execute=True):
        order_release(order_id=order.pk, actor=Actor.staff(UserFactory(is_staff=True)))
    row.refresh_from_db()
    assert (row.status, row.amount_withheld) == (TransferStatus.COMPLETED, 0)
    assert [t["amount"] for t in transfers_at_stripe_for(sandbox, row)] == [3600]
    assert seller_balances(seller_id=row.seller_id) == {"usd": {"payable": 0, "debt": 0}}
    assert_ledger_check_clean(sandbox)


def test_the_reconciliation_pays_a_seller_a_failed_full_refund_left_unpaid_before_the_fix(
    client, sandbox, stripe_client, deliver, seven_day_hold, django_capture_on_commit_callbacks
):
    order, [row] = paid_order(stripe_client, [4000], webhook=client)
    refund = refund_at_stripe(stripe_client, order)
    deliver("refund.created")
    failed = sandbox.fail_refund(refund["id"])
    # What the failure did before the fix: the refund failed and was booked, the order is
    # paid again, the cancelled transfer left as it was.
    with transaction.atomic():
        refund_record(
            order=order,
            stripe_refund_id=failed["id"],
            amount=failed["amount"],
            currency=failed["currency"],
            status=Refund.Status.FAILED,
        )
        post_refund(
            order_id=order.pk, refund_id=failed["id"], currency="usd", amount=4000, failed=True
        )
    assert ledger_check_command()[0] == 1

    tasks.reconciliation_run_weekly()

    row.refresh_from_db()
    assert (row.status, row.held_reason, row.end_reason) == (
        TransferStatus.HELD,
        "awaiting_release",
        "",
    )
    assert_ledger_check_clean(sandbox)


# --- 2 -----------------------------------------------------------------------------------------


def test_a_give_back_whose_answer_was_lost_is_found_before_a_new_refund_is_reversed(
    client, sandbox, stripe_client, deliver
):
    order, [row] = paid_order(stripe_client, [2000], webhook=client)
    refund = refund_at_stripe(stripe_client, order, 1000)
    deliver("refund.created")  # 900 of the 1800 reversed
    sandbox.fail_refund(refund["id"])
    # Stripe gives the 900 back, then the connection drops before its answer.
    sandbox.script("transfers.create", [{"action": "drop_after_perform"}])
    deliver("refund.failed")
    row.refresh_from_db()
    assert (row.status, row.amount_returned) == (TransferStatus.REVERSAL_PENDING, 0)

    refund_at_stripe(stripe_client, order, 1000)  # a new refund: the share is 900 again
    deliver("refund.created")
    make_due(row)
    reversals_process_due()

    row.refresh_from_db()
    assert (row.status, row.reversal_target) == (TransferStatus.PARTIALLY_REVERSED, 900)
    assert (row.amount_reversed, row.amount_returned) == (1800, 900)
    assert returned_at_stripe(sandbox, row) == [900]
    assert reversed_at_stripe(sandbox, row) == 1800  # the seller keeps 1800 - 1800 + 900
    assert_ledger_check_clean(sandbox)


def test_a_give_back_made_by_a_worker_killed_before_recording_it_is_found_after_a_new_refund(
    client, sandbox, stripe_client, deliver
):
    order, [row] = paid_order(stripe_client, [2000], webhook=client)
    refund = refund_at_stripe(stripe_client, order, 1000)
    deliver("refund.created")  # 900 of the 1800 reversed
    sandbox.fail_refund(refund["id"])
    deliver_without_wake_up(client, sandbox, "refund.failed")
    # Stripe gives the 900 back; the worker dies before it records anything.
    with pytest.raises(WorkerDied):
        reversals_process_due(gateway=DiesAfter(get_gateway(), "create_transfer"))
    row.refresh_from_db()
    assert (row.status, row.amount_returned) == (TransferStatus.REVERSAL_PENDING, 0)
    assert returned_at_stripe(sandbox, row) == [900]

    refund_at_stripe(stripe_client, order, 1000)  # a new refund: the share is 900 again
    deliver("refund.created")
    make_due(row)  # the dead worker's lease ran out
    reversals_process_due()

    row.refresh_from_db()
    assert (row.status, row.reversal_target) == (TransferStatus.PARTIALLY_REVERSED, 900)
    assert (row.amount_reversed, row.amount_returned) == (1800, 900)
    assert returned_at_stripe(sandbox, row) == [900]
    assert reversed_at_stripe(sandbox, row) == 1800  # the seller keeps 1800 - 1800 + 900
    assert_ledger_check_clean(sandbox)


def test_a_reversal_made_by_a_worker_killed_before_recording_it_is_given_back_when_refund_fails(
    client, sandbox, stripe_client
):
    order, [row] = paid_order(stripe_client, [2000], webhook=client)
    refund = refund_at_stripe(stripe_client, order, 1000)
    deliver_without_wake_up(client, sandbox, "refund.created")
    # Stripe reverses the 900; the worker dies before it records anything.
    with pytest.raises(WorkerDied):
        reversals_process_due(gateway=DiesAfter(get_gateway(), "reverse_transfer"))
    row.refresh_from_db()
    assert (row.status, row.amount_reversed) == (TransferStatus.REVERSAL_PENDING, 0)
    assert reversed_at_stripe(sandbox, row) == 900

    sandbox.fail_refund(refund["id"])  # the share falls to nothing
    deliver_without_wake_up(client, sandbox, "refund.failed")
    make_due(row)  # the dead worker's lease ran out
    reversals_process_due()

    row.refresh_from_db()
    assert (row.status, row.reversal_target) == (TransferStatus.COMPLETED, 0)
    assert (row.amount_reversed, row.amount_returned) == (900, 900)
    assert returned_at_stripe(sandbox, row) == [900]  # the seller holds their 1800 again
    assert_ledger_check_clean(sandbox)


def test_ledger_check_names_the_seller_of_a_give_back_at_stripe_the_book_never_saw(
    client, sandbox, stripe_client
):
    order, [row] = paid_order(stripe_client, [2000], webhook=client)
    # Money sent back to the seller at Stripe by an attempt whose answer never came back.
    stripe_client.v1.transfers.create(
        params={
            "amount": 900,
            "currency": "usd",
            "destination": row.seller.stripe_account_id,
            "transfer_group": f"order_{order.pk}",
            "metadata": {"seller_transfer_id": str(row.pk), "given_back_after": "0"},
        }
    )

    code, printed = ledger_check_command()

    assert code == 1
    where = f"transfer {row.pk} (seller {row.seller_id}, usd)"
    assert f"transfer_stripe {where}: given back 0 here, 900 at Stripe" in printed
    assert "(-900 at Stripe)" in printed  # the platform's cash: 900 left it


# --- 3 -----------------------------------------------------------------------------------------


def test_a_written_off_debt_is_not_paid_out_again_when_the_refund_fails(
    client, sandbox, stripe_client, deliver
):
    order, [row] = paid_order(stripe_client, [2000], webhook=client)
    sandbox.simulate_payout(row.seller.stripe_account_id, 1800)  # at the seller's bank
    refund = refund_at_stripe(stripe_client, order)
    deliver("refund.created")
    row.refresh_from_db()
    assert (row.status, row.amount_owed) == (TransferStatus.REVERSAL_REFUSED, 1800)
    staff = UserFactory(is_staff=True)
    debt_write_off(
        seller_id=row.seller_id, currency="usd", amount=1800, reason="unrecoverable", user=staff
    )

    sandbox.fail_refund(refund["id"])
    deliver(*REFUND_FAILURE_EVENTS)

    row.refresh_from_db()
    assert (row.status, row.reversal_target, row.amount_owed) == (TransferStatus.COMPLETED, 0, 0)
    assert (row.amount_returned, returned_at_stripe(sandbox, row)) == (0, [])
    assert seller_balances(seller_id=row.seller_id) == {"usd": {"payable": 0, "debt": 0}}
    assert_ledger_check_clean(sandbox)


# --- 4 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("taken", ["refund", "chargeback"])
def test_a_share_taken_during_the_hold_of_a_mostly_netted_transfer_leaves_the_rest_as_debt(
    client,
    sandbox,
    stripe_client,
    deliver,
    settings,
    django_capture_on_commit_callbacks,
    taken,
):
    seller = connected_seller(stripe_client)
    earlier, [first] = paid_order(stripe_client, [1000], webhook=client, sellers=[seller])
    sandbox.simulate_payout(seller.stripe_account_id, 900)
    refund_at_stripe(stripe_client, earlier, 889)  # 800 of the 900 to take back: refused
    deliver("refund.created")
    first.refresh_from_db()
    assert (first.status, first.amount_owed) == (TransferStatus.REVERSAL_REFUSED, 800)

    settings.PAYOUTS = replace(settings.PAYOUTS, transfer_hold=timedelta(days=7))
    order, [row] = paid_order(stripe_client, [1000], webhook=client, sellers=[seller])
    assert (row.status, row.amount, row.amount_netted) == (TransferStatus.HELD, 900, 800)
    # Half the order back to the buyer: 450 kept back, of the 100 left to send.
    if taken == "refund":
        refund_at_stripe(stripe_client, order, 500)
        deliver("refund.created")
    else:
        sandbox.open_dispute(order.stripe_charge_id, amount=500)
        deliver(*DISPUTE_EVENTS)
    row.refresh_from_db()
    assert (row.status, row.reversal_target + row.dispute_target) == (TransferStatus.HELD, 450)
    assert ledger_check_command()[0] == 0  # held, it will be paid with the rest as debt
    with django_capture_on_commit_callbacks(execute=True):
        order_release(order_id=order.pk, actor=Actor.staff(UserFactory(is_staff=True)))

    row.refresh_from_db()
    assert (row.status, row.amount_withheld, row.amount_owed) == (
        TransferStatus.COMPLETED,
        100,
        350,
    )
    assert transfers_at_stripe_for(sandbox, row) == []
    assert seller_balances(seller_id=seller.pk) == {"usd": {"payable": 0, "debt": 350}}
    assert_ledger_check_clean(sandbox)


# --- 5 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("heard", ["transfer.reversed", "reconcile --repair"])
def test_stripe_reversing_a_transfer_whose_reversal_it_refused_cancels_the_debt(
    client, sandbox, stripe_client, deliver, heard
):
    order, [row] = paid_order(stripe_client, [2000], webhook=client)
    account = row.seller.stripe_account_id
    sandbox.simulate_payout(account, 1800)
    refund_at_stripe(stripe_client, order)
    deliver("refund.created")
    row.refresh_from_db()
    assert (row.status, row.amount_owed) == (TransferStatus.REVERSAL_REFUSED, 1800)
    # The seller's balance is funded again, and someone reverses the whole transfer in the
    # Dashboard.
    stripe_client.v1.transfers.create(
        params={"amount": 1800, "currency": "usd", "destination": account}
    )
    stripe_client.v1.transfers.reversals.create(row.stripe_transfer_id)

    if heard == "transfer.reversed":
        deliver("transfer.reversed")
    else:
        tasks.reconciliation_run_daily()
    make_due(row)
    reversals_process_due()

    row.refresh_from_db()
    assert (row.status, row.amount_reversed, row.amount_owed) == (TransferStatus.REVERSED, 1800, 0)
    assert returned_at_stripe(sandbox, row) == []
    assert seller_balances(seller_id=row.seller_id) == {"usd": {"payable": 0, "debt": 0}}
    assert_ledger_check_clean(sandbox)


# --- 11 ----------------------------------------------------------------------------------------


def test_shares_falling_while_a_refused_reversal_is_in_flight_give_back_instead_of_a_debt(
    client, sandbox, stripe_client, deliver
):
    order, [row] = paid_order(stripe_client, [2000], webhook=client)
    first = refund_at_stripe(stripe_client, order, 1500)
    deliver("refund.created")  # 1350 of the 1800 reversed
    sandbox.simulate_payout(row.seller.stripe_account_id, 450)  # the rest is at their bank
    second = refund_at_stripe(stripe_client, order, 500)
    post_event(client, make_event("refund.created", second))  # its drain never ran

    def first_refund_fails():
        failed = sandbox.fail_refund(first["id"])
        post_event(client, make_event("refund.failed", failed))

    # Stripe refuses the 450 for the seller's balance, while the share fell to 450.
    reversals_process_due(gateway=BeforeTheReversalLands(get_gateway(), first_refund_fails))
    make_due(row)
    reversals_process_due()

    row.refresh_from_db()
    assert (row.status, row.reversal_target, row.amount_owed) == (
        TransferStatus.PARTIALLY_REVERSED,
        450,
        0,
    )
    assert (row.amount_reversed, row.amount_returned) == (1350, 900)
    assert returned_at_stripe(sandbox, row) == [900]
    assert_ledger_check_clean(sandbox)
