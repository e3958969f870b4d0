"""Four eyes: a staff money action above its approval rule waits for a second person, who
approves it (it runs, once) or rejects it; nobody decides their own request; expired and
decided requests stay as they are."""

import threading
from dataclasses import replace
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, connection
from django.utils import timezone

from approvals.models import ApprovalRequest, ApprovalStatus
from approvals.services import ApprovalRequestDecided, approval_approve, approvals_sweep
from ledger.models import Entry, EntryKind
from ledger.selectors import seller_balances
from marketplace.models import Refund
from payouts.conf import parse_approval_rule
from payouts.models import SellerTransferEvent
from payouts.services.ledger_check import ledger_check
from payouts.transfer.transitions import EndReason, HeldReason, TransferStatus
from tests.builders import (
    STRIPE_500,
    make_event,
    paid_order,
    post_event,
    refund_at_stripe,
    staff_with,
)

A = ApprovalStatus
pytestmark = pytest.mark.django_db

ASKER_PERMISSIONS = (
    "refund_order",
    "write_off_debt",
    "release_sellertransfer",
    "requeue_sellertransfer",
)


@pytest.fixture
def asker(db):
    return staff_with(*ASKER_PERMISSIONS, username="maker")


@pytest.fixture
def approver(db):
    return staff_with("approve_approvalrequest", username="checker")


def post(client, user, url, body=None):
    client.force_login(user)
    return client.post(url, body or {}, content_type="application/json")


def approve(client, user, request_id, reason=""):
    return post(client, user, f"/api/admin/approvals/{request_id}/approve/", {"reason": reason})


def reject(client, user, request_id, reason="not agreed"):
    return post(client, user, f"/api/admin/approvals/{request_id}/reject/", {"reason": reason})


def waiting_id(response) -> int:
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["code"] == "approval_required"
    assert body["approval_request"]["status"] == A.PENDING
    return body["approval_request"]["id"]


# --- The rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "amount", "currency", "needed"),
    [
        ("500.00", 50000, "usd", False),  # 500.00 exactly is not above
        ("500.00", 50001, "usd", True),
        ("500.00", 500, "jpy", False),  # ¥500: major units, whatever the decimals
        ("500.00", 501, "jpy", True),
        ("500.00, usd 1000", 60000, "usd", False),  # a currency's own amount wins
        ("500.00, usd 1000", 60000, "eur", True),
        ("usd 1000", 10**9, "eur", False),  # no amount for eur: never
        ("always", 1, "usd", True),
        ("never", 10**12, "usd", False),
    ],
)
def test_a_rule_needs_a_second_person_strictly_above_its_amount_in_major_units(
    rule, amount, currency, needed
):
    assert parse_approval_rule(rule).needs_approval(amount=amount, currency=currency) is needed


@pytest.mark.parametrize(
    ("rules", "named"),
    [
        ("refund=always", "'refund=always'"),  # no such kind
        ("staff_refund=lots", "staff_refund"),
        ("staff_refund=-1", "staff_refund"),
        ("write_off", "'write_off'"),
    ],
)
def test_malformed_rules_stop_start_up_naming_the_variable(approval_rules, rules, named):
    with pytest.raises(ImproperlyConfigured, match="APPROVAL_RULES") as refused:
        approval_rules(rules)
    assert named in str(refused.value)


def test_the_default_rules_are_write_offs_always_refunds_above_500_the_rest_never(settings):
    rules = settings.PAYOUTS.approvals.rules
    assert {kind: rule.describe() for kind, rule in rules.items()} == {
        "staff_refund": "above 500.00 in any currency",
        "write_off": "always",
        "release": "never",
        "requeue": "never",
        "policy_change": "never",
        "risk_release": "never",
        "reserve_resend": "never",
    }
    assert settings.PAYOUTS.approvals.expires_after == timedelta(days=7)


# --- Staff refunds ------------------------------------------------------------------------------


@pytest.fixture
def big_order(client, sandbox, stripe_client):
    """An order of 700.00 USD, paid to its seller."""
    order, _ = paid_order(stripe_client, [70000], webhook=client)
    return order


def refund_order(client, user, order, **body):
    return post(client, user, f"/api/admin/orders/{order.pk}/refund/", body)


def test_a_refund_under_the_threshold_runs_at_once(client, sandbox, big_order, asker):
    response = refund_order(client, asker, big_order, amount=50000)

    assert response.status_code == 202, response.content
    assert response.json()["stripe_refund_id"].startswith("re_")
    assert ApprovalRequest.objects.count() == 0
    assert len(sandbox.calls("refunds.create")) == 1


def test_a_refund_above_the_threshold_waits_and_runs_once_when_another_person_approves(
    client, sandbox, big_order, asker, approver
):
    request_id = waiting_id(refund_order(client, asker, big_order, reason="damaged in transit"))

    assert Refund.objects.count() == 0
    assert sandbox.calls("refunds.create") == []
    request = ApprovalRequest.objects.get(pk=request_id)
    assert (request.kind, request.amount, request.currency) == ("staff_refund", 70000, "usd")
    assert request.params == {"order_id": big_order.pk, "amount": 70000}  # "all that is left"
    assert (request.requested_by, request.reason) == (asker, "damaged in transit")

    response = approve(client, approver, request_id, reason="checked the photos")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["decided_by"]) == (A.EXECUTED, "checker")
    refund = Refund.objects.get()
    assert (refund.amount, refund.status) == (70000, Refund.Status.PENDING)
    assert body["result"] == {"refund_id": refund.pk, "stripe_refund_id": refund.stripe_refund_id}
    [call] = sandbox.calls("refunds.create")
    assert call["idempotency_key"] == refund.stripe_idempotency_key

    again = approve(client, approver, request_id)

    assert again.status_code == 409
    assert again.json()["code"] == "approval_decided"
    assert len(sandbox.calls("refunds.create")) == 1
    assert Refund.objects.count() == 1


def test_a_rejected_refund_changes_nothing(client, sandbox, big_order, asker, approver):
    request_id = waiting_id(refund_order(client, asker, big_order))

    response = reject(client, approver, request_id, reason="the buyer has the goods")

    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["decision_reason"]) == (
        A.REJECTED,
        "the buyer has the goods",
    )
    assert Refund.objects.count() == 0
    assert sandbox.calls("refunds.create") == []
    assert approve(client, approver, request_id).status_code == 409


def test_a_rejection_needs_a_reason(client, big_order, asker, approver):
    request_id = waiting_id(refund_order(client, asker, big_order))

    response = reject(client, approver, request_id, reason="")

    assert response.status_code == 400
    assert ApprovalRequest.objects.get(pk=request_id).status == A.PENDING


def test_an_expired_request_cannot_be_decided_and_changes_nothing(
    client, sandbox, big_order, asker, approver
):
    request_id = waiting_id(refund_order(client, asker, big_order))
    ApprovalRequest.objects.filter(pk=request_id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    approved = approve(client, approver, request_id)
    rejected = reject(client, approver, request_id)

    assert (approved.status_code, rejected.status_code) == (409, 409)
    assert "expired" in approved.json()["detail"]
    assert ApprovalRequest.objects.get(pk=request_id).status == A.EXPIRED
    assert Refund.objects.count() == 0
    assert sandbox.calls("refunds.create") == []


def test_the_sweep_expires_requests_nobody_decided_in_time(client, big_order, asker, settings):
    request_id = waiting_id(refund_order(client, asker, big_order))
    later = timezone.now() + settings.PAYOUTS.approvals.expires_after + timedelta(seconds=1)

    assert approvals_sweep(now=later) == {"expired": 1, "resumed": 0}
    assert ApprovalRequest.objects.get(pk=request_id).status == A.EXPIRED


@pytest.mark.parametrize("superuser", [False, True])
def test_nobody_approves_or_rejects_their_own_request(client, sandbox, big_order, asker, superuser):
    # They may approve others' requests: only being the one who asked stops them.
    if superuser:
        asker.is_superuser = True
        asker.save()
    else:
        asker.user_permissions.add(Permission.objects.get(codename="approve_approvalrequest"))
    request_id = waiting_id(refund_order(client, asker, big_order))

    approved = approve(client, asker, request_id)
    rejected = reject(client, asker, request_id)

    assert (approved.status_code, rejected.status_code) == (403, 403)
    assert approved.json()["code"] == "own_request"
    assert ApprovalRequest.objects.get(pk=request_id).status == A.PENDING
    assert sandbox.calls("refunds.create") == []


def test_deciding_needs_the_approve_permission(client, big_order, asker):
    request_id = waiting_id(refund_order(client, asker, big_order))
    colleague = staff_with(*ASKER_PERMISSIONS)

    assert approve(client, colleague, request_id).status_code == 403
    assert ApprovalRequest.objects.get(pk=request_id).status == A.PENDING


def test_an_unknown_request_answers_404(client, approver):
    response = approve(client, approver, 999_999)

    assert response.status_code == 404
    assert response.json()["code"] == "unknown_approval_request"
    assert reject(client, approver, 999_999).status_code == 404


def test_an_approved_refund_stripe_refuses_fails_and_holds_nothing_back(
    client, sandbox, big_order, asker, approver
):
    request_id = waiting_id(refund_order(client, asker, big_order))
    sandbox.script("refunds.create", [{"status": 400, "error": {"type": "invalid_request_error"}}])

    response = approve(client, approver, request_id)

    assert response.status_code == 200
    assert response.json()["status"] == A.FAILED
    assert Refund.objects.get().status == Refund.Status.FAILED  # the reservation released


def test_an_approved_refund_whose_answer_was_lost_is_finished_by_the_sweep_once(
    client, sandbox, big_order, asker, approver, settings
):
    request_id = waiting_id(refund_order(client, asker, big_order))
    sandbox.script("refunds.create", [{"action": "drop_after_perform"}])

    response = approve(client, approver, request_id)

    # Stripe refunded, but the answer never came: the request stays approved, not failed.
    assert response.json()["status"] == A.APPROVED
    assert approvals_sweep() == {"expired": 0, "resumed": 0}  # its claim is still fresh
    after_lease = timezone.now() + settings.PAYOUTS.claim_lease + timedelta(seconds=1)

    assert approvals_sweep(now=after_lease) == {"expired": 0, "resumed": 1}

    request = ApprovalRequest.objects.get(pk=request_id)
    refund = Refund.objects.get()
    assert request.status == A.EXECUTED
    assert request.result["stripe_refund_id"] == refund.stripe_refund_id != ""
    assert len(sandbox.state()["refunds"]) == 1  # found at Stripe, never sent afresh


def test_an_approved_refund_that_never_reached_stripe_is_sent_by_the_sweep_with_its_key(
    client, sandbox, big_order, asker, approver, settings, short_stripe_timeout
):
    request_id = waiting_id(refund_order(client, asker, big_order))
    # No answer and nothing done at Stripe: as if the process died before its call.
    sandbox.script("refunds.create", [{"action": "timeout", "timeout_seconds": 1}])

    assert approve(client, approver, request_id).json()["status"] == A.APPROVED
    after_lease = timezone.now() + settings.PAYOUTS.claim_lease + timedelta(seconds=1)
    approvals_sweep(now=after_lease)

    assert ApprovalRequest.objects.get(pk=request_id).status == A.EXECUTED
    refund = Refund.objects.get()
    keys = {call["idempotency_key"] for call in sandbox.calls("refunds.create")}
    assert keys == {refund.stripe_idempotency_key}
    assert len(sandbox.state()["refunds"]) == 1


# --- Write-offs ---------------------------------------------------------------------------------


@pytest.fixture
def seller_in_debt(client, sandbox, stripe_client, django_capture_on_commit_callbacks):
    """A seller who owes 18.00 USD: paid, paid out at once, then refunded in full."""
    order, [row] = paid_order(stripe_client, [2000], webhook=client)
    sandbox.simulate_payout(row.seller.stripe_account_id, 1800, "usd")
    event = make_event("refund.created", refund_at_stripe(stripe_client, order))
    with django_capture_on_commit_callbacks(execute=True):
        assert post_event(client, event).status_code == 200
    return row.seller


def write_off(client, user, seller, amount=1000, reason="goodwill"):
    url = f"/api/admin/sellers/{seller.pk}/debt/write-off/"
    return post(client, user, url, {"currency": "usd", "amount": amount, "reason": reason})


def test_a_write_off_always_waits_and_is_posted_once_when_approved(
    client, seller_in_debt, asker, approver
):
    request_id = waiting_id(write_off(client, asker, seller_in_debt))
    assert not Entry.objects.filter(kind=EntryKind.DEBT_WRITTEN_OFF).exists()

    response = approve(client, approver, request_id)

    assert response.json()["status"] == A.EXECUTED
    entry = Entry.objects.get(kind=EntryKind.DEBT_WRITTEN_OFF)
    assert entry.posted_by == asker
    assert entry.memo == f"goodwill (approved by checker, approval request {request_id})"
    assert seller_balances(seller_id=seller_in_debt.pk)["usd"]["debt"] == 800
    assert approve(client, approver, request_id).status_code == 409
    assert Entry.objects.filter(kind=EntryKind.DEBT_WRITTEN_OFF).count() == 1
    assert ledger_check()[1] == []


def test_a_rejected_write_off_posts_nothing(client, seller_in_debt, asker, approver):
    request_id = waiting_id(write_off(client, asker, seller_in_debt))

    assert reject(client, approver, request_id).status_code == 200
    assert not Entry.objects.filter(kind=EntryKind.DEBT_WRITTEN_OFF).exists()
    assert seller_balances(seller_id=seller_in_debt.pk)["usd"]["debt"] == 1800


def test_a_write_off_under_a_threshold_runs_at_once(client, seller_in_debt, asker, approval_rules):
    approval_rules("write_off=5.00")

    assert write_off(client, asker, seller_in_debt, amount=500).status_code == 200
    assert waiting_id(write_off(client, asker, seller_in_debt, amount=501)) > 0
    assert seller_balances(seller_id=seller_in_debt.pk)["usd"]["debt"] == 1300


def test_a_write_off_larger_than_the_debt_is_refused_when_asked(client, seller_in_debt, asker):
    response = write_off(client, asker, seller_in_debt, amount=1801)

    assert response.status_code == 400
    assert ApprovalRequest.objects.count() == 0


def test_an_approved_write_off_the_debt_no_longer_covers_fails_and_posts_nothing(
    client, seller_in_debt, asker, approver
):
    first = waiting_id(write_off(client, asker, seller_in_debt, amount=1500))
    second = waiting_id(write_off(client, asker, seller_in_debt, amount=1500))
    assert approve(client, approver, first).json()["status"] == A.EXECUTED

    response = approve(client, approver, second)

    assert response.json()["status"] == A.FAILED
    assert "owes 3.00 USD" in response.json()["error"]
    assert Entry.objects.filter(kind=EntryKind.DEBT_WRITTEN_OFF).count() == 1


# --- Releases of held transfers -----------------------------------------------------------------


@pytest.fixture
def held_order(client, sandbox, stripe_client, settings):
    settings.PAYOUTS = replace(settings.PAYOUTS, transfer_hold=timedelta(days=7))
    order, rows = paid_order(stripe_client, [1000, 3000], webhook=client)
    assert {row.held_reason for row in rows} == {HeldReason.AWAITING_RELEASE}
    return order


def release(client, user, order, capture):
    with capture(execute=True):
        return post(client, user, f"/api/admin/orders/{order.pk}/release/", {"reason": "shipped"})


def test_a_release_runs_at_once_by_default(
    client, sandbox, held_order, asker, django_capture_on_commit_callbacks
):
    response = release(client, asker, held_order, django_capture_on_commit_callbacks)

    assert response.status_code == 200, response.content
    assert len(sandbox.state()["transfers"]) == 2


def test_a_release_above_its_rule_waits_then_pays_each_seller_once(
    client,
    sandbox,
    held_order,
    asker,
    approver,
    approval_rules,
    django_capture_on_commit_callbacks,
):
    approval_rules("release=20.00")
    request_id = waiting_id(release(client, asker, held_order, django_capture_on_commit_callbacks))
    assert ApprovalRequest.objects.get(pk=request_id).amount == 900 + 2700  # the sellers' nets
    assert sandbox.state()["transfers"] == []

    with django_capture_on_commit_callbacks(execute=True):
        response = approve(client, approver, request_id)

    assert response.json()["status"] == A.EXECUTED
    assert len(sandbox.state()["transfers"]) == 2
    released = SellerTransferEvent.objects.filter(from_status=TransferStatus.HELD)
    assert {event.caused_by for event in released} == {
        f"staff:maker (approved by checker, approval request {request_id})"
    }
    assert approve(client, approver, request_id).status_code == 409
    assert len(sandbox.state()["transfers"]) == 2


def test_a_rejected_release_leaves_the_transfers_held(
    client, sandbox, held_order, asker, approver, approval_rules, django_capture_on_commit_callbacks
):
    approval_rules("release=always")
    request_id = waiting_id(release(client, asker, held_order, django_capture_on_commit_callbacks))

    assert reject(client, approver, request_id).status_code == 200
    assert set(held_order.transfers.values_list("status", flat=True)) == {TransferStatus.HELD}
    assert sandbox.state()["transfers"] == []


# --- Re-queues ----------------------------------------------------------------------------------


@pytest.fixture
def reversal_given_up(client, sandbox, stripe_client, settings, django_capture_on_commit_callbacks):
    settings.PAYOUTS = replace(
        settings.PAYOUTS, reversal=replace(settings.PAYOUTS.reversal, max_retries=0)
    )
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


def requeue(client, user, row, capture, reason="outage over"):
    with capture(execute=True):
        url = f"/api/admin/transfers/{row.pk}/requeue/"
        return post(client, user, url, {"reason": reason})


def test_a_requeue_above_its_rule_waits_then_reverses_once(
    client,
    sandbox,
    reversal_given_up,
    asker,
    approver,
    approval_rules,
    django_capture_on_commit_callbacks,
):
    approval_rules("requeue=always")
    row = reversal_given_up
    request_id = waiting_id(requeue(client, asker, row, django_capture_on_commit_callbacks))
    row.refresh_from_db()
    assert row.status == TransferStatus.PERMANENTLY_FAILED

    with django_capture_on_commit_callbacks(execute=True):
        assert approve(client, approver, request_id).json()["status"] == A.EXECUTED

    row.refresh_from_db()
    assert (row.status, row.amount_reversed) == (TransferStatus.REVERSED, 1800)
    assert len(sandbox.state()["transfer_reversals"]) == 1
    event = SellerTransferEvent.objects.get(
        transfer=row, from_status=TransferStatus.PERMANENTLY_FAILED
    )
    assert event.user == asker
    assert event.detail["reason"] == (
        f"outage over (approved by checker, approval request {request_id})"
    )


def test_a_rejected_requeue_leaves_the_transfer_given_up(
    client, reversal_given_up, asker, approver, approval_rules, django_capture_on_commit_callbacks
):
    approval_rules("requeue=always")
    row = reversal_given_up
    request_id = waiting_id(requeue(client, asker, row, django_capture_on_commit_callbacks))

    assert reject(client, approver, request_id).status_code == 200
    row.refresh_from_db()
    assert row.status == TransferStatus.PERMANENTLY_FAILED


# --- The list -----------------------------------------------------------------------------------


def test_the_list_shows_what_waits_oldest_first(client, big_order, asker, approver):
    first = waiting_id(refund_order(client, asker, big_order, amount=60000))
    second = waiting_id(refund_order(client, asker, big_order, amount=50001))
    decided = waiting_id(refund_order(client, asker, big_order, amount=50002))
    ApprovalRequest.objects.filter(pk=decided).update(status=A.REJECTED)

    client.force_login(approver)
    listed = client.get("/api/admin/approvals/").json()

    assert [row["id"] for row in listed] == [first, second]
    assert listed[0]["subject"] == f"order {big_order.pk}"
    assert listed[0]["requested_by"] == "maker"
    assert [row["id"] for row in client.get("/api/admin/approvals/?status=rejected").json()] == [
        decided
    ]
    assert client.get("/api/admin/approvals/?status=nope").status_code == 400


# --- Two approvers at once ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_approvers_at_the_same_moment_run_the_refund_once(client, sandbox, stripe_client):
    order, _ = paid_order(stripe_client, [70000], webhook=client)
    asker = staff_with(*ASKER_PERMISSIONS, username="maker")
    approvers = [staff_with("approve_approvalrequest", username=f"checker{i}") for i in (1, 2)]
    request_id = waiting_id(refund_order(client, asker, order))
    start = threading.Barrier(len(approvers))
    outcomes: list[object] = []

    def decide(user):
        try:
            start.wait()
            outcomes.append(approval_approve(request_id=request_id, user=user).status)
        except ApprovalRequestDecided as refused:
            outcomes.append(refused)
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=(user,)) for user in approvers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(map(str, outcomes))[1] == A.EXECUTED
    assert sum(isinstance(outcome, ApprovalRequestDecided) for outcome in outcomes) == 1
    assert ApprovalRequest.objects.get(pk=request_id).status == A.EXECUTED
    assert Refund.objects.count() == 1
    assert len(sandbox.calls("refunds.create")) == 1
    assert len(sandbox.state()["refunds"]) == 1


def test_the_database_refuses_a_decision_by_the_person_who_asked(big_order, asker):
    request = ApprovalRequest.objects.create(
        kind="staff_refund",
        params={"order_id": big_order.pk, "amount": 1},
        amount=1,
        currency="usd",
        requested_by=asker,
        expires_at=timezone.now() + timedelta(days=1),
    )
    with pytest.raises(IntegrityError):
        ApprovalRequest.objects.filter(pk=request.pk).update(decided_by=asker)


# --- The console's actions go through the same rules --------------------------------------------


def test_the_write_off_admin_action_asks_for_approval_instead_of_writing_off(
    client, seller_in_debt, asker
):
    client.force_login(asker)
    asker.user_permissions.add(Permission.objects.get(codename="view_seller"))
    changelist = "/admin/marketplace/seller/"
    chosen = {"action": "write_off_debt", "_selected_action": [seller_in_debt.pk], "apply": "1"}

    done = client.post(
        changelist,
        {**chosen, "currency": "usd", "amount": "9.00", "reason": "goodwill"},
        follow=True,
    )

    request = ApprovalRequest.objects.get()
    [note] = [str(message) for message in done.context["messages"]]
    assert note == (
        f"{seller_in_debt.name} (seller {seller_in_debt.pk}, {seller_in_debt.stripe_account_id}): "
        f"the write-off of 9.00 USD waits for a second person's approval (request {request.pk}, "
        "under Waiting for approval)."
    )
    assert (request.kind, request.amount, request.reason) == ("write_off", 900, "goodwill")
    assert not Entry.objects.filter(kind=EntryKind.DEBT_WRITTEN_OFF).exists()


def test_the_waiting_page_approves_and_refuses_the_asker(client, big_order, asker, approver):
    request_id = waiting_id(refund_order(client, asker, big_order))
    asker.user_permissions.add(Permission.objects.get(codename="approve_approvalrequest"))
    page = "/admin/waiting-for-approval/"

    client.force_login(asker)
    own = client.post(page, {"request": request_id, "decision": "approve"}, follow=True)
    client.force_login(approver)
    listed = client.get(page)
    approved = client.post(page, {"request": request_id, "decision": "approve"}, follow=True)

    assert "is your own" in str(list(own.context["messages"])[0])
    assert f'data-approval="{request_id}"' in listed.content.decode()
    assert [str(m) for m in approved.context["messages"]] == [
        f"approval request {request_id}: executed"
    ]
    assert Refund.objects.count() == 1
