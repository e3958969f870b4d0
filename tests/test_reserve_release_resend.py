"""Staff send a reserve release that gave up again: Stripe read first (a transfer an earlier
attempt made is adopted), else sent under a new key; through the four-eyes rule
``reserve_resend``; over the API and as an admin action; shown under "needs attention"."""

from dataclasses import replace
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from approvals.models import ApprovalRequest, ApprovalStatus
from ledger.selectors import seller_balances
from payouts.audit import audit_records
from payouts.models import ReleaseState, ReserveRelease
from payouts.services.ledger_check import ledger_check
from payouts.services.reserves import reserves_release_due
from tests.builders import STRIPE_500, STRIPE_REFUSED, release_that_gave_up, staff_with

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_retries(settings):
    """The release sweep gives up after its first failed attempt."""
    payouts = settings.PAYOUTS
    settings.PAYOUTS = replace(
        payouts, transfer_retry=replace(payouts.transfer_retry, max_retries=0)
    )


@pytest.fixture
def dana(client):
    user = staff_with("resend_reserverelease", username="dana")
    client.force_login(user)
    return user


def resend(client, pk: int, reason: str = "the seller fixed their account"):
    return client.post(
        f"/api/admin/reserve-releases/{pk}/resend/",
        {"reason": reason},
        content_type="application/json",
    )


def transfers_to(sandbox, account: str) -> list[int]:
    return [t["amount"] for t in sandbox.state()["transfers"] if t["destination"] == account]


def reserve_of(seller_id: int) -> int:
    return seller_balances(seller_id=seller_id)["usd"]["reserve"]


def test_a_release_stripe_refused_is_sent_again_by_staff_once_under_a_new_key(
    client, sandbox, stripe_client, no_retries, dana
):
    release, row = release_that_gave_up(client, sandbox, stripe_client, answer=STRIPE_REFUSED)
    assert reserve_of(row.seller_id) == 180
    lists = len(sandbox.calls("transfers.list"))

    response = resend(client, release.pk)

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["state"], body["amount"], body["resent_by"]) == ("sent", 180, "dana")
    release.refresh_from_db()
    assert release.state == ReleaseState.SENT
    assert release.idempotency_key.endswith("-g2")  # g1 after the refusal, g2 for staff
    assert (release.resent_by, release.resend_reason) == (dana, "the seller fixed their account")
    assert release.resent_at is not None
    assert len(sandbox.calls("transfers.list")) == lists + 1  # Stripe read before sending
    assert transfers_to(sandbox, row.seller.stripe_account_id) == [1620, 180]
    assert reserve_of(row.seller_id) == 0
    assert ledger_check()[1] == []
    assert reserves_release_due(now=timezone.now() + timedelta(days=40)) == {}


def test_a_release_stripe_made_before_it_gave_up_is_adopted_not_sent_twice(
    client, sandbox, stripe_client, no_retries, dana
):
    answer = {"action": "drop_after_perform"}
    release, row = release_that_gave_up(client, sandbox, stripe_client, answer=answer)
    assert transfers_to(sandbox, row.seller.stripe_account_id) == [1620, 180]  # made, unseen
    creates = len(sandbox.calls("transfers.create"))

    response = resend(client, release.pk)

    assert response.status_code == 200, response.content
    release.refresh_from_db()
    assert release.state == ReleaseState.SENT
    assert len(sandbox.calls("transfers.create")) == creates  # adopted, not sent
    assert transfers_to(sandbox, row.seller.stripe_account_id) == [1620, 180]
    assert reserve_of(row.seller_id) == 0
    assert ledger_check()[1] == []


def test_a_resend_stripe_refuses_again_goes_back_to_pending_with_its_retries(
    client, sandbox, stripe_client, no_retries, dana, settings
):
    release, row = release_that_gave_up(client, sandbox, stripe_client, answer=STRIPE_500)
    settings.PAYOUTS = replace(
        settings.PAYOUTS, transfer_retry=replace(settings.PAYOUTS.transfer_retry, max_retries=5)
    )
    sandbox.script("transfers.create", [STRIPE_REFUSED])

    response = resend(client, release.pk)

    assert response.status_code == 200, response.content
    assert response.json()["state"] == "pending"
    release.refresh_from_db()
    assert (release.state, release.retry_count) == (ReleaseState.PENDING, 1)
    assert "cannot receive transfers" in release.error_message
    assert reserves_release_due(now=timezone.now() + timedelta(days=1)) == {"sent": 1}
    assert transfers_to(sandbox, row.seller.stripe_account_id) == [1620, 180]
    assert ledger_check()[1] == []


def test_an_unknown_release_is_404_and_one_not_failed_is_409_changing_nothing(
    client, sandbox, stripe_client, no_retries, dana
):
    release, row = release_that_gave_up(client, sandbox, stripe_client, answer=STRIPE_REFUSED)
    ReserveRelease.objects.filter(pk=release.pk).update(state=ReleaseState.PENDING)
    before = ReserveRelease.objects.filter(pk=release.pk).values().get()

    assert resend(client, release.pk + 1000).status_code == 404
    refused = resend(client, release.pk)

    assert refused.status_code == 409, refused.content
    assert refused.json() == {
        "detail": f"reserve release {release.pk} is pending, not failed",
        "code": "release_not_resendable",
    }
    assert ReserveRelease.objects.filter(pk=release.pk).values().get() == before
    assert ApprovalRequest.objects.count() == 0


def test_a_resend_needs_a_reason_and_the_permission(client, sandbox, stripe_client, no_retries):
    release, row = release_that_gave_up(client, sandbox, stripe_client, answer=STRIPE_REFUSED)
    client.force_login(staff_with(username="eve"))
    assert resend(client, release.pk).status_code == 403
    client.force_login(staff_with("resend_reserverelease"))
    assert resend(client, release.pk, reason=" ").status_code == 400
    release.refresh_from_db()
    assert release.state == ReleaseState.FAILED


def test_with_four_eyes_the_resend_waits_for_a_second_person_then_runs_once(
    client, sandbox, stripe_client, no_retries, dana, approval_rules
):
    approval_rules("reserve_resend=always")
    release, row = release_that_gave_up(client, sandbox, stripe_client, answer=STRIPE_REFUSED)

    waiting = resend(client, release.pk)

    assert waiting.status_code == 202, waiting.content
    request_id = waiting.json()["approval_request"]["id"]
    release.refresh_from_db()
    assert release.state == ReleaseState.FAILED  # nothing before the approval
    assert resend(client, release.pk).status_code == 202  # asking twice changes nothing either
    client.force_login(staff_with("approve_approvalrequest", username="checker"))
    approved = client.post(
        f"/api/admin/approvals/{request_id}/approve/", {}, content_type="application/json"
    )

    assert approved.status_code == 200, approved.content
    assert ApprovalRequest.objects.get(pk=request_id).status == ApprovalStatus.EXECUTED
    release.refresh_from_db()
    assert (release.state, release.resent_by) == (ReleaseState.SENT, dana)
    assert "approved by checker" in release.resend_reason
    assert transfers_to(sandbox, row.seller.stripe_account_id) == [1620, 180]
    assert ledger_check()[1] == []


def test_the_admin_action_sends_failed_releases_again_and_leaves_the_others(
    client, sandbox, stripe_client, no_retries
):
    release, row = release_that_gave_up(client, sandbox, stripe_client, answer=STRIPE_REFUSED)
    client.force_login(staff_with("resend_reserverelease", "view_reserverelease"))
    changelist = reverse("admin:payouts_reserverelease_changelist")
    chosen = {"action": "resend_given_up", "_selected_action": [release.pk]}

    form = client.post(changelist, chosen)
    assert form.status_code == 200
    assert form.context["plan"][0].startswith(f"Reserve release {release.pk}: read at Stripe")
    release.refresh_from_db()
    assert release.state == ReleaseState.FAILED  # nothing yet

    done = client.post(changelist, {**chosen, "apply": "1", "reason": "account fixed"})

    assert done.status_code == 302
    release.refresh_from_db()
    assert (release.state, release.resend_reason) == (ReleaseState.SENT, "account fixed")
    assert transfers_to(sandbox, row.seller.stripe_account_id) == [1620, 180]
    again = client.post(changelist, {**chosen, "apply": "1", "reason": "twice"}, follow=True)
    assert "is sent, not failed" in again.content.decode()
    assert transfers_to(sandbox, row.seller.stripe_account_id) == [1620, 180]


def test_a_release_that_gave_up_shows_under_needs_attention(
    client, sandbox, stripe_client, no_retries
):
    release, row = release_that_gave_up(client, sandbox, stripe_client, answer=STRIPE_REFUSED)
    client.force_login(staff_with(is_superuser=True))

    page = client.get(reverse("admin:needs_attention")).content.decode()
    api = client.get("/api/admin/needs-attention/").json()

    assert '<span data-figure="failed-reserve-releases">1</span>' in page
    assert reverse("admin:payouts_reserverelease_change", args=[release.pk]) in page
    assert api["failed_reserve_releases"]["count"] == 1
    assert api["failed_reserve_releases"]["releases"][0]["id"] == release.pk
    csv = b"".join(client.get(reverse("admin:needs_attention_csv")).streaming_content).decode()
    assert f"reserve release failed,release,{release.pk}," in csv


def test_the_audit_export_names_who_sent_a_release_again_and_why(
    client, sandbox, stripe_client, no_retries, dana
):
    release, row = release_that_gave_up(client, sandbox, stripe_client, answer=STRIPE_REFUSED)
    assert resend(client, release.pk).status_code == 200

    [record] = [r for r in audit_records(start=None, end=None) if r.source == "reserve_resend"]

    assert (record.ref, record.actor, record.amount) == (release.pk, "dana", 180)
    assert record.reason == "the seller fixed their account"
    assert record.detail == {"state": "sent"}
