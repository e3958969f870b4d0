"""The console's money actions and its order story in a real browser, against the live server
and the Stripe sandbox: a refund asks first, saying to whom and how much; a write-off typed as
the console shows money writes off that much; Stripe refusing a retry is a message, never the
server's error page; a disputed order's page says so; the lists fit 1,440 px; a CSV export holds
exactly the filtered rows; a failure shows in "needs attention" at once. Each step leaves a
screenshot in the folder printed at the start of the run."""

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from ledger.selectors import seller_balances
from marketplace.models import Order, Refund
from payouts.models import SellerTransfer
from payouts.transfer.transitions import TransferStatus
from tests.builders import (
    DISPUTE_EVENTS,
    STRIPE_500,
    make_event,
    paid_order,
    post_event,
    refund_at_stripe,
)

# The live server's thread has its own connection: the rows must be committed.
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
WIDE = {"width": 1440, "height": 900}
INSUFFICIENT = {
    "status": 400,
    "error": {
        "type": "invalid_request_error",
        "code": "balance_insufficient",
        "message": "Your platform balance is too low for this transfer.",
    },
}


def choose_action(page, pk: int, action: str) -> None:
    """Tick the row ``pk`` of the list on the page and run ``action`` on it."""
    page.check(f'input[name="_selected_action"][value="{pk}"]')
    page.select_option('select[name="action"]', action)
    page.click('button[name="index"]')
    page.wait_for_load_state()


def messages(page, level: str) -> list[str]:
    return [text.strip() for text in page.locator(f"ul.messagelist li.{level}").all_inner_texts()]


def fits(page) -> bool:
    """Nothing scrolls sideways, nor is cut off: the page is no wider than the window, and no
    table is wider than the box it is in (a box scrolling, or hiding, what overflows)."""
    return page.evaluate(
        """() => document.documentElement.scrollWidth <= window.innerWidth
        && [...document.querySelectorAll('table')].every(table => {
            const box = table.parentElement;
            return table.getBoundingClientRect().right <= window.innerWidth
                && box.scrollWidth <= box.clientWidth + 1;
        })"""
    )


def test_refunding_an_order_asks_first_saying_to_whom_and_how_much(
    logged_in, live_server, client, sandbox, stripe_client, screenshots
):
    page = logged_in
    order, _ = paid_order(stripe_client, [5000, 12300], webhook=client)  # 173.00 USD

    page.goto(f"{live_server.url}/admin/marketplace/order/")
    choose_action(page, order.pk, "refund_in_full")

    plan = page.locator("ul.action-plan").inner_text()
    assert f"Order {order.pk}: refund 173.00 USD to the buyer {order.buyer_email}" in plan
    assert "nothing refunded yet" in plan
    page.screenshot(path=screenshots / "10-refund-confirmation.png", full_page=True)
    assert not Refund.objects.filter(order=order).exists()
    assert sandbox.calls("refunds.create") == []

    page.click('input[type=submit][value="Refund at Stripe"]')
    page.wait_for_load_state()

    [done] = messages(page, "success")
    refund = Refund.objects.get(order=order)
    assert done.startswith(f"Order {order.pk}: refunded 173.00 USD to {order.buyer_email}")
    assert refund.stripe_refund_id in done
    assert (refund.amount, len(sandbox.calls("refunds.create"))) == (17300, 1)
    page.screenshot(path=screenshots / "11-refund-done.png", full_page=True)


def test_a_write_off_typed_as_the_console_shows_money_writes_off_that_much(
    logged_in, live_server, client, sandbox, stripe_client, screenshots, approval_rules
):
    approval_rules("write_off=never")  # one person writes off here; four eyes: test_approvals
    page = logged_in
    # Paid 108.00, paid out to their bank at once, then refunded: 108.00 is their debt.
    order, [row] = paid_order(stripe_client, [12000], webhook=client)
    sandbox.simulate_payout(row.seller.stripe_account_id, 10800, "usd")
    assert post_event(client, make_event("refund.created", refund_at_stripe(stripe_client, order)))
    seller = row.seller
    assert seller_balances(seller_id=seller.pk)["usd"]["debt"] == 10800

    page.goto(f"{live_server.url}/admin/marketplace/seller/?debt=yes")
    choose_action(page, seller.pk, "write_off_debt")
    page.fill("#id_amount", "108")  # the old form's cents: refused, saying what to type
    page.fill("#id_reason", "Seller closed their shop; agreed with finance")
    page.click('input[type=submit][value="Review"]')
    page.wait_for_load_state()
    error = page.locator(".errorlist").inner_text()
    assert "type USD with 2 decimals" in error and "e.g. 108.00" in error
    page.screenshot(path=screenshots / "12-write-off-ambiguous.png", full_page=True)

    page.fill("#id_amount", "108.00")
    page.click('input[type=submit][value="Review"]')
    page.wait_for_load_state()
    plan = page.locator("ul.action-plan").inner_text()
    assert "owes 108.00 USD: 108.00 USD of it is written off as bad debt" in plan
    assert seller_balances(seller_id=seller.pk)["usd"]["debt"] == 10800  # nothing yet
    page.screenshot(path=screenshots / "13-write-off-confirmation.png", full_page=True)

    page.click('input[type=submit][value="Write off 108.00 USD"]')
    page.wait_for_load_state()

    assert messages(page, "success") == [
        f"{seller.name} (seller {seller.pk}, {seller.stripe_account_id}): wrote off 108.00 USD "
        "of their debt; they owe 0.00 USD now."
    ]
    assert seller_balances(seller_id=seller.pk)["usd"]["debt"] == 0
    page.screenshot(path=screenshots / "14-write-off-done.png", full_page=True)


def test_stripe_refusing_a_retry_is_shown_as_a_message_not_an_error_page(
    logged_in, live_server, client, sandbox, stripe_client, screenshots
):
    page = logged_in
    sandbox.script("transfers.create", [STRIPE_500])
    _, [row] = paid_order(stripe_client, [2000], webhook=client)
    assert row.status == TransferStatus.FAILED
    sandbox.script("transfers.create", [INSUFFICIENT])

    page.goto(f"{live_server.url}/admin/payouts/sellertransfer/?status__exact=failed")
    choose_action(page, row.pk, "retry_failed")
    plan = page.locator("ul.action-plan").inner_text()
    assert f"Transfer {row.pk}: send 18.00 USD to {row.seller.name}" in plan
    page.screenshot(path=screenshots / "15-retry-confirmation.png", full_page=True)
    page.click('input[type=submit][value="Send at Stripe now"]')
    page.wait_for_load_state()

    [refused] = messages(page, "error")
    assert refused.startswith(f"Transfer {row.pk} to {row.seller.name}")
    assert "balance_insufficient" in refused
    assert "Server Error" not in page.content()
    page.screenshot(path=screenshots / "16-retry-refused-message.png", full_page=True)
    row.refresh_from_db()
    assert row.status == TransferStatus.FAILED and "balance_insufficient" in row.error_message


def test_a_disputed_orders_page_tells_its_whole_story(
    logged_in, live_server, client, sandbox, stripe_client, deliver, screenshots
):
    page = logged_in
    page.set_viewport_size(WIDE)
    order, rows = paid_order(stripe_client, [3000, 2000], webhook=client)
    refund = refund_at_stripe(stripe_client, order, amount=1000)
    assert post_event(client, make_event("refund.created", refund)).status_code == 200
    dispute = sandbox.open_dispute(order.stripe_charge_id, amount=2000, reason="fraudulent")
    deliver(*DISPUTE_EVENTS)
    assert Order.objects.get(pk=order.pk).status == Order.Status.PARTIALLY_REFUNDED

    page.goto(f"{live_server.url}/admin/marketplace/order/")
    listed = page.locator(f"#result_list tr:has-text('{order.buyer_email}') .badge").inner_text()
    assert listed == "disputed (partly refunded)"
    page.goto(f"{live_server.url}/admin/marketplace/order/{order.pk}/change/")

    badge = page.locator("div.field-status_badge .badge").inner_text()
    assert badge == "disputed (partly refunded)"
    disputes = page.locator("#disputes-group").inner_text()
    assert dispute["id"] in disputes and "20.00 USD" in disputes and "fraudulent" in disputes
    assert "needs_response" in disputes
    assert page.locator("#disputes-group .field-evidence_due_by").first.inner_text().strip()
    refunds = page.locator("#refunds-group").inner_text()
    assert refund["id"] in refunds and "10.00 USD" in refunds
    lines = page.locator("#transfers-group .money-line").all_inner_texts()
    for row, line in zip(rows, lines, strict=True):
        row.refresh_from_db()
        assert line.startswith("sent 27.00 USD" if row.amount == 2700 else "sent 18.00 USD")
        assert "refunds " in line and "chargeback " in line
    assert "Save" not in page.locator("#content").inner_text()  # a paid order is history
    assert fits(page)
    page.screenshot(path=screenshots / "17-disputed-order.png", full_page=True)


def test_the_transfer_list_the_order_page_the_ledger_and_the_other_pages_fit_1440_px(
    logged_in, live_server, client, sandbox, stripe_client, screenshots
):
    page = logged_in
    page.set_viewport_size(WIDE)
    order, rows = paid_order(stripe_client, [5000, 2000, 3333], webhook=client)
    long_error = {**STRIPE_500["error"], "message": "The platform could not send it. " * 12}
    sandbox.script("transfers.create", [{**STRIPE_500, "error": long_error}])
    paid_order(stripe_client, [4200], webhook=client)
    post_event(client, make_event("refund.created", refund_at_stripe(stripe_client, order)))

    for path, name in (
        ("/admin/payouts/sellertransfer/", "18-transfer-list-1440.png"),
        (f"/admin/marketplace/order/{order.pk}/change/", "19-order-page-1440.png"),
        ("/admin/ledger/entry/", "20-ledger-list-1440.png"),
        ("/admin/", "24-dashboard-1440.png"),
        ("/admin/needs-attention/", "25-needs-attention-1440.png"),
        ("/admin/marketplace/order/", "26-order-list-1440.png"),
        ("/admin/marketplace/seller/", "27-seller-list-1440.png"),
        ("/admin/marketplace/refund/", "28-refund-list-1440.png"),
        ("/admin/payouts/webhookevent/", "29-event-list-1440.png"),
    ):
        page.goto(f"{live_server.url}{path}")
        width = page.evaluate("document.documentElement.scrollWidth")
        page.screenshot(path=screenshots / name, full_page=True)
        assert fits(page), f"{path} is {width} px wide"


def test_a_csv_export_holds_exactly_the_rows_the_filters_select(
    logged_in, live_server, client, sandbox, stripe_client, screenshots
):
    page = logged_in
    paid_order(stripe_client, [1000, 2000], webhook=client)
    sandbox.script("transfers.create", [STRIPE_500, STRIPE_500])
    paid_order(stripe_client, [3000, 4000], webhook=client)
    failed = set(
        SellerTransfer.objects.filter(status=TransferStatus.FAILED).values_list("pk", flat=True)
    )
    assert len(failed) == 2 and SellerTransfer.objects.count() == 4

    page.goto(f"{live_server.url}/admin/payouts/sellertransfer/")
    page.click("#changelist-filter >> a:has-text('failed')")
    page.wait_for_load_state()
    page.screenshot(path=screenshots / "21-filtered-list.png", full_page=True)
    with page.expect_download() as download:
        page.click("a.export-csv")
    text = download.value.path().read_text()

    exported = list(csv.DictReader(io.StringIO(text)))
    assert {int(row["ID"]) for row in exported} == failed
    assert {row["status"] for row in exported} == {"failed"}


def test_a_failure_shows_in_needs_attention_within_a_minute(
    logged_in, live_server, client, sandbox, stripe_client, screenshots
):
    page = logged_in
    sandbox.script("transfers.create", [STRIPE_500])
    _, [row] = paid_order(stripe_client, [2000], webhook=client)
    assert row.status == TransferStatus.FAILED
    assert timezone.now() - row.created_at < timedelta(minutes=1)

    page.click("nav.console-nav >> text=Needs attention")
    section = page.locator("#attention-failing_now")

    assert section.locator('[data-figure="attention-failing_now"]').inner_text() == "1"
    line = section.locator(f"tr:has(a[href$='/sellertransfer/{row.pk}/change/'])").inner_text()
    assert "Stripe 500" in line
    page.screenshot(path=screenshots / "22-failing-now.png", full_page=True)
    page.goto(f"{live_server.url}/admin/")
    assert page.locator('[data-figure="attention-failing_now"]').inner_text() == "1"
    page.screenshot(path=screenshots / "23-dashboard-failing-now.png", full_page=True)
