"""The order row is locked before transfer rows, and a row that references an order can be
inserted while another transaction holds the order's lock; staff cannot release a reserved
refund that Stripe may still be making, and a refund Stripe completes after its reservation was
released is recorded.
"""

import threading
import time
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.db import connections, transaction
from django.db.models import F
from django.urls import reverse

from marketplace.models import Order, Refund
from marketplace.selectors import order_refund_reserved_amount
from marketplace.services import order_lock, refund_open_by_staff
from payouts.services.refunds import (
    RESERVATION_SETTLE_AFTER,
    ReservationOutcome,
    ReservationTooRecent,
    staff_refund_settle,
)
from payouts.transfer import moves
from payouts.transfer.actors import Actor
from payouts.transfer.locks import order_transfers_lock, transfer_lock
from payouts.transfer.transitions import TransferStatus
from tests.builders import make_event, paid_order, post_event
from tests.factories import UserFactory


def age_reservation(refund: Refund, by: timedelta) -> None:
    Refund.objects.filter(pk=refund.pk).update(created_at=F("created_at") - by)


# --- The order row first, then the transfer rows ------------------------------------------------


@pytest.mark.django_db(transaction=True)  # each thread has its own connection
def test_settling_a_reversal_while_a_refund_holds_the_order_does_not_deadlock(
    sandbox, stripe_client
):
    order, [row] = paid_order(stripe_client, [1000])
    with transaction.atomic():
        order_lock(order.pk)
        moves.shares_changed(
            transfer_lock(row.pk), refund_target=450, dispute_target=0, actor=Actor("test")
        )
    transfer_held, order_held = threading.Event(), threading.Event()
    errors: dict[str, str] = {}
    committed: list[str] = []

    def settle_reversal():
        # As the reversal worker settles a row: the transfer alone is locked, then the move
        # books an entry whose foreign key points at the order.
        try:
            with transaction.atomic():
                locked = transfer_lock(row.pk)
                transfer_held.set()
                order_held.wait(5)
                time.sleep(0.3)  # the refund path is now waiting for the transfer row
                moves.reversal_settled(
                    locked,
                    amount_reversed=450,
                    stripe_reversal_id="trr_lock_order",
                    actor=Actor("test:settle"),
                )
            committed.append("settle")
        except Exception as error:  # noqa: BLE001 the test reports whatever went wrong
            errors["settle"] = repr(error)
        finally:
            connections.close_all()

    def refund_path():
        # As a refund or a dispute is applied: the order first, then its transfers.
        try:
            transfer_held.wait(5)
            with transaction.atomic():
                order_lock(order.pk)
                order_held.set()
                order_transfers_lock(order.pk)
            committed.append("refund")
        except Exception as error:  # noqa: BLE001 the test reports whatever went wrong
            errors["refund"] = repr(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=settle_reversal), threading.Thread(target=refund_path)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)

    assert not any(thread.is_alive() for thread in threads)
    assert not any("deadlock" in error for error in errors.values()), errors
    assert errors == {}
    assert sorted(committed) == ["refund", "settle"]
    row.refresh_from_db()
    assert (row.status, row.amount_reversed) == (TransferStatus.PARTIALLY_REVERSED, 450)


# --- Staff settling a reserved refund -----------------------------------------------------------


@pytest.mark.django_db
def test_staff_cannot_release_a_reservation_whose_request_may_still_be_in_flight(
    sandbox, stripe_client
):
    order, _ = paid_order(stripe_client, [2000])
    refund = refund_open_by_staff(order_id=order.pk, amount=700)

    with pytest.raises(ReservationTooRecent) as raised:
        staff_refund_settle(refund_id=refund.pk, release=True)

    assert raised.value.code == "reservation_too_recent"
    assert raised.value.http_status == 409
    assert "can be settled from" in raised.value.message
    refund.refresh_from_db()
    assert (refund.status, refund.error_message) == (Refund.Status.PENDING, "")
    assert order_refund_reserved_amount(order=order) == 700


@pytest.mark.django_db
def test_the_admin_says_when_a_recent_reservation_can_be_settled_and_keeps_it(
    client, sandbox, stripe_client
):
    order, _ = paid_order(stripe_client, [2000])
    refund = refund_open_by_staff(order_id=order.pk, amount=500)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))

    response = client.post(
        reverse("admin:marketplace_refund_changelist"),
        {"action": "settle_reservation", "_selected_action": [str(refund.pk)]},
    )

    assert response.status_code == 302
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert message.startswith(f"refund {refund.pk}: ")
    assert "can be settled from" in message
    refund.refresh_from_db()
    assert refund.status == Refund.Status.PENDING
    assert order_refund_reserved_amount(order=order) == 500


@pytest.mark.django_db
def test_staff_release_a_reservation_once_it_is_old_enough(sandbox, stripe_client):
    order, _ = paid_order(stripe_client, [2000])
    refund = refund_open_by_staff(order_id=order.pk, amount=700)
    age_reservation(refund, RESERVATION_SETTLE_AFTER + timedelta(seconds=1))

    outcome = staff_refund_settle(refund_id=refund.pk, release=True)

    refund.refresh_from_db()
    assert outcome == ReservationOutcome.RELEASED
    assert refund.status == Refund.Status.FAILED
    assert order_refund_reserved_amount(order=order) == 0


@pytest.mark.django_db
def test_a_recent_reservation_stripe_already_lists_is_recorded_not_refused(sandbox, stripe_client):
    order, _ = paid_order(stripe_client, [2000])
    refund = refund_open_by_staff(order_id=order.pk, amount=700)
    stripe_client.v1.refunds.create(
        params={
            "payment_intent": order.stripe_payment_intent_id,
            "amount": 700,
            "metadata": {"order_id": str(order.pk), "refund_id": str(refund.pk)},
        }
    )

    outcome = staff_refund_settle(refund_id=refund.pk, release=True)

    refund.refresh_from_db()
    assert outcome == ReservationOutcome.RECORDED
    assert refund.stripe_refund_id.startswith("re_")
    assert refund.status == Refund.Status.SUCCEEDED


@pytest.mark.django_db
def test_a_refund_stripe_completes_after_its_reservation_was_released_is_recorded(
    client, sandbox, stripe_client
):
    order, [transfer] = paid_order(stripe_client, [2000])
    refund = refund_open_by_staff(order_id=order.pk, amount=2000)
    age_reservation(refund, RESERVATION_SETTLE_AFTER + timedelta(seconds=1))
    assert staff_refund_settle(refund_id=refund.pk, release=True) == ReservationOutcome.RELEASED
    # The first request was still in flight: Stripe makes the refund after all.
    at_stripe = stripe_client.v1.refunds.create(
        params={
            "payment_intent": order.stripe_payment_intent_id,
            "amount": 2000,
            "metadata": {"order_id": str(order.pk), "refund_id": str(refund.pk)},
        }
    ).to_dict()
    assert at_stripe["status"] == "succeeded"

    response = post_event(client, make_event("refund.updated", at_stripe))

    assert response.status_code == 200, response.content
    refund.refresh_from_db()
    assert (refund.status, refund.stripe_refund_id) == (Refund.Status.SUCCEEDED, at_stripe["id"])
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    transfer.refresh_from_db()
    assert (transfer.status, transfer.reversal_target) == (
        TransferStatus.REVERSAL_PENDING,
        transfer.amount,
    )
    assert order_refund_reserved_amount(order=order) == 2000


@pytest.mark.django_db
def test_a_released_reservation_stripe_reports_pending_counts_again_then_succeeds(
    client, sandbox, stripe_client
):
    order, _ = paid_order(stripe_client, [2000])
    refund = refund_open_by_staff(order_id=order.pk, amount=800)
    age_reservation(refund, RESERVATION_SETTLE_AFTER + timedelta(seconds=1))
    staff_refund_settle(refund_id=refund.pk, release=True)
    at_stripe = stripe_client.v1.refunds.create(
        params={
            "payment_intent": order.stripe_payment_intent_id,
            "amount": 800,
            "metadata": {"order_id": str(order.pk), "refund_id": str(refund.pk)},
        }
    ).to_dict()

    post_event(client, make_event("refund.created", {**at_stripe, "status": "pending"}))

    refund.refresh_from_db()
    assert refund.status == Refund.Status.PENDING
    assert order_refund_reserved_amount(order=order) == 800

    post_event(client, make_event("refund.updated", at_stripe))

    refund.refresh_from_db()
    order.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED
    assert order.status == Order.Status.PARTIALLY_REFUNDED
