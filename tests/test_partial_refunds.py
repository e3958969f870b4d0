"""Partial refunds, staff refunds and reconciliation with Stripe."""

from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command

from marketplace.models import Order, Refund
from payouts import tasks
from payouts.models import SellerTransfer
from payouts.services.refund_shares import proportional_targets
from payouts.transitions import TransferStatus
from tests.factories import OrderFactory, OrderItemFactory, UserFactory
from tests.stripe_events import make_event, post_event
from tests.test_paying_sellers import connected_seller, paid_intent

S = TransferStatus


@pytest.mark.parametrize(
    ("refunded", "total", "amounts"),
    [
        (1000, 6333, {1: 900, 2: 1800, 3: 3000}),
        (1, 6333, {1: 900, 2: 1800, 3: 3000}),
        (3167, 6333, {1: 900, 2: 1800, 3: 3000}),
        (999, 1000, {1: 333, 2: 333, 3: 334}),
        (6333, 6333, {1: 900, 2: 1800, 3: 3000}),
    ],
)
def test_shares_add_up_exactly_and_never_exceed_an_amount(refunded, total, amounts):
    shares = proportional_targets(refunded=refunded, order_total=total, amounts=amounts)

    exact_total = refunded * sum(amounts.values()) / total
    assert sum(shares.values()) == int(exact_total + 0.5)
    assert all(0 <= shares[pk] <= amounts[pk] for pk in amounts)
    assert all(abs(shares[pk] - refunded * amounts[pk] / total) < 1 for pk in amounts)


def test_a_full_refund_targets_every_whole_amount():
    amounts = {1: 900, 2: 1800, 3: 3000}

    assert proportional_targets(refunded=6333, order_total=6333, amounts=amounts) == amounts


@pytest.fixture
def three_seller_order(client, sandbox, stripe_client):
    """Items of 1,000 / 2,000 / 3,333 cents, paid: transfers of 900 / 1,800 / 3,000."""
    order = OrderFactory()
    for amount in (1000, 2000, 3333):
        OrderItemFactory(order=order, seller=connected_seller(stripe_client), amount=amount)
    response = post_event(
        client, make_event("payment_intent.succeeded", paid_intent(stripe_client, order))
    )
    assert response.status_code == 200, response.content
    order.refresh_from_db()
    assert sorted(order.transfers.values_list("amount", flat=True)) == [900, 1800, 3000]
    return order


def refund_event(stripe_client, order: Order, amount: int) -> dict:
    refund = stripe_client.v1.refunds.create(
        params={"payment_intent": order.stripe_payment_intent_id, "amount": amount}
    ).to_dict()
    return make_event("refund.updated", refund)


def reversed_amounts(order: Order) -> list[int]:
    return list(order.transfers.order_by("pk").values_list("amount_reversed", flat=True))


def sandbox_reversals(sandbox, order: Order) -> dict[str, list[int]]:
    ours = set(order.transfers.values_list("stripe_transfer_id", flat=True))
    by_transfer: dict[str, list[int]] = {}
    for reversal in sandbox.state()["transfer_reversals"]:
        if reversal["transfer"] in ours:
            by_transfer.setdefault(reversal["transfer"], []).append(reversal["amount"])
    return by_transfer


@pytest.mark.django_db(transaction=True)
def test_three_partial_refunds_then_the_rest_reverse_proportionally_to_the_full_amounts(
    client, sandbox, stripe_client, three_seller_order
):
    order = three_seller_order
    steps = []
    for amount in (1000, 2000, 1333, 2000):
        assert post_event(client, refund_event(stripe_client, order, amount)).status_code == 200
        tasks.process_reversals()
        steps.append(reversed_amounts(order))

    assert steps == [[142, 284, 474], [426, 853, 1421], [616, 1231, 2053], [900, 1800, 3000]]
    assert set(order.transfers.values_list("status", flat=True)) == {S.REVERSED}
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    at_stripe = sandbox_reversals(sandbox, order)
    assert sum(sum(parts) for parts in at_stripe.values()) == 900 + 1800 + 3000
    for row in order.transfers.all():
        assert sum(at_stripe[row.stripe_transfer_id]) == row.amount  # never beyond its amount
        assert len(at_stripe[row.stripe_transfer_id]) == 4


@pytest.mark.django_db(transaction=True)
def test_partially_reversed_rows_wait_for_the_next_refund(
    client, sandbox, stripe_client, three_seller_order
):
    post_event(client, refund_event(stripe_client, three_seller_order, 1000))

    tasks.process_reversals()

    rows = three_seller_order.transfers.all()
    assert {r.status for r in rows} == {S.PARTIALLY_REVERSED}
    assert all(r.next_retry_at is None for r in rows)
    assert tasks.process_reversals() == {}


@pytest.mark.django_db(transaction=True)
def test_duplicated_out_of_order_refunds_end_with_the_same_totals(
    client, sandbox, stripe_client, three_seller_order
):
    events = [refund_event(stripe_client, three_seller_order, a) for a in (1000, 2000)]

    for event in [events[1], events[0], events[1], events[0]]:
        assert post_event(client, event).status_code == 200
    tasks.process_reversals()

    expected = proportional_targets(
        refunded=3000,
        order_total=6333,
        amounts=dict(three_seller_order.transfers.values_list("pk", "amount")),
    )
    assert dict(three_seller_order.transfers.values_list("pk", "amount_reversed")) == expected
    assert Refund.objects.filter(order=three_seller_order).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_refund_arriving_while_a_reversal_is_pending_adds_to_it(
    client, sandbox, stripe_client, three_seller_order
):
    post_event(client, refund_event(stripe_client, three_seller_order, 1000))
    post_event(client, refund_event(stripe_client, three_seller_order, 2000))

    rows = list(three_seller_order.transfers.order_by("pk"))
    assert {r.status for r in rows} == {S.REVERSAL_PENDING}
    assert [r.reversal_target for r in rows] == [426, 853, 1421]
    tasks.process_reversals()

    assert reversed_amounts(three_seller_order) == [426, 853, 1421]
    assert all(len(parts) == 1 for parts in sandbox_reversals(sandbox, three_seller_order).values())


@pytest.mark.django_db(transaction=True)
def test_a_dashboard_reversal_is_reflected_after_its_webhook(
    client, sandbox, stripe_client, three_seller_order
):
    row = three_seller_order.transfers.order_by("pk").first()
    sandbox.reverse_out_of_band(row.stripe_transfer_id, 300)
    event = sandbox.events("transfer.reversed")[-1]
    reversals_before = len(sandbox.calls("reversals.create"))

    assert post_event(client, event).status_code == 200
    row.refresh_from_db()
    assert (row.status, row.amount_reversed) == (S.REVERSAL_PENDING, 300)
    tasks.process_reversals()

    row.refresh_from_db()
    assert (row.status, row.amount_reversed) == (S.PARTIALLY_REVERSED, 300)
    assert len(sandbox.calls("reversals.create")) == reversals_before  # no money moved by us


@pytest.mark.django_db(transaction=True)
def test_a_transfer_reversed_webhook_for_our_own_reversal_changes_nothing(
    client, sandbox, stripe_client, three_seller_order
):
    post_event(client, refund_event(stripe_client, three_seller_order, 6333))
    tasks.process_reversals()
    before = list(three_seller_order.transfers.values_list("status", "amount_reversed"))

    for event in sandbox.events("transfer.reversed"):
        assert post_event(client, event).status_code == 200

    after = list(three_seller_order.transfers.values_list("status", "amount_reversed"))
    assert after == before


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


@pytest.mark.django_db(transaction=True)
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


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("amount", [6334, 0, -5, "ten"])
def test_an_over_or_malformed_refund_is_refused_with_400_and_changes_nothing(
    client, sandbox, three_seller_order, refunder, amount
):
    response = refund_request(client, refunder, three_seller_order, {"amount": amount})

    assert response.status_code == 400, response.content
    assert Refund.objects.count() == 0
    assert sandbox.calls("refunds.create") == []


@pytest.mark.django_db(transaction=True)
def test_refunding_more_than_what_is_left_after_a_refund_is_refused(
    client, sandbox, three_seller_order, refunder
):
    assert refund_request(client, refunder, three_seller_order, {"amount": 6000}).status_code == 202

    response = refund_request(client, refunder, three_seller_order, {"amount": 334})

    assert response.status_code == 400
    assert "333" in response.json()["detail"]
    assert len(sandbox.calls("refunds.create")) == 1


@pytest.mark.django_db(transaction=True)
def test_refunding_needs_the_refund_permission(client, sandbox, three_seller_order):
    staff = UserFactory(is_staff=True)

    response = refund_request(client, staff, three_seller_order)

    assert response.status_code == 403
    assert Refund.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_refund_of_an_order_not_yet_paid_is_refused(client, sandbox, refunder):
    order = OrderFactory()
    OrderItemFactory(order=order)

    assert refund_request(client, refunder, order).status_code == 400
    assert refund_request(client, refunder, Order(pk=99_999)).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_a_seller_paid_after_a_partial_refund_has_their_share_reversed(
    client, sandbox, stripe_client
):
    order = OrderFactory()
    late = connected_seller(stripe_client)
    OrderItemFactory(order=order, seller=connected_seller(stripe_client), amount=1000)
    OrderItemFactory(order=order, seller=late, amount=1000)
    sandbox.script("transfers.create", [{"action": "error_500"}])  # the first seller's transfer
    post_event(client, make_event("payment_intent.succeeded", paid_intent(stripe_client, order)))
    order.refresh_from_db()
    post_event(client, refund_event(stripe_client, order, 1000))
    unpaid = SellerTransfer.objects.get(order=order, status=S.FAILED)
    SellerTransfer.objects.filter(pk=unpaid.pk).update(next_retry_at="2000-01-01T00:00:00Z")

    tasks.retry_failed_transfers()

    unpaid.refresh_from_db()
    assert unpaid.status == S.REVERSAL_PENDING
    assert unpaid.reversal_target == 450  # half the order refunded, of 900


@pytest.mark.django_db(transaction=True)
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
    tasks.process_reversals()

    row.refresh_from_db()
    assert (row.status, row.amount_reversed) == (S.PARTIALLY_REVERSED, 250)
    assert len(sandbox.calls("reversals.create")) == reversals_before
    follow_up = StringIO()
    call_command("reconcile_transfers", stdout=follow_up)
    assert follow_up.getvalue().strip().endswith("0 difference(s)")


@pytest.mark.django_db(transaction=True)
def test_the_admin_action_refunds_an_order_in_full_at_stripe(
    client, sandbox, three_seller_order, refunder
):
    refunder.is_superuser = True
    refunder.save()
    client.force_login(refunder)

    response = client.post(
        "/admin/marketplace/order/",
        {"action": "refund_in_full", "_selected_action": [three_seller_order.pk]},
    )

    assert response.status_code == 302
    refund = Refund.objects.get(order=three_seller_order)
    assert (refund.amount, refund.status) == (6333, Refund.Status.PENDING)
    assert refund.stripe_refund_id.startswith("re_")
    assert len(sandbox.calls("refunds.create")) == 1


@pytest.mark.django_db(transaction=True)
def test_the_admin_refund_action_is_hidden_without_the_permission(
    client, sandbox, three_seller_order
):
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_order"))
    client.force_login(staff)

    page = client.get("/admin/marketplace/order/")

    assert page.status_code == 200
    assert b"refund_in_full" not in page.content
