"""Refund events → reversal_pending → reversed, end to end through the signed webhook endpoint
and the worker."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from marketplace.models import Order, Refund
from payouts import tasks
from payouts.models import SellerTransfer, SellerTransferEvent
from payouts.transfer.transitions import TransferStatus
from tests.builders import (
    make_event,
    paid_order,
    post_event,
    post_event_over_http,
    refund_at_stripe,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_seller_order(client, sandbox, stripe_client):
    """An order across two sellers, paid through the webhook: both transfers completed."""
    order, transfers = paid_order(stripe_client, [1000, 2000], webhook=client)
    assert {t.status for t in transfers} == {TransferStatus.COMPLETED}
    return order


def test_a_succeeded_full_refund_reverses_every_seller_transfer(
    client, sandbox, stripe_client, two_seller_order
):
    refund = refund_at_stripe(stripe_client, two_seller_order)

    response = post_event(client, make_event("refund.created", refund))

    assert response.status_code == 200, response.content
    two_seller_order.refresh_from_db()
    assert two_seller_order.status == Order.Status.REFUNDED
    assert Refund.objects.get(stripe_refund_id=refund["id"]).status == Refund.Status.SUCCEEDED
    rows = list(two_seller_order.transfers.order_by("pk"))
    assert {(r.status, r.retry_count) for r in rows} == {(TransferStatus.REVERSAL_PENDING, 0)}
    assert all(r.next_retry_at is not None for r in rows)

    assert tasks.reversals_process_due() == {"reversed": 2}

    reversal_ids = {r["id"] for r in sandbox.state()["transfer_reversals"]}
    for row in two_seller_order.transfers.all():
        assert row.status == TransferStatus.REVERSED
        assert row.stripe_reversal_id in reversal_ids
        assert row.amount_reversed == row.amount


def test_an_invalid_transfer_id_ends_permanently_failed_after_one_call(
    client, sandbox, stripe_client, two_seller_order
):
    broken = two_seller_order.transfers.order_by("pk").first()
    SellerTransfer.objects.filter(pk=broken.pk).update(stripe_transfer_id="tr_invalid")
    post_event(
        client, make_event("refund.created", refund_at_stripe(stripe_client, two_seller_order))
    )

    tasks.reversals_process_due()

    broken.refresh_from_db()
    assert broken.status == TransferStatus.PERMANENTLY_FAILED
    calls = [c for c in sandbox.calls("reversals.create") if "tr_invalid" in c["path"]]
    assert len(calls) == 1


def test_a_transfer_already_reversed_out_of_band_ends_reversed_with_a_message(
    client, sandbox, stripe_client, two_seller_order
):
    first = two_seller_order.transfers.order_by("pk").first()
    sandbox.reverse_out_of_band(first.stripe_transfer_id)
    post_event(
        client, make_event("refund.created", refund_at_stripe(stripe_client, two_seller_order))
    )

    tasks.reversals_process_due()

    first.refresh_from_db()
    assert first.status == TransferStatus.REVERSED
    assert "already fully reversed" in first.error_message


def test_duplicate_and_out_of_order_refund_events_have_one_effect(
    client, sandbox, stripe_client, two_seller_order
):
    refund = refund_at_stripe(stripe_client, two_seller_order)
    succeeded = make_event("refund.updated", refund)
    created_as_pending = make_event("refund.created", {**refund, "status": "pending"})

    for event in (succeeded, succeeded, created_as_pending, make_event("refund.updated", refund)):
        assert post_event(client, event).status_code == 200

    assert Refund.objects.get(stripe_refund_id=refund["id"]).status == Refund.Status.SUCCEEDED
    moves = SellerTransferEvent.objects.filter(
        transfer__order=two_seller_order, to_status=TransferStatus.REVERSAL_PENDING
    )
    assert moves.count() == 2  # one per transfer, not one per delivery


def test_the_buyer_refund_completes_while_stripe_connect_is_down(
    client, sandbox, stripe_client, two_seller_order
):
    refund = refund_at_stripe(stripe_client, two_seller_order)
    sandbox.set_faults("*", error_500_rate=1.0)
    calls_before = len(sandbox.calls())

    response = post_event(client, make_event("refund.created", refund))

    assert response.status_code == 200
    two_seller_order.refresh_from_db()
    assert two_seller_order.status == Order.Status.REFUNDED
    assert set(two_seller_order.transfers.values_list("status", flat=True)) == {
        TransferStatus.REVERSAL_PENDING
    }
    assert len(sandbox.calls()) == calls_before  # the webhook never waits on Stripe


def test_charge_refunded_fetches_refunds_not_seen_and_never_double_counts(
    client, sandbox, stripe_client, two_seller_order, django_capture_on_commit_callbacks
):
    refund = refund_at_stripe(stripe_client, two_seller_order)
    charge = stripe_client.v1.charges.retrieve(two_seller_order.stripe_charge_id).to_dict()

    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            response = post_event(client, make_event("charge.refunded", charge))
        assert response.status_code == 200

    assert Refund.objects.filter(order=two_seller_order).count() == 1
    assert Refund.objects.get().stripe_refund_id == refund["id"]
    # Scheduled once per seller; the wake-up after commit reversed each once.
    assert (
        SellerTransferEvent.objects.filter(
            transfer__order=two_seller_order, to_status=TransferStatus.REVERSAL_PENDING
        ).count()
        == 2
    )
    assert set(two_seller_order.transfers.values_list("status", flat=True)) == {
        TransferStatus.REVERSED
    }
    reversals = [t["reversal_count"] for t in sandbox.ledger()["transfers"]]
    assert reversals == [1, 1]


@pytest.mark.django_db(transaction=True)  # the live server's threads have their own connections
@pytest.mark.slow
def test_two_different_events_about_one_new_refund_at_once_record_it_once(
    live_server, sandbox, stripe_client, two_seller_order
):
    refund = refund_at_stripe(stripe_client, two_seller_order)
    events = [make_event("refund.created", refund), make_event("refund.updated", refund)]
    barrier = threading.Barrier(len(events))

    def deliver(event):
        barrier.wait()
        return post_event_over_http(live_server.url, event)

    with ThreadPoolExecutor(len(events)) as pool:
        statuses = list(pool.map(deliver, events))

    assert statuses == [200, 200]
    assert Refund.objects.filter(stripe_refund_id=refund["id"]).count() == 1
    moves = SellerTransferEvent.objects.filter(
        transfer__order=two_seller_order, to_status=TransferStatus.REVERSAL_PENDING
    )
    assert moves.count() == 2
