"""Staff refunding an order: through the staff API or the admin action, the refund is created at
Stripe; its webhook completes it and schedules each seller's share for reversal."""

import pytest
from django.contrib.auth.models import Permission

from marketplace.models import Order, Refund
from tests.builders import make_event, post_event
from tests.factories import OrderItemFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def refunder(db):
    user = UserFactory(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="refund_order"))
    return user


def refund_request(client, user, order, payload=None):
    client.force_login(user)
    return client.post(
        f"/api/admin/orders/{order.pk}/refund/", payload or {}, content_type="application/json"
    )


def test_a_staff_refund_is_created_at_stripe_and_completed_by_its_webhook(
    client, sandbox, stripe_client, three_seller_order, refunder
):
    response = refund_request(client, refunder, three_seller_order, {"amount": 1000})

    assert response.status_code == 202, response.content
    refund = Refund.objects.get(pk=response.json()["id"])
    assert refund.status == Refund.Status.PENDING
    assert refund.stripe_refund_id.startswith("re_")
    [call] = sandbox.calls("refunds.create")
    assert call["idempotency_key"] == refund.stripe_idempotency_key
    stripe_refund = stripe_client.v1.refunds.retrieve(refund.stripe_refund_id).to_dict()

    post_event(client, make_event("refund.created", stripe_refund))

    refund.refresh_from_db()
    assert refund.status == Refund.Status.SUCCEEDED
    assert Refund.objects.filter(order=three_seller_order).count() == 1
    rows = three_seller_order.transfers.order_by("pk")
    assert [r.reversal_target for r in rows] == [142, 284, 474]


@pytest.mark.parametrize("amount", [6334, 0, -5, "ten"])
def test_an_over_or_malformed_refund_is_refused_with_400_and_changes_nothing(
    client, sandbox, three_seller_order, refunder, amount
):
    response = refund_request(client, refunder, three_seller_order, {"amount": amount})

    assert response.status_code == 400, response.content
    assert Refund.objects.count() == 0
    assert sandbox.calls("refunds.create") == []


def test_refunding_more_than_what_is_left_after_a_refund_is_refused(
    client, sandbox, three_seller_order, refunder
):
    assert refund_request(client, refunder, three_seller_order, {"amount": 6000}).status_code == 202

    response = refund_request(client, refunder, three_seller_order, {"amount": 334})

    assert response.status_code == 400
    assert "333" in response.json()["detail"]
    assert len(sandbox.calls("refunds.create")) == 1


def test_refunding_needs_the_refund_permission(client, sandbox, three_seller_order):
    staff = UserFactory(is_staff=True)

    response = refund_request(client, staff, three_seller_order)

    assert response.status_code == 403
    assert Refund.objects.count() == 0


def test_a_refund_of_an_order_not_yet_paid_is_refused(client, sandbox, refunder):
    order = OrderItemFactory().order

    assert refund_request(client, refunder, order).status_code == 400


def test_a_refund_of_an_unknown_order_answers_404(client, sandbox, refunder):
    assert refund_request(client, refunder, Order(pk=99_999)).status_code == 404


def test_the_admin_action_refunds_an_order_in_full_at_stripe(
    client, sandbox, three_seller_order, refunder
):
    refunder.is_superuser = True
    refunder.save()
    client.force_login(refunder)

    chosen = {"action": "refund_in_full", "_selected_action": [three_seller_order.pk]}
    confirm = client.post("/admin/marketplace/order/", chosen)

    assert confirm.status_code == 200  # a confirmation first, and nothing refunded yet
    [plan] = confirm.context["plan"]
    assert plan.startswith(
        f"Order {three_seller_order.pk}: refund 63.33 USD to the buyer "
        f"{three_seller_order.buyer_email} at Stripe, all that is left of 63.33 USD"
    )
    assert not Refund.objects.filter(order=three_seller_order).exists()
    assert sandbox.calls("refunds.create") == []

    response = client.post("/admin/marketplace/order/", {**chosen, "apply": "1"})

    assert response.status_code == 302
    refund = Refund.objects.get(order=three_seller_order)
    assert (refund.amount, refund.status) == (6333, Refund.Status.PENDING)
    assert refund.stripe_refund_id.startswith("re_")
    assert len(sandbox.calls("refunds.create")) == 1


def test_the_admin_refund_action_is_hidden_without_the_permission(
    client, sandbox, three_seller_order
):
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_order"))
    client.force_login(staff)

    page = client.get("/admin/marketplace/order/")

    assert page.status_code == 200
    assert b"refund_in_full" not in page.content
