"""A reversal of ours that Stripe made while the shares fell: its answer lost before the retry,
or still on its way when the refund failed. Either way the reversal is ours, so what it took
beyond the shares is given back, once, and Stripe, the row and the book agree."""

import pytest

from payouts.models import SellerTransfer
from payouts.services.ledger_check import ledger_check
from payouts.services.reconciliation import reconciliation_run
from payouts.services.reversals import reversals_process_due
from payouts.stripe_api.gateway import get_gateway
from payouts.transfer.transitions import TransferStatus
from tests.builders import (
    DISPUTE_EVENTS,
    make_due,
    make_event,
    paid_order,
    post_event,
    refund_at_stripe,
    returned_at_stripe,
)

pytestmark = pytest.mark.django_db

REFUND_EVENTS = ("refund.created", "refund.updated", "charge.refund.updated", "refund.failed")


def reversed_at_stripe(sandbox, row: SellerTransfer) -> int:
    return next(t for t in sandbox.ledger()["transfers"] if t["id"] == row.stripe_transfer_id)[
        "amount_reversed"
    ]


def assert_seller_has_their_share(sandbox, row: SellerTransfer) -> None:
    """The seller keeps what they were sent less their shares; Stripe, the row and the book
    agree on it."""
    row.refresh_from_db()
    shares = row.reversal_target + row.dispute_target
    assert row.amount_reversed - row.amount_returned == shares
    assert reversed_at_stripe(sandbox, row) == row.amount_reversed
    assert sum(returned_at_stripe(sandbox, row)) == row.amount_returned
    assert sandbox.ledger()["consistent"]
    assert ledger_check()[1] == []


class RefundFailsDuringTheCall:
    """The real gateway, but the refund fails (and the service hears of it) while the reversal
    call is on its way to Stripe."""

    def __init__(self, gateway, before_reversal):
        self.gateway, self.before_reversal = gateway, before_reversal

    def __getattr__(self, name):
        return getattr(self.gateway, name)

    def reverse_transfer(self, *args, **kwargs):
        self.before_reversal()
        return self.gateway.reverse_transfer(*args, **kwargs)


def test_a_reversal_whose_answer_was_lost_is_given_back_when_the_refund_fails_before_the_retry(
    client, sandbox, stripe_client, deliver
):
    order, [row] = paid_order(stripe_client, [1000], webhook=client)
    # Stripe reverses 450, then the connection drops before its answer.
    sandbox.script("reversals.create", [{"action": "drop_after_perform"}])
    refund = refund_at_stripe(stripe_client, order, 500)
    deliver("refund.created")
    row.refresh_from_db()
    assert (row.status, row.reversal_target, row.amount_reversed) == (
        TransferStatus.REVERSAL_PENDING,
        450,
        0,
    )
    assert row.reversal_idempotency_key and not row.read_stripe_first

    # The refund fails before the retry: the share is zero, nothing is left to send.
    sandbox.fail_refund(refund["id"])
    deliver(*REFUND_EVENTS)
    row.refresh_from_db()
    make_due(row)
    reversals_process_due()

    row.refresh_from_db()
    assert (row.status, row.reversal_target) == (TransferStatus.COMPLETED, 0)
    assert (row.amount_reversed, row.amount_returned) == (450, 450)
    assert returned_at_stripe(sandbox, row) == [450]
    assert len(sandbox.calls("reversals.create")) == 1
    assert_seller_has_their_share(sandbox, row)


@pytest.mark.parametrize("heard", ["before the refund failed", "after the refund failed"])
def test_a_lost_reversal_stripe_reported_is_given_back_with_a_key_of_its_own(
    client, sandbox, stripe_client, deliver, heard
):
    order, [row] = paid_order(stripe_client, [1000], webhook=client)
    sandbox.script("reversals.create", [{"action": "drop_after_perform"}])
    refund = refund_at_stripe(stripe_client, order, 500)
    deliver("refund.created")
    if heard == "before the refund failed":
        deliver("transfer.reversed")
    sandbox.fail_refund(refund["id"])
    deliver(*REFUND_EVENTS)
    deliver("transfer.reversed")
    row.refresh_from_db()
    make_due(row)
    reversals_process_due()

    row.refresh_from_db()
    assert (row.status, row.amount_reversed, row.amount_returned) == (
        TransferStatus.COMPLETED,
        450,
        450,
    )
    assert returned_at_stripe(sandbox, row) == [450]
    assert sandbox.calls("transfers.create", outcome="error") == []
    assert_seller_has_their_share(sandbox, row)


def test_a_lost_reversal_is_found_before_an_earlier_one_is_given_back(
    client, sandbox, stripe_client, deliver
):
    order, [row] = paid_order(stripe_client, [1000], webhook=client)
    first = refund_at_stripe(stripe_client, order, 300)
    deliver("refund.created")  # 270 reversed
    sandbox.script("reversals.create", [{"action": "drop_after_perform"}])
    second = refund_at_stripe(stripe_client, order, 500)
    deliver("refund.created")  # 450 reversed at Stripe, its answer lost
    row.refresh_from_db()
    assert (row.reversal_target, row.amount_reversed) == (720, 270)

    sandbox.fail_refund(first["id"])
    deliver(*REFUND_EVENTS)
    sandbox.fail_refund(second["id"])
    deliver(*REFUND_EVENTS)
    row.refresh_from_db()
    assert (row.reversal_target, row.amount_to_give_back) == (0, 270)
    make_due(row)
    reversals_process_due()

    row.refresh_from_db()
    assert (row.status, row.amount_reversed, row.amount_returned) == (
        TransferStatus.COMPLETED,
        720,
        720,
    )
    assert returned_at_stripe(sandbox, row) == [720]
    assert_seller_has_their_share(sandbox, row)


def test_our_reversal_that_lands_after_the_refund_failed_is_given_back_once(
    client, sandbox, stripe_client
):
    order, [row] = paid_order(stripe_client, [1000], webhook=client)
    refund = refund_at_stripe(stripe_client, order, 500)
    post_event(client, make_event("refund.created", refund))  # its drain never ran
    row.refresh_from_db()
    assert (row.status, row.reversal_target) == (TransferStatus.REVERSAL_PENDING, 450)

    def refund_fails():
        failed = sandbox.fail_refund(refund["id"])
        post_event(client, make_event("refund.failed", failed))
        during = SellerTransfer.objects.get(pk=row.pk)
        assert (during.reversal_target, during.amount_to_give_back) == (0, 0)

    reversals_process_due(gateway=RefundFailsDuringTheCall(get_gateway(), refund_fails))
    for _ in range(3):  # and the worker passes by again: nothing more moves
        make_due(row)
        reversals_process_due()

    row.refresh_from_db()
    assert (row.status, row.reversal_target) == (TransferStatus.COMPLETED, 0)
    assert (row.amount_reversed, row.amount_returned) == (450, 450)
    assert returned_at_stripe(sandbox, row) == [450]
    assert len(sandbox.calls("reversals.create")) == 1
    assert_seller_has_their_share(sandbox, row)


class WorkerKilled(BaseException):  # noqa: N818 - it stands for the process dying
    """The worker process dies: nothing in the service catches it, as nothing catches SIGKILL."""


class KilledAfterReversing:
    """The real gateway; the worker dies right after Stripe made its reversal, before recording
    it."""

    def __init__(self, gateway):
        self.gateway = gateway

    def __getattr__(self, name):
        return getattr(self.gateway, name)

    def reverse_transfer(self, *args, **kwargs):
        self.gateway.reverse_transfer(*args, **kwargs)
        raise WorkerKilled


@pytest.mark.parametrize("heard", ["from its transfer.reversed event", "by reconciliation"])
def test_a_reversal_whose_answer_was_lost_is_given_back_when_the_dispute_is_won(
    client, sandbox, stripe_client, deliver, heard
):
    order, [row, _] = paid_order(stripe_client, [1000, 2000], webhook=client)
    dispute = sandbox.open_dispute(order.stripe_charge_id)
    for event in sandbox.events():  # the chargeback is recovered; its drain never ran
        if event["type"] in DISPUTE_EVENTS:
            post_event(client, event)
    with pytest.raises(WorkerKilled):
        reversals_process_due(gateway=KilledAfterReversing(get_gateway()))
    row.refresh_from_db()
    assert (row.dispute_target, row.amount_reversed) == (900, 0)
    assert reversed_at_stripe(sandbox, row) == 900

    # The dispute is won before the service hears of the reversal: then it hears of it.
    sandbox.advance_dispute(dispute["id"], "won")
    deliver(*DISPUTE_EVENTS)
    if heard == "from its transfer.reversed event":
        deliver("transfer.reversed")
    else:
        reconciliation_run(since=None)
    for _ in range(3):  # the lease runs out; the worker passes by, again and again
        make_due(row)
        reversals_process_due()

    row.refresh_from_db()
    assert (row.status, row.dispute_target) == (TransferStatus.COMPLETED, 0)
    assert (row.amount_reversed, row.amount_returned) == (900, 900)
    assert returned_at_stripe(sandbox, row) == [900]
    calls = sandbox.calls("reversals.create")
    assert len([c for c in calls if row.stripe_transfer_id in c["path"]]) == 1
    assert_seller_has_their_share(sandbox, row)
