"""The console's pages as an operator meets them: "/" opens the console, every page has an
icon, a paid order is a view page (no Save, no Delete), a transfer's page and its audit trail
show money as money, the ledger's lines carry their sign, and a row's page offers the actions
that apply to it, each opening its confirmation page first."""

import pytest
from django.urls import reverse

import ledger.services
from marketplace.models import Order
from payouts.transfer.moves import book_ref
from payouts.transfer.transitions import TransferStatus
from tests.factories import (
    OrderFactory,
    OrderItemFactory,
    PaidOrderFactory,
    SellerTransferEventFactory,
    SellerTransferFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_the_sites_root_and_view_site_open_the_console(staff):
    response = staff.get("/")

    assert response.status_code == 302 and response.url == reverse("admin:index")
    assert 'href="/"' in staff.get(reverse("admin:index")).content.decode()  # "View site"


def test_every_console_page_names_its_icon(staff):
    page = staff.get(reverse("admin:index")).content.decode()

    assert '<link rel="icon" type="image/svg+xml" href="/static/console/favicon.svg">' in page


def test_a_paid_order_is_a_view_page_without_save_or_delete(staff):
    order = PaidOrderFactory()
    OrderItemFactory(order=order)

    page = staff.get(reverse("admin:marketplace_order_change", args=[order.pk])).content.decode()
    delete = staff.get(reverse("admin:marketplace_order_delete", args=[order.pk]))

    assert "View order" in page and "Change order" not in page
    assert 'name="_save"' not in page and "deletelink" not in page
    assert delete.status_code == 403
    assert Order.objects.filter(pk=order.pk).exists()


def test_an_order_not_paid_yet_can_still_be_edited(staff):
    order = OrderFactory()

    page = staff.get(reverse("admin:marketplace_order_change", args=[order.pk])).content.decode()

    assert 'name="_save"' in page


def test_a_transfers_page_shows_every_amount_as_money_and_nothing_raw_under_more(staff):
    row = SellerTransferFactory(
        completed=True, dispute_target=450, amount_returned=120, amount_to_give_back=30
    )
    SellerTransferEventFactory(transfer=row, detail={"refund_target": 1800, "attempt": 2})

    page = staff.get(reverse("admin:payouts_sellertransfer_change", args=[row.pk])).content.decode()

    assert "4.50 USD" in page and "1.20 USD" in page and "0.30 USD" in page
    assert "refund_target: <span" in page and "18.00 USD" in page  # the audit detail
    assert "attempt: 2" in page
    assert ">More<" not in page


def test_the_ledger_list_signs_each_line(staff):
    row = SellerTransferFactory(status=TransferStatus.REVERSAL_REFUSED)
    ledger.services.post_refund_share(book_ref(row, "scenario"), previous_target=0, target=1800)

    page = staff.get(reverse("admin:ledger_entry_changelist")).content.decode()

    assert "+18.00 USD" in page and "-18.00 USD" in page


@pytest.mark.parametrize(
    ("fields", "offered"),
    [
        ({"status": TransferStatus.FAILED}, ["retry_failed"]),
        (
            {"status": TransferStatus.PERMANENTLY_FAILED, "end_reason": "retries_exhausted"},
            ["requeue_given_up"],
        ),
        ({"completed": True}, []),
    ],
)
def test_a_transfers_page_offers_the_actions_that_apply_to_it(staff, fields, offered):
    row = SellerTransferFactory(**fields)

    page = staff.get(reverse("admin:payouts_sellertransfer_change", args=[row.pk]))

    assert [name for name, _ in page.context["page_actions"]] == offered


def test_a_page_action_opens_the_confirmation_and_changes_nothing(staff):
    order = PaidOrderFactory()
    OrderItemFactory(order=order, amount=5000)
    page = staff.get(reverse("admin:marketplace_order_change", args=[order.pk])).content.decode()
    assert 'data-action="refund_in_full"' in page

    confirm = staff.post(
        reverse("admin:marketplace_order_changelist"),
        {"action": "refund_in_full", "_selected_action": [order.pk], "index": "0"},
    )

    assert confirm.status_code == 200
    assert confirm.context["plan"][0].startswith(f"Order {order.pk}: refund 50.00 USD")
    assert not order.refunds.exists()


def test_refunding_a_disputed_order_says_on_the_confirmation_that_it_is_left_alone(staff):
    order = PaidOrderFactory()
    OrderItemFactory(order=order, amount=5000)
    order.disputes.create(
        stripe_dispute_id="dp_console", amount=5000, currency="usd", status="needs_response"
    )

    confirm = staff.post(
        reverse("admin:marketplace_order_changelist"),
        {"action": "refund_in_full", "_selected_action": [order.pk]},
    )

    [line] = confirm.context["plan"]
    assert line.startswith(f"Order {order.pk}: disputed (dp_console, needs_response)")
    assert "left alone" in line
