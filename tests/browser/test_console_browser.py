"""The operator's console in a real browser, against the live server and the Stripe sandbox:
log in, read the dashboard and check its figures against the database, open "needs attention",
retry a failed transfer from there and see it paid, open a transfer and follow its Stripe link.
Each step leaves a screenshot in the folder printed at the start of the run."""

import json
import re
from datetime import timedelta

import pytest
from django.db.models import F, Sum
from django.utils import timezone

from config.money import format_money
from ledger.selectors import seller_balances
from payouts.models import SellerTransfer
from payouts.transfer.transitions import TransferStatus
from tests.builders import (
    STRIPE_500,
    make_event,
    paid_order,
    post_event,
    refund_at_stripe,
)

# The live server's thread has its own connection: the rows must be committed.
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def failed_for_an_hour(client, sandbox, stripe_client) -> SellerTransfer:
    """A seller whose payment Stripe refused with a 500 (through the real webhook and worker),
    made an hour ago: the seller has waited long enough to need a person."""
    sandbox.script("transfers.create", [STRIPE_500])
    _, [row] = paid_order(stripe_client, [2000], webhook=client)
    assert row.status == TransferStatus.FAILED, row.error_message
    SellerTransfer.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(hours=1))
    return row


def in_debt(client, sandbox, stripe_client) -> SellerTransfer:
    """A seller paid 1,800, paid out to their bank at once, then refunded in full: Stripe
    refuses the reversal for their balance and the 1,800 is their debt."""
    order, [row] = paid_order(stripe_client, [2000], webhook=client)
    sandbox.simulate_payout(row.seller.stripe_account_id, 1800, "usd")
    refund = make_event("refund.created", refund_at_stripe(stripe_client, order))
    assert post_event(client, refund).status_code == 200
    row.refresh_from_db()
    assert row.status == TransferStatus.REVERSAL_REFUSED
    return row


def figure(page, name: str) -> str:
    return page.locator(f'[data-figure="{name}"]').first.inner_text().strip()


def at_risk(page, key: str, currency: str) -> str:
    cell = page.locator(f'[data-risk="{key}"][data-currency="{currency}"] .money')
    return cell.inner_text().strip()


def test_staff_log_in_and_the_dashboard_figures_match_the_database(
    page, live_server, operator, client, sandbox, stripe_client, screenshots
):
    paid_order(stripe_client, [1000, 2000, 3333], webhook=client)
    failed_for_an_hour(client, sandbox, stripe_client)
    in_debt(client, sandbox, stripe_client)

    page.goto(f"{live_server.url}/admin/")
    page.screenshot(path=screenshots / "01-login.png")
    page.fill("#id_username", operator.username)
    page.fill("#id_password", "correct horse battery staple")
    page.click("input[type=submit]")
    page.wait_for_selector("#console-money")
    page.screenshot(path=screenshots / "02-dashboard.png", full_page=True)

    rows = SellerTransfer.objects
    failed = rows.filter(status=TransferStatus.FAILED)
    unsent = failed.aggregate(total=Sum(F("amount") - F("amount_netted") - F("amount_withheld")))
    debts = sum(
        seller_balances(seller_id=seller)["usd"]["debt"]
        for seller in rows.values_list("seller_id", flat=True).distinct()
    )
    assert at_risk(page, "transfers_failing", "usd") == format_money(unsent["total"], "usd")
    assert at_risk(page, "seller_debts", "usd") == format_money(debts, "usd") == "18.00 USD"
    hour_ago = timezone.now() - timedelta(minutes=30)
    assert figure(page, "attention-unpaid_failed") == str(
        failed.filter(created_at__lt=hour_ago).count()
    )
    assert figure(page, "attention-reversal_refused") == str(
        rows.filter(status=TransferStatus.REVERSAL_REFUSED).count()
    )
    for status in (
        TransferStatus.PENDING,
        TransferStatus.FAILED,
        TransferStatus.REVERSAL_PENDING,
        TransferStatus.REVERSAL_REFUSED,
    ):
        assert figure(page, f"status-{status}") == str(rows.filter(status=status).count())
    assert figure(page, "entered-completed") == str(
        rows.filter(events__to_status=TransferStatus.COMPLETED).count()
    )
    assert page.locator("svg.chart").count() == 2


def test_from_needs_attention_staff_retry_a_failed_transfer_and_see_it_paid(
    logged_in, live_server, client, sandbox, stripe_client, screenshots
):
    page = logged_in
    row = failed_for_an_hour(client, sandbox, stripe_client)

    page.click("nav.console-nav >> text=Needs attention")
    section = page.locator("#attention-unpaid_failed")
    assert section.locator('[data-figure="attention-unpaid_failed"]').inner_text() == "1"
    assert "Stripe 500" in section.inner_text()
    page.screenshot(path=screenshots / "03-needs-attention.png", full_page=True)

    section.locator("text=All 1 in the transfer list").click()
    page.wait_for_selector("#result_list")
    assert (
        "Seller not paid: failed"
        in page.locator(f"#result_list tr:has-text('{row.order_id}')").first.inner_text()
    )
    page.check(f'input[name="_selected_action"][value="{row.pk}"]')
    page.select_option('select[name="action"]', "retry_failed")
    page.screenshot(path=screenshots / "04-retry-selected.png", full_page=True)
    page.click('button[name="index"]')
    assert f"Transfer {row.pk}: send 18.00 USD to" in page.locator("ul.action-plan").inner_text()
    page.click('input[type=submit][value="Send at Stripe now"]')

    message = page.locator("ul.messagelist li.success").text_content()
    assert message.startswith(f"Transfer {row.pk} completed: sent 18.00 USD to {row.seller.name}")
    page.screenshot(path=screenshots / "05-retried-message.png", full_page=True)
    row.refresh_from_db()
    assert row.status == TransferStatus.COMPLETED
    assert sandbox.object(row.stripe_transfer_id)["amount"] == row.amount

    page.goto(f"{live_server.url}/admin/payouts/sellertransfer/{row.pk}/change/")
    assert page.locator(".field-status_badge .badge").inner_text() == "completed"
    page.screenshot(path=screenshots / "06-retried-transfer.png", full_page=True)


def test_a_transfers_page_links_its_stripe_transfer_where_it_can_be_seen(
    logged_in, live_server, client, stripe_client, sandbox, sandbox_server, settings, screenshots
):
    page = logged_in
    _, [row] = paid_order(stripe_client, [5000], webhook=client)
    settings.STRIPE_USES_LOCAL_SANDBOX = True
    settings.SANDBOX_URL = sandbox_server.url

    page.goto(f"{live_server.url}/admin/payouts/sellertransfer/{row.pk}/change/")
    link = page.locator(".field-stripe_transfer_id_link a")
    assert link.inner_text() == row.stripe_transfer_id
    assert link.get_attribute("href") == (
        f"{sandbox_server.url}/_sandbox/objects/{row.stripe_transfer_id}"
    )
    page.screenshot(path=screenshots / "07-transfer-page.png", full_page=True)
    with page.context.expect_page() as opened:
        link.click()
    stripe_page = opened.value
    stripe_page.wait_for_load_state()
    shown = json.loads(stripe_page.inner_text("body"))
    assert (shown["id"], shown["object"], shown["amount"]) == (
        row.stripe_transfer_id,
        "transfer",
        row.amount,
    )
    stripe_page.screenshot(path=screenshots / "08-followed-to-the-sandbox.png")
    stripe_page.close()

    # With a test key and no sandbox, the same link opens the Dashboard's test pages.
    settings.STRIPE_USES_LOCAL_SANDBOX = False
    settings.STRIPE_SECRET_KEY = "sk_test_console"
    page.reload()
    href = page.locator(".field-stripe_transfer_id_link a").get_attribute("href")
    assert href == f"https://dashboard.stripe.com/test/connect/transfers/{row.stripe_transfer_id}"
    assert re.fullmatch(r"https://dashboard\.stripe\.com/test/connect/transfers/tr_\w+", href)
    page.screenshot(path=screenshots / "09-transfer-page-test-mode.png", full_page=True)
