"""Staff re-queue a transfer that gave up after its retries: the staff-only edges of the state
table, the API, and what the workers then do with the row (never moving money twice)."""

from dataclasses import replace

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from payouts import tasks
from payouts.models import SellerTransfer, SellerTransferEvent
from payouts.services.ledger_check import ledger_check
from payouts.transfer.transitions import (
    EndReason,
    TransferStatus,
    TransitionNotAllowed,
    can_transition,
)
from tests.builders import STRIPE_500, make_event, paid_order, post_event, refund_at_stripe
from tests.factories import SellerTransferFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_retries(settings):
    """Workers give up after their first failed attempt."""
    payouts = settings.PAYOUTS
    settings.PAYOUTS = replace(
        payouts,
        reversal=replace(payouts.reversal, max_retries=0),
        transfer_retry=replace(payouts.transfer_retry, max_retries=0),
    )


@pytest.fixture
def staff_client(client):
    user = UserFactory(is_staff=True, username="dana")
    user.user_permissions.add(Permission.objects.get(codename="requeue_sellertransfer"))
    client.force_login(user)
    return client


def requeue(client, pk: int, **body):
    return client.post(f"/api/admin/transfers/{pk}/requeue/", body, content_type="application/json")


@pytest.fixture
def reversal_given_up(
    client, sandbox, stripe_client, no_retries, django_capture_on_commit_callbacks
):
    """A refund's reversal that ran out of retries during a Stripe outage: the seller still has
    the refunded share."""
    order, [row] = paid_order(stripe_client, [2000], webhook=client)
    sandbox.script("reversals.create", [STRIPE_500])
    with django_capture_on_commit_callbacks(execute=True):
        post_event(client, make_event("refund.created", refund_at_stripe(stripe_client, order)))
    row.refresh_from_db()
    assert (row.status, row.end_reason) == (
        TransferStatus.PERMANENTLY_FAILED,
        EndReason.RETRIES_EXHAUSTED,
    )
    return row


def test_a_reversal_that_gave_up_is_requeued_by_staff_and_reversed_once(
    staff_client, sandbox, reversal_given_up, django_capture_on_commit_callbacks
):
    row = reversal_given_up

    with django_capture_on_commit_callbacks(execute=True):  # the drain woken after commit
        response = requeue(staff_client, row.pk, reason="Stripe outage 14:00-15:00 is over")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == TransferStatus.REVERSAL_PENDING  # as it was when answered
    row.refresh_from_db()
    assert (row.status, row.amount_reversed, row.end_reason) == (TransferStatus.REVERSED, 1800, "")
    event = SellerTransferEvent.objects.get(
        transfer=row,
        from_status=TransferStatus.PERMANENTLY_FAILED,
        to_status=TransferStatus.REVERSAL_PENDING,
    )
    assert event.caused_by == "staff:dana" and event.user.username == "dana"
    assert event.detail["reason"] == "Stripe outage 14:00-15:00 is over"
    assert event.detail["ended"] == EndReason.RETRIES_EXHAUSTED
    assert len(sandbox.state()["transfer_reversals"]) == 1
    assert ledger_check()[1] == []


def test_a_requeued_reversal_whose_last_answer_was_lost_is_not_made_twice(
    client, staff_client, sandbox, stripe_client, no_retries, django_capture_on_commit_callbacks
):
    order, [row] = paid_order(stripe_client, [2000], webhook=client)
    # Stripe reverses, the answer is lost, and the worker (with no retries left) gives up.
    sandbox.script("reversals.create", [{"action": "drop_after_perform"}])
    with django_capture_on_commit_callbacks(execute=True):
        post_event(client, make_event("refund.created", refund_at_stripe(stripe_client, order)))
    row.refresh_from_db()
    assert row.status == TransferStatus.PERMANENTLY_FAILED and row.amount_reversed == 0
    kept_key = row.reversal_idempotency_key  # Stripe's outcome is unknown: the key is kept

    with django_capture_on_commit_callbacks(execute=True):
        assert requeue(staff_client, row.pk, reason="checked: Stripe is fine").status_code == 200

    row.refresh_from_db()
    assert (row.status, row.amount_reversed) == (TransferStatus.REVERSED, 1800)
    assert len(sandbox.state()["transfer_reversals"]) == 1  # replayed by Stripe, not made again
    keys = [call["idempotency_key"] for call in sandbox.calls("reversals.create")]
    assert keys == [kept_key, kept_key]
    assert ledger_check()[1] == []


def test_an_unpaid_transfer_that_gave_up_goes_back_to_failed_and_is_paid(
    client, staff_client, sandbox, stripe_client, no_retries, django_capture_on_commit_callbacks
):
    sandbox.script("transfers.create", [STRIPE_500])
    order, [row] = paid_order(stripe_client, [2000], webhook=client)
    row.refresh_from_db()
    assert (row.status, row.end_reason) == (
        TransferStatus.PERMANENTLY_FAILED,
        EndReason.RETRIES_EXHAUSTED,
    )

    with django_capture_on_commit_callbacks(execute=True):  # the send task woken after commit
        response = requeue(staff_client, row.pk, reason="seller fixed their bank details")

    assert response.status_code == 200
    assert response.json()["status"] == TransferStatus.FAILED
    row.refresh_from_db()
    assert row.status == TransferStatus.COMPLETED and row.stripe_transfer_id
    assert SellerTransferEvent.objects.filter(
        transfer=row, from_status=TransferStatus.PERMANENTLY_FAILED, to_status=TransferStatus.FAILED
    ).exists()
    assert ledger_check()[1] == []


def test_a_requeued_reversal_counts_the_refunds_made_while_it_was_given_up(
    client, staff_client, sandbox, stripe_client, no_retries, django_capture_on_commit_callbacks
):
    order, [row] = paid_order(stripe_client, [2000], webhook=client)
    sandbox.script("reversals.create", [STRIPE_500])
    with django_capture_on_commit_callbacks(execute=True):
        post_event(
            client, make_event("refund.created", refund_at_stripe(stripe_client, order, 500))
        )
    with django_capture_on_commit_callbacks(execute=True):
        post_event(
            client, make_event("refund.created", refund_at_stripe(stripe_client, order, 500))
        )
    row.refresh_from_db()
    assert (row.status, row.reversal_target) == (TransferStatus.PERMANENTLY_FAILED, 450)

    with django_capture_on_commit_callbacks(execute=True):
        assert requeue(staff_client, row.pk, reason="outage over").status_code == 200

    row.refresh_from_db()
    assert (row.status, row.reversal_target, row.amount_reversed) == (
        TransferStatus.PARTIALLY_REVERSED,
        900,
        900,
    )
    assert ledger_check()[1] == []


@pytest.mark.parametrize(
    ("end_reason", "says"),
    [
        (EndReason.TRANSFER_MISSING, "404"),
        (EndReason.NO_STRIPE_TRANSFER, "no Stripe transfer id"),
        (EndReason.ORDER_REFUNDED, "refunded in full before the seller was paid"),
    ],
)
def test_a_row_that_ended_for_a_final_reason_is_not_requeueable_and_says_why(
    staff_client, end_reason, says
):
    row = SellerTransferFactory(
        completed=True, status=TransferStatus.PERMANENTLY_FAILED, end_reason=end_reason
    )

    response = requeue(staff_client, row.pk, reason="try again")

    assert response.status_code == 409
    assert response.json()["code"] == "not_requeueable"
    assert says in response.json()["detail"]
    row.refresh_from_db()
    assert (row.status, row.end_reason) == (TransferStatus.PERMANENTLY_FAILED, end_reason)
    assert not SellerTransferEvent.objects.filter(transfer=row).exists()


def test_a_row_that_did_not_give_up_is_not_requeueable(staff_client):
    row = SellerTransferFactory(completed=True)

    response = requeue(staff_client, row.pk, reason="try again")

    assert response.status_code == 409
    assert "completed, not permanently_failed" in response.json()["detail"]


def test_bad_requests_change_nothing(client, staff_client):
    row = SellerTransferFactory(
        completed=True,
        status=TransferStatus.PERMANENTLY_FAILED,
        end_reason=EndReason.RETRIES_EXHAUSTED,
    )

    assert requeue(staff_client, row.pk).status_code == 400  # no reason
    assert requeue(staff_client, row.pk, reason="   ").status_code == 400
    assert requeue(staff_client, 999_999, reason="x").status_code == 404
    client.force_login(UserFactory(is_staff=True))  # staff, without the permission
    assert requeue(client, row.pk, reason="x").status_code == 403
    client.logout()
    assert requeue(client, row.pk, reason="x").status_code in (401, 403)
    row.refresh_from_db()
    assert row.status == TransferStatus.PERMANENTLY_FAILED


def test_only_a_person_can_take_the_requeue_edges():
    for to in (TransferStatus.FAILED, TransferStatus.REVERSAL_PENDING):
        assert not can_transition(TransferStatus.PERMANENTLY_FAILED, to)
        assert can_transition(TransferStatus.PERMANENTLY_FAILED, to, by_staff=True)
    row = SellerTransferFactory(
        completed=True,
        status=TransferStatus.PERMANENTLY_FAILED,
        end_reason=EndReason.RETRIES_EXHAUSTED,
    )
    with pytest.raises(TransitionNotAllowed):
        SellerTransfer.objects.transition(
            row, TransferStatus.REVERSAL_PENDING, caused_by="worker:x", next_retry_at=timezone.now()
        )
    tasks.reversals_process_due()
    tasks.transfers_send_due()
    row.refresh_from_db()
    assert row.status == TransferStatus.PERMANENTLY_FAILED


def test_the_admin_action_asks_for_a_reason_then_requeues_each_selected_row(
    client, reversal_given_up, django_capture_on_commit_callbacks
):
    admin = UserFactory(is_staff=True, is_superuser=True, username="ops")
    client.force_login(admin)
    row = reversal_given_up
    final = SellerTransferFactory(
        completed=True,
        status=TransferStatus.PERMANENTLY_FAILED,
        end_reason=EndReason.ORDER_REFUNDED,
    )
    changelist = reverse("admin:payouts_sellertransfer_changelist")
    chosen = {"action": "requeue_given_up", "_selected_action": [row.pk, final.pk]}

    form = client.post(changelist, chosen)  # first the page asking why
    assert form.status_code == 200
    assert b'name="reason"' in form.content
    plan = form.context["plan"]
    assert plan[0].startswith(f"Transfer {row.pk}: back to reversal_pending, due now, to take back")
    assert plan[1].startswith(f"Transfer {final.pk}: left alone (")
    row.refresh_from_db()
    assert row.status == TransferStatus.PERMANENTLY_FAILED  # nothing yet

    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(
            changelist, {**chosen, "apply": "1", "reason": "outage over"}, follow=True
        )

    notes = [str(message) for message in done.context["messages"]]
    assert any(n.startswith(f"Transfer {row.pk} re-queued as reversal_pending") for n in notes)
    assert any(f"transfer {final.pk}" in n and "refunded in full" in n for n in notes)
    row.refresh_from_db()
    assert row.status == TransferStatus.REVERSED  # the drain woken after commit reversed it
    final.refresh_from_db()
    assert final.status == TransferStatus.PERMANENTLY_FAILED


def test_the_admin_action_is_not_offered_without_the_permission(client):
    client.force_login(UserFactory(is_staff=True))
    user = UserFactory(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_sellertransfer"))
    client.force_login(user)

    page = client.get(reverse("admin:payouts_sellertransfer_changelist"))

    assert page.status_code == 200
    assert b"requeue_given_up" not in page.content
