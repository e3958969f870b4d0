"""The "Waiting for approval" page in a real browser, against the live server and the Stripe
sandbox: one person asks for a refund above the rule through the console's order action, a
second person opens the page from the dashboard's count, sees the request (and that they cannot
decide their own), approves it and the refund is created at Stripe, once."""

import pytest

from approvals.models import ApprovalRequest, ApprovalStatus
from marketplace.models import Refund
from tests.browser.conftest import log_in
from tests.builders import paid_order, staff_with

# The live server's thread has its own connection: the rows must be committed.
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_refund_above_the_rule_waits_and_a_second_person_approves_it_on_the_page(
    page, live_server, client, sandbox, stripe_client, screenshots
):
    order, _ = paid_order(stripe_client, [70000], webhook=client)
    maker = staff_with("refund_order", "view_order", "view_approvalrequest", username="maker")
    checker = staff_with(
        "approve_approvalrequest", "view_sellertransfer", "view_approvalrequest", username="checker"
    )

    # The maker refunds the order in full from the order list: 700.00 USD is above 500.00.
    log_in(page, live_server, maker, then="/admin/marketplace/order/")
    page.check(f'input[name="_selected_action"][value="{order.pk}"]')
    page.select_option('select[name="action"]', "refund_in_full")
    page.click('button[name="index"]')
    page.click('input[type=submit][value="Refund at Stripe"]')  # the confirmation page
    message = page.locator("ul.messagelist li.success").inner_text()
    assert "700.00 USD waits for a second person's approval" in message
    page.screenshot(path=screenshots / "approval-01-asked.png", full_page=True)
    request = ApprovalRequest.objects.get()
    assert Refund.objects.count() == 0

    # On the page, the maker cannot decide their own request.
    page.click("nav.console-nav >> text=Waiting for approval")
    row = page.locator(f'tr[data-approval="{request.pk}"]')
    assert "another person must decide it" in row.inner_text()
    assert row.locator("button").count() == 0
    page.context.clear_cookies()

    # The checker finds it from the dashboard's count, sees the rules, and approves.
    log_in(page, live_server, checker)
    assert page.locator('[data-figure="approvals-waiting"]').inner_text() == "1"
    page.click("text=Waiting for approval >> nth=1")
    page.wait_for_selector("#approvals-waiting")
    assert (
        page.locator('tr[data-rule="staff_refund"]')
        .inner_text()
        .endswith("above 500.00 in any currency")
    )
    row = page.locator(f'tr[data-approval="{request.pk}"]')
    assert "700.00 USD" in row.inner_text() and "maker" in row.inner_text()
    page.screenshot(path=screenshots / "approval-02-waiting.png", full_page=True)
    row.locator('input[name="reason"]').fill("buyer returned the goods")
    row.locator('button[value="approve"]').click()
    page.wait_for_selector("ul.messagelist")

    assert page.locator("ul.messagelist li.success").inner_text() == (
        f"Approval request {request.pk}: executed"
    )
    assert page.locator('[data-figure="approvals-waiting"]').inner_text() == "0"
    page.screenshot(path=screenshots / "approval-03-approved.png", full_page=True)
    request.refresh_from_db()
    assert (request.status, request.decided_by, request.decision_reason) == (
        ApprovalStatus.EXECUTED,
        checker,
        "buyer returned the goods",
    )
    refund = Refund.objects.get()
    assert refund.amount == 70000 and refund.stripe_refund_id.startswith("re_")
    assert len(sandbox.calls("refunds.create")) == 1
