"""Hold and release: with ``TRANSFER_HOLD`` a paid order's sellers are paid only when it is
released (by staff, the marketplace, or when the hold ends); a refund during the hold reduces
what is paid instead of being sent and reversed, and a full refund cancels it."""

from dataclasses import replace
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission

from payouts.models import SellerTransfer
from payouts.services.holds import holds_release_due
from payouts.services.ledger_check import ledger_check
from payouts.transfer.transitions import HeldReason, TransferStatus
from tests.builders import make_event, paid_order, post_event, refund_at_stripe
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def seven_day_hold(settings):
    settings.PAYOUTS = replace(settings.PAYOUTS, transfer_hold=timedelta(days=7))


@pytest.fixture
def staff(client):
    user = UserFactory(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="release_sellertransfer"))
    client.force_login(user)
    return user


def refund(client, stripe_client, order, amount, capture):
    event = make_event("refund.created", refund_at_stripe(stripe_client, order, amount))
    with capture(execute=True):
        assert post_event(client, event).status_code == 200


def release(client, order, capture):
    with capture(execute=True):
        return client.post(
            f"/api/admin/orders/{order.pk}/release/", content_type="application/json"
        )


def test_a_paid_order_on_hold_sends_nothing(client, sandbox, stripe_client, seven_day_hold):
    order, rows = paid_order(stripe_client, [1000, 2000], webhook=client)

    assert {(row.status, row.held_reason) for row in rows} == {
        (TransferStatus.HELD, HeldReason.AWAITING_RELEASE)
    }
    assert sandbox.state()["transfers"] == []
    assert ledger_check()[1] == []


def test_a_partial_refund_during_the_hold_reverses_nothing_and_release_pays_what_remains(
    client, sandbox, stripe_client, seven_day_hold, staff, django_capture_on_commit_callbacks
):
    order, _ = paid_order(stripe_client, [1000, 3000], webhook=client)
    refund(client, stripe_client, order, 2000, django_capture_on_commit_callbacks)
    assert sandbox.calls("reversals.create") == []

    response = release(client, order, django_capture_on_commit_callbacks)

    assert response.status_code == 200, response.content
    rows = SellerTransfer.objects.filter(order=order).order_by("amount")
    assert [(row.status, row.amount, row.amount_withheld) for row in rows] == [
        (TransferStatus.COMPLETED, 900, 450),
        (TransferStatus.COMPLETED, 2700, 1350),
    ]
    sent = sorted(t["amount"] for t in sandbox.state()["transfers"])
    assert sent == [450, 1350]  # half of each seller's share: half the order was refunded
    assert sandbox.calls("reversals.create") == []
    assert ledger_check()[1] == []


def test_after_release_a_later_refund_reverses_only_what_was_sent(
    client, sandbox, stripe_client, seven_day_hold, staff, django_capture_on_commit_callbacks
):
    order, _ = paid_order(stripe_client, [1000, 3000], webhook=client)
    refund(client, stripe_client, order, 2000, django_capture_on_commit_callbacks)
    release(client, order, django_capture_on_commit_callbacks)

    refund(client, stripe_client, order, None, django_capture_on_commit_callbacks)

    rows = SellerTransfer.objects.filter(order=order).order_by("amount")
    assert [(row.status, row.amount_reversed) for row in rows] == [
        (TransferStatus.REVERSED, 450),
        (TransferStatus.REVERSED, 1350),
    ]
    assert ledger_check()[1] == []


def test_a_full_refund_during_the_hold_means_nothing_is_ever_sent(
    client, sandbox, stripe_client, seven_day_hold, staff, django_capture_on_commit_callbacks
):
    order, _ = paid_order(stripe_client, [1000, 3000], webhook=client)

    refund(client, stripe_client, order, None, django_capture_on_commit_callbacks)
    response = release(client, order, django_capture_on_commit_callbacks)

    assert response.status_code == 409
    assert "refunded in full" in response.json()["detail"]
    statuses = set(SellerTransfer.objects.filter(order=order).values_list("status", "end_reason"))
    assert statuses == {(TransferStatus.PERMANENTLY_FAILED, "order_refunded")}
    assert sandbox.state()["transfers"] == []
    assert ledger_check()[1] == []


def test_the_hold_ends_by_itself_when_its_time_comes(
    client, sandbox, stripe_client, seven_day_hold, django_capture_on_commit_callbacks
):
    order, rows = paid_order(stripe_client, [2000], webhook=client)
    SellerTransfer.objects.filter(order=order).update(next_retry_at=rows[0].created_at)

    with django_capture_on_commit_callbacks(execute=True):
        summary = holds_release_due()

    assert summary == {"released": 1}
    assert SellerTransfer.objects.get(pk=rows[0].pk).status == TransferStatus.COMPLETED


@pytest.mark.parametrize("situation", ["unpaid", "released twice"])
def test_releasing_an_order_with_nothing_held_answers_409_with_a_message(
    client, sandbox, stripe_client, seven_day_hold, staff, situation,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    if situation == "unpaid":
        order, _ = paid_order(stripe_client, [2000], mark_paid=False)
    else:
        order, _ = paid_order(stripe_client, [2000], webhook=client)
    if situation == "released twice":
        assert release(client, order, django_capture_on_commit_callbacks).status_code == 200

    response = release(client, order, django_capture_on_commit_callbacks)

    assert response.status_code == 409
    assert response.json()["code"] == "nothing_to_release"
    assert "nothing" in response.json()["detail"] or "no transfer" in response.json()["detail"]


def test_releasing_needs_the_release_permission(client, sandbox, stripe_client, seven_day_hold):
    order, _ = paid_order(stripe_client, [2000], webhook=client)
    client.force_login(UserFactory(is_staff=True))

    assert (
        client.post(
            f"/api/admin/orders/{order.pk}/release/", content_type="application/json"
        ).status_code
        == 403
    )


def test_staff_release_an_order_from_the_admin(
    client, sandbox, stripe_client, seven_day_hold, django_capture_on_commit_callbacks
):
    order, [row] = paid_order(stripe_client, [2000], webhook=client)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))

    chosen = {"action": "release_held", "_selected_action": [str(order.pk)]}
    confirm = client.post("/admin/marketplace/order/", chosen)
    assert confirm.status_code == 200
    assert confirm.context["plan"] == [
        f"Order {order.pk}: send 18.00 USD to {row.seller.name} (seller {row.seller.pk}, "
        f"{row.seller.stripe_account_id}) now (transfer {row.pk})."
    ]
    assert (
        SellerTransfer.objects.get(pk=row.pk).status == TransferStatus.HELD
    )  # nothing before confirming
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/marketplace/order/", {**chosen, "apply": "1"}, follow=True)

    messages = [str(message) for message in response.context["messages"]]
    assert messages == [
        f"Order {order.pk}: released 1 transfer(s), sending 18.00 USD to {row.seller.name}."
    ]
    assert SellerTransfer.objects.get(pk=row.pk).status == TransferStatus.COMPLETED
