"""The Django admin as operations use it: the transfer list with its filters and
search, read-only statuses, and the order page showing its transfers. Through the test client,
logged in as a superuser."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from marketplace.models import Order
from payouts.models import SellerTransfer
from payouts.transfer.transitions import TransferStatus
from tests.factories import (
    OrderItemFactory,
    PaidOrderFactory,
    RefundFactory,
    SellerFactory,
    SellerTransferFactory,
    WebhookEventFactory,
)

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:payouts_sellertransfer_changelist")


def shown(response) -> set[int]:
    assert response.status_code == 200, response.content[:500]
    return {row.pk for row in response.context["cl"].result_list}


def touched(transfer: SellerTransfer, ago: timedelta) -> SellerTransfer:
    # update() skips auto_now: the only way to give a row an old updated_at.
    SellerTransfer.objects.filter(pk=transfer.pk).update(updated_at=timezone.now() - ago)
    return transfer


@pytest.fixture
def rows():
    """One transfer per situation the "needs attention" filter must tell apart."""
    return {
        "permanently_failed": SellerTransferFactory(
            status=TransferStatus.PERMANENTLY_FAILED, error_message="Stripe 404 resource_missing"
        ),
        "stale_reversal": touched(
            SellerTransferFactory(reversal_due=True), ago=timedelta(minutes=31)
        ),
        "fresh_reversal": touched(
            SellerTransferFactory(reversal_due=True), ago=timedelta(minutes=29)
        ),
        "old_completed": touched(SellerTransferFactory(completed=True), ago=timedelta(days=3)),
        "failed": SellerTransferFactory(status=TransferStatus.FAILED, next_retry_at=timezone.now()),
        "reversed": SellerTransferFactory(
            status=TransferStatus.REVERSED,
            stripe_transfer_id="tr_done",
            stripe_reversal_id="trr_done",
        ),
    }


def pks(rows, *names) -> set[int]:
    return {rows[name].pk for name in names}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"attention": "any"}, ("permanently_failed", "stale_reversal", "failed")),
        ({"attention": "failing_now"}, ("failed",)),
        ({"attention": "permanently_failed"}, ("permanently_failed",)),
        ({"attention": "stale_reversal"}, ("stale_reversal",)),
    ],
)
def test_needs_attention_selects_permanent_failures_and_reversals_stuck_for_30_minutes(
    admin_client, rows, query, expected
):
    assert shown(admin_client.get(CHANGELIST, query)) == pks(rows, *expected)


def test_an_unknown_attention_value_is_refused_like_any_bad_filter(admin_client, rows):
    response = admin_client.get(CHANGELIST, {"attention": "whatever"})

    assert response.status_code == 302
    assert response.url.endswith("?e=1")


@pytest.mark.parametrize("status", list(TransferStatus))
def test_the_status_filter_shows_only_that_status(admin_client, rows, status):
    expected = {row.pk for row in rows.values() if row.status == status}

    assert shown(admin_client.get(CHANGELIST, {"status": status})) == expected


def test_the_unfiltered_list_shows_every_row_with_its_operations_columns(admin_client, rows):
    response = admin_client.get(CHANGELIST)

    assert shown(response) == {row.pk for row in rows.values()}
    headers = response.content.decode()
    for column in ("stripe_ids", "attempts", "money_line", "reason"):
        assert f"column-{column}" in headers


@pytest.fixture
def searchable():
    seller = SellerFactory(name="Kiln and Co", email="hello@kiln.example")
    order = PaidOrderFactory(stripe_payment_intent_id="pi_searchme", stripe_charge_id="ch_searchme")
    transfer = SellerTransferFactory(
        order=order,
        seller=seller,
        status=TransferStatus.REVERSED,
        stripe_transfer_id="tr_searchme",
        stripe_reversal_id="trr_searchme",
    )
    RefundFactory(order=order, stripe_refund_id="re_searchme")
    SellerTransferFactory.create_batch(3, completed=True)  # noise
    return transfer


@pytest.mark.parametrize(
    "term",
    [
        "tr_searchme",
        "trr_searchme",
        "ch_searchme",
        "pi_searchme",
        "re_searchme",
        "Kiln",
        "hello@kiln.example",
    ],
)
def test_search_finds_a_transfer_by_any_stripe_id_or_its_seller(admin_client, searchable, term):
    assert shown(admin_client.get(CHANGELIST, {"q": term})) == {searchable.pk}


def test_search_finds_a_transfer_by_its_order_id(admin_client, searchable):
    # A number also matches inside text columns (seller104@…), so only inclusion is certain.
    assert searchable.pk in shown(admin_client.get(CHANGELIST, {"q": str(searchable.order_id)}))


def test_search_finds_a_transfer_by_its_sellers_connected_account(admin_client, searchable):
    term = searchable.seller.stripe_account_id

    assert shown(admin_client.get(CHANGELIST, {"q": term})) == {searchable.pk}


def test_the_change_page_shows_status_and_money_without_any_input_for_them(admin_client):
    transfer = SellerTransferFactory(completed=True)
    transfer.events.create(
        from_status=TransferStatus.PENDING,
        to_status=TransferStatus.COMPLETED,
        caused_by="worker:test",
    )

    response = admin_client.get(reverse("admin:payouts_sellertransfer_change", args=[transfer.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert transfer.stripe_transfer_id in page
    assert "worker:test" in page  # the audit trail inline
    for field in ("status", "amount", "amount_reversed", "stripe_transfer_id", "next_retry_at"):
        assert f'name="{field}"' not in page
    assert response.context["adminform"].form.fields == {}


def test_posting_a_status_to_the_change_page_changes_nothing(admin_client):
    transfer = SellerTransferFactory(status=TransferStatus.FAILED, next_retry_at=timezone.now())

    admin_client.post(
        reverse("admin:payouts_sellertransfer_change", args=[transfer.pk]),
        {"status": TransferStatus.COMPLETED, "stripe_transfer_id": "tr_forged"},
    )

    transfer.refresh_from_db()
    assert (transfer.status, transfer.stripe_transfer_id) == (TransferStatus.FAILED, "")


def test_transfers_cannot_be_added_or_deleted_in_the_admin(admin_client):
    transfer = SellerTransferFactory()

    assert admin_client.get(reverse("admin:payouts_sellertransfer_add")).status_code == 403
    delete = reverse("admin:payouts_sellertransfer_delete", args=[transfer.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert SellerTransfer.objects.filter(pk=transfer.pk).exists()


def test_the_order_page_shows_items_refunds_and_transfers_read_only(admin_client):
    order = PaidOrderFactory(status=Order.Status.REFUNDED)
    item = OrderItemFactory(order=order, description="Stoneware mug")
    RefundFactory(order=order, stripe_refund_id="re_onthepage")
    transfer = SellerTransferFactory(
        order=order,
        seller=item.seller,
        status=TransferStatus.REVERSED,
        stripe_transfer_id="tr_onthepage",
        stripe_reversal_id="trr_onthepage",
    )

    response = admin_client.get(reverse("admin:marketplace_order_change", args=[order.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    for text in ("Stoneware mug", "re_onthepage", "tr_onthepage", "trr_onthepage"):
        assert text in page
    assert reverse("admin:payouts_sellertransfer_change", args=[transfer.pk]) in page
    # Money already moved: neither the order's status nor its items or transfers are inputs.
    assert 'name="status"' not in page
    assert 'name="transfers-0-status"' not in page
    assert 'name="items-0-amount"' not in page


def test_a_pending_orders_items_stay_editable(admin_client):
    order = OrderItemFactory().order

    response = admin_client.get(reverse("admin:marketplace_order_change", args=[order.pk]))

    assert 'name="items-0-amount"' in response.content.decode()


def test_refunds_are_read_only_in_the_admin(admin_client):
    refund = RefundFactory()

    response = admin_client.get(reverse("admin:marketplace_refund_change", args=[refund.pk]))

    assert response.status_code == 200
    assert 'name="status"' not in response.content.decode()
    assert 'name="amount"' not in response.content.decode()
    assert admin_client.get(reverse("admin:marketplace_refund_add")).status_code == 403


def test_the_webhook_inbox_lists_events_and_offers_the_replay_action(admin_client):
    event = WebhookEventFactory(outcome="failed", error="WebhookRejected: no order")

    response = admin_client.get(
        reverse("admin:payouts_webhookevent_changelist"), {"outcome": "failed"}
    )

    assert shown(response) == {event.pk}
    assert "replay" in dict(
        response.context["cl"].model_admin.get_action_choices(response.wsgi_request)
    )
