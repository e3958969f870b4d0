"""Links out: every Stripe id the admin shows opens where Stripe shows it: the Dashboard's test
pages for a test key, its live pages for a live key, and the local sandbox's own page of the
object when the service talks to the sandbox."""

import pytest
from django.urls import reverse

from console.stripe_links import stripe_url
from marketplace.models import Order
from stripe_sandbox.testing import SandboxControlError
from tests.factories import (
    PaidOrderFactory,
    RefundFactory,
    SellerFactory,
    SellerTransferFactory,
    UserFactory,
    WebhookEventFactory,
)

DASHBOARD = "https://dashboard.stripe.com"


@pytest.fixture
def live_key(settings):
    settings.STRIPE_USES_LOCAL_SANDBOX = False
    settings.STRIPE_SECRET_KEY = "sk_live_abc"


@pytest.fixture
def test_key(settings):
    settings.STRIPE_USES_LOCAL_SANDBOX = False
    settings.STRIPE_SECRET_KEY = "sk_test_abc"


@pytest.mark.parametrize(
    ("stripe_id", "page"),
    [
        ("tr_1Abc", "connect/transfers/tr_1Abc"),
        ("trr_1Abc", "search?query=trr_1Abc"),
        ("pi_1Abc", "payments/pi_1Abc"),
        ("ch_1Abc", "payments/ch_1Abc"),
        ("re_1Abc", "refunds/re_1Abc"),
        ("acct_1Abc", "connect/accounts/acct_1Abc"),
        ("dp_1Abc", "disputes/dp_1Abc"),
        ("evt_1Abc", "events/evt_1Abc"),
    ],
)
def test_each_kind_of_id_opens_its_dashboard_page_in_the_keys_mode(settings, stripe_id, page):
    settings.STRIPE_USES_LOCAL_SANDBOX = False
    expected = {
        "sk_live_abc": f"{DASHBOARD}/{page}",
        "rk_live_abc": f"{DASHBOARD}/{page}",
        "sk_test_abc": f"{DASHBOARD}/test/{page}",
        "rk_test_abc": f"{DASHBOARD}/test/{page}",
    }
    for key, url in expected.items():
        settings.STRIPE_SECRET_KEY = key
        assert stripe_url(stripe_id) == url, key


def test_with_the_local_sandbox_an_id_opens_the_sandboxs_page_of_it(settings):
    settings.STRIPE_USES_LOCAL_SANDBOX = True
    settings.SANDBOX_URL = "http://127.0.0.1:12111/"

    assert stripe_url("tr_1Abc") == "http://127.0.0.1:12111/_sandbox/objects/tr_1Abc"


@pytest.mark.parametrize("value", ["", "not an id", "cus_1Abc", "tr_", "tr_1Abc/../x"])
def test_what_is_not_a_stripe_id_we_link_gets_no_link(test_key, value):
    assert stripe_url(value) is None


@pytest.fixture
def staff(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def href(stripe_id: str, *, test: bool = True) -> str:
    return f'href="{stripe_url(stripe_id)}"'


@pytest.mark.django_db
def test_the_transfer_page_links_its_transfer_reversal_and_sellers_account(staff, test_key):
    transfer = SellerTransferFactory(
        status="reversed", stripe_transfer_id="tr_1Page", stripe_reversal_id="trr_1Page"
    )

    page = staff.get(reverse("admin:payouts_sellertransfer_change", args=[transfer.pk]))
    listed = staff.get(reverse("admin:payouts_sellertransfer_changelist"))

    for response in (page, listed):
        content = response.content.decode()
        assert f'href="{DASHBOARD}/test/connect/transfers/tr_1Page"' in content
        assert f'href="{DASHBOARD}/test/search?query=trr_1Page"' in content


@pytest.mark.django_db
def test_the_order_page_links_the_payment_the_charge_and_the_refunds(staff, live_key):
    order = PaidOrderFactory(
        status=Order.Status.REFUNDED, stripe_payment_intent_id="pi_1O", stripe_charge_id="ch_1O"
    )
    RefundFactory(order=order, stripe_refund_id="re_1O")

    page = staff.get(reverse("admin:marketplace_order_change", args=[order.pk])).content.decode()

    for path in ("payments/pi_1O", "payments/ch_1O", "refunds/re_1O"):
        assert f'href="{DASHBOARD}/{path}"' in page


@pytest.mark.django_db
def test_the_lists_link_refunds_accounts_book_entries_and_inbox_events(staff, test_key):
    RefundFactory(stripe_refund_id="re_1List")
    SellerFactory(stripe_account_id="acct_1List")
    WebhookEventFactory(stripe_event_id="evt_1List")

    pages = {
        "admin:marketplace_refund_changelist": "refunds/re_1List",
        "admin:marketplace_seller_changelist": "connect/accounts/acct_1List",
        "admin:payouts_webhookevent_changelist": "events/evt_1List",
    }
    for name, path in pages.items():
        content = staff.get(reverse(name)).content.decode()
        assert f'href="{DASHBOARD}/test/{path}"' in content, name


def test_the_sandbox_shows_any_object_by_its_id_and_404_for_none(sandbox, stripe_client):
    account = stripe_client.v1.accounts.create(params={"type": "express"})
    transfer = stripe_client.v1.transfers.create(
        params={"amount": 900, "currency": "usd", "destination": account.id}
    )
    reversal = stripe_client.v1.transfers.reversals.create(transfer.id, params={"amount": 100})

    assert sandbox.object(transfer.id)["amount_reversed"] == 100
    assert sandbox.object(reversal.id)["object"] == "transfer_reversal"
    assert sandbox.object(account.id)["object"] == "account"
    with pytest.raises(SandboxControlError) as missing:
        sandbox.object("tr_nothing")
    assert missing.value.status == 404
