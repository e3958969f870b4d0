"""Refunds heard from Stripe, partial and repeated: each seller's share of the refunded total is
reversed, never more than they were paid; reversals made at Stripe outside the service are
taken into account (through their webhook, or by reconciliation when the webhook was lost)."""

from io import StringIO

import pytest
from django.core.management import call_command

from marketplace.models import Order, Refund
from payouts import tasks
from payouts.models import SellerTransfer
from payouts.transfer.money import proportional_targets
from payouts.transfer.transitions import TransferStatus
from tests.builders import make_event, paid_order, post_event, refund_at_stripe

pytestmark = pytest.mark.django_db


def refund_event(stripe_client, order: Order, amount: int) -> dict:
    return make_event("refund.updated", refund_at_stripe(stripe_client, order, amount))


def reversed_amounts(order: Order) -> list[int]:
    return list(order.transfers.order_by("pk").values_list("amount_reversed", flat=True))


def sandbox_reversals(sandbox, order: Order) -> dict[str, list[int]]:
    ours = set(order.transfers.values_list("stripe_transfer_id", flat=True))
    by_transfer: dict[str, list[int]] = {}
    for reversal in sandbox.state()["transfer_reversals"]:
        if reversal["transfer"] in ours:
            by_transfer.setdefault(reversal["transfer"], []).append(reversal["amount"])
    return by_transfer


def test_three_partial_refunds_then_the_rest_reverse_proportionally_to_the_full_amounts(
    client, sandbox, stripe_client, three_seller_order
):
    order = three_seller_order
    steps = []
    for amount in (1000, 2000, 1333, 2000):
        assert post_event(client, refund_event(stripe_client, order, amount)).status_code == 200
        tasks.reversals_process_due()
        steps.append(reversed_amounts(order))

    assert steps == [[142, 284, 474], [426, 853, 1421], [616, 1231, 2053], [900, 1800, 3000]]
    assert set(order.transfers.values_list("status", flat=True)) == {TransferStatus.REVERSED}
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    at_stripe = sandbox_reversals(sandbox, order)
    assert sum(sum(parts) for parts in at_stripe.values()) == 900 + 1800 + 3000
    for row in order.transfers.all():
        assert sum(at_stripe[row.stripe_transfer_id]) == row.amount  # never beyond its amount
        assert len(at_stripe[row.stripe_transfer_id]) == 4


def test_partially_reversed_rows_wait_for_the_next_refund(
    client, sandbox, stripe_client, three_seller_order
):
    post_event(client, refund_event(stripe_client, three_seller_order, 1000))

    tasks.reversals_process_due()

    rows = three_seller_order.transfers.all()
    assert {r.status for r in rows} == {TransferStatus.PARTIALLY_REVERSED}
    assert all(r.next_retry_at is None for r in rows)
    assert tasks.reversals_process_due() == {}


def test_duplicated_out_of_order_refunds_end_with_the_same_totals(
    client, sandbox, stripe_client, three_seller_order
):
    events = [refund_event(stripe_client, three_seller_order, a) for a in (1000, 2000)]

    for event in [events[1], events[0], events[1], events[0]]:
        assert post_event(client, event).status_code == 200
    tasks.reversals_process_due()

    expected = proportional_targets(
        refunded=3000,
        order_total=6333,
        amounts=dict(three_seller_order.transfers.values_list("pk", "amount")),
    )
    assert dict(three_seller_order.transfers.values_list("pk", "amount_reversed")) == expected
    assert Refund.objects.filter(order=three_seller_order).count() == 2


def test_a_refund_arriving_while_a_reversal_is_pending_adds_to_it(
    client, sandbox, stripe_client, three_seller_order
):
    post_event(client, refund_event(stripe_client, three_seller_order, 1000))
    post_event(client, refund_event(stripe_client, three_seller_order, 2000))

    rows = list(three_seller_order.transfers.order_by("pk"))
    assert {r.status for r in rows} == {TransferStatus.REVERSAL_PENDING}
    assert [r.reversal_target for r in rows] == [426, 853, 1421]
    tasks.reversals_process_due()

    assert reversed_amounts(three_seller_order) == [426, 853, 1421]
    assert all(len(parts) == 1 for parts in sandbox_reversals(sandbox, three_seller_order).values())


def test_a_seller_paid_after_a_partial_refund_has_their_share_reversed(
    client, sandbox, stripe_client
):
    sandbox.script("transfers.create", [{"action": "error_500"}])  # the first seller's transfer
    order, _ = paid_order(stripe_client, [1000, 1000], webhook=client)
    post_event(client, refund_event(stripe_client, order, 1000))
    unpaid = SellerTransfer.objects.get(order=order, status=TransferStatus.FAILED)
    SellerTransfer.objects.filter(pk=unpaid.pk).update(next_retry_at="2000-01-01T00:00:00Z")

    tasks.transfers_send_due()

    unpaid.refresh_from_db()
    assert unpaid.status == TransferStatus.REVERSAL_PENDING
    assert unpaid.reversal_target == 450  # half the order refunded, of 900


# --- Reversals made at Stripe, outside the service -------------------------------------------


def test_a_dashboard_reversal_is_reflected_after_its_webhook(
    client, sandbox, stripe_client, three_seller_order
):
    row = three_seller_order.transfers.order_by("pk").first()
    sandbox.reverse_out_of_band(row.stripe_transfer_id, 300)
    event = sandbox.events("transfer.reversed")[-1]
    reversals_before = len(sandbox.calls("reversals.create"))

    assert post_event(client, event).status_code == 200
    row.refresh_from_db()
    assert (row.status, row.amount_reversed) == (TransferStatus.REVERSAL_PENDING, 300)
    tasks.reversals_process_due()

    row.refresh_from_db()
    assert (row.status, row.amount_reversed) == (TransferStatus.PARTIALLY_REVERSED, 300)
    assert len(sandbox.calls("reversals.create")) == reversals_before  # no money moved by us


def test_a_transfer_reversed_webhook_for_our_own_reversal_changes_nothing(
    client, sandbox, stripe_client, three_seller_order
):
    post_event(client, refund_event(stripe_client, three_seller_order, 6333))
    tasks.reversals_process_due()
    before = list(three_seller_order.transfers.values_list("status", "amount_reversed"))

    for event in sandbox.events("transfer.reversed"):
        assert post_event(client, event).status_code == 200

    after = list(three_seller_order.transfers.values_list("status", "amount_reversed"))
    assert after == before


def test_reconcile_reports_then_repairs_a_reversal_whose_webhook_was_lost(
    client, sandbox, stripe_client, three_seller_order
):
    row = three_seller_order.transfers.order_by("pk").first()
    sandbox.reverse_out_of_band(row.stripe_transfer_id, 250)  # its webhook never reaches us
    reversals_before = len(sandbox.calls("reversals.create"))

    report = StringIO()
    call_command("reconcile_transfers", stdout=report)
    row.refresh_from_db()
    assert "amount_reversed 0 here, 250 at Stripe [needs review]" in report.getvalue()
    assert row.amount_reversed == 0

    call_command("reconcile_transfers", "--repair", stdout=StringIO())
    tasks.reversals_process_due()

    row.refresh_from_db()
    assert (row.status, row.amount_reversed) == (TransferStatus.PARTIALLY_REVERSED, 250)
    assert len(sandbox.calls("reversals.create")) == reversals_before
    follow_up = StringIO()
    call_command("reconcile_transfers", stdout=follow_up)
    assert follow_up.getvalue().strip().endswith("0 difference(s)")
