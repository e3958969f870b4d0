"""A payout policy per seller: the staff API (every bad input refused, nothing changed), the
audit trail, and a transfer computed with the seller's fee and hold (and recording them)."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from approvals.models import ApprovalRequest
from payouts.models import SellerPolicy, SellerPolicyChange
from payouts.transfer.transitions import HeldReason, TransferStatus
from tests.builders import connected_seller, paid_order, staff_with
from tests.factories import SellerFactory

pytestmark = pytest.mark.django_db

BODY = {
    "hold": "7d",
    "reserve_bps": 1000,
    "reserve_days": 30,
    "fee_bps": 1200,
    "debits_allowed": True,
    "debit_consent_at": "2026-12-01T10:00:00Z",
}


@pytest.fixture
def staff(client):
    user = staff_with("change_sellerpolicy")
    client.force_login(user)
    return user


def put(client, seller_id, body):
    return client.put(
        f"/api/admin/sellers/{seller_id}/policy/", body, content_type="application/json"
    )


def test_get_shows_the_defaults_of_a_seller_without_a_policy(client, staff, settings):
    seller = SellerFactory()

    body = client.get(f"/api/admin/sellers/{seller.pk}/policy/").json()

    assert body["fee_bps"] is None and body["hold"] is None
    assert body["effective"] == {
        "hold": "0",
        "reserve_bps": 0,
        "reserve_days": 30,
        "fee_bps": settings.PAYOUTS.platform_fee_bps,
        "debits_allowed": False,
        "debit_consent_at": None,
    }


def test_put_stores_the_policy_audits_it_and_null_is_the_default_again(client, staff):
    seller = SellerFactory()

    response = put(client, seller.pk, {**BODY, "reason": "signed the debit mandate"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert {name: body[name] for name in BODY} == {
        **BODY,
        "debit_consent_at": "2026-12-01T10:00:00+00:00",
    }
    assert body["effective"]["fee_bps"] == 1200 and body["effective"]["debits_allowed"] is True
    change = SellerPolicyChange.objects.get(seller=seller)
    assert change.changed_by == staff and change.reason == "signed the debit mandate"
    assert change.before["fee_bps"] is None and change.after["fee_bps"] == 1200

    response = put(client, seller.pk, {"fee_bps": None})

    assert response.json()["effective"]["fee_bps"] == 1000  # PLATFORM_FEE_BPS
    assert response.json()["hold"] == "7d"  # a field not given is left alone
    assert SellerPolicyChange.objects.filter(seller=seller).count() == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reserve_bps": 10_001}, "reserve_bps"),
        ({"reserve_bps": -1}, "reserve_bps"),
        ({"reserve_days": 181}, "reserve_days"),
        ({"fee_bps": -5}, "fee_bps"),
        ({"fee_bps": "12"}, "fee_bps"),
        ({"hold": "soon"}, "hold"),
        ({"debits_allowed": True}, "debit_consent_at"),
        ({"debits_allowed": "yes", "debit_consent_at": BODY["debit_consent_at"]}, "debits_allowed"),
        ({"debit_consent_at": "yesterday"}, "debit_consent_at"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_changes_nothing(client, staff, body, field):
    seller = SellerFactory()
    put(client, seller.pk, {"fee_bps": 500})

    response = put(client, seller.pk, {"hold": "1d", **body})

    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith(f"{field}:")
    policy = SellerPolicy.objects.get(seller=seller)
    assert (policy.fee_bps, policy.hold) == (500, None)
    assert SellerPolicyChange.objects.filter(seller=seller).count() == 1


def test_an_unknown_seller_is_a_404(client, staff):
    assert put(client, 999_999, {"fee_bps": 100}).status_code == 404
    assert client.get("/api/admin/sellers/999999/policy/").status_code == 404


def test_changing_a_policy_needs_the_permission(client):
    client.force_login(staff_with())
    seller = SellerFactory()

    assert put(client, seller.pk, {"fee_bps": 100}).status_code == 403
    assert not SellerPolicy.objects.exists()


def test_a_policy_change_waits_for_a_second_person_when_the_rule_says_so(client, staff, settings):
    from dataclasses import replace

    from payouts.conf import ApprovalRule

    rules = {**settings.PAYOUTS.approvals.rules, "policy_change": ApprovalRule(always=True)}
    approvals = replace(settings.PAYOUTS.approvals, rules=rules)
    settings.PAYOUTS = replace(settings.PAYOUTS, approvals=approvals)
    seller = SellerFactory()

    response = put(client, seller.pk, {"fee_bps": 100})

    assert response.status_code == 202, response.content
    assert ApprovalRequest.objects.get().kind == "policy_change"
    assert not SellerPolicy.objects.exists()


def test_a_transfer_is_computed_with_the_sellers_fee_and_hold(
    client, sandbox, stripe_client, staff
):
    seller = connected_seller(stripe_client)
    other = connected_seller(stripe_client)
    put(client, seller.pk, {"fee_bps": 2500, "hold": "2d"})

    order, rows = paid_order(stripe_client, [1000, 1000], sellers=[seller, other], webhook=client)

    own, default = rows
    # The sandbox's fee leaves each seller a gross share of 1000 less half of Stripe's fee.
    gross = own.amount + own.platform_fee
    assert own.platform_fee == (gross * 2500 + 5000) // 10_000
    assert (own.status, own.held_reason) == (TransferStatus.HELD, HeldReason.AWAITING_RELEASE)
    assert own.next_retry_at - timezone.now() > timedelta(days=1, hours=23)
    assert own.policy == {
        "fee_bps": 2500,
        "hold": 2 * 86400,
        "risk": False,
        "reserve_bps": 0,
        "reserve_days": 30,
    }
    assert default.platform_fee == (gross * 1000 + 5000) // 10_000
    assert default.status == TransferStatus.COMPLETED
    assert default.policy == {
        "fee_bps": 1000,
        "hold": 0,
        "risk": False,
        "reserve_bps": 0,
        "reserve_days": 30,
    }


def test_the_admin_page_changes_only_the_fields_touched_through_the_same_service(client):
    user = staff_with("change_sellerpolicy", "view_sellerpolicy", "add_sellerpolicy")
    client.force_login(user)
    seller = SellerFactory()
    url = reverse("admin:payouts_sellerpolicy_add")

    refused = client.post(url, {"seller": seller.pk, "fee_bps": "20000", "hold": ""})
    assert refused.status_code == 200 and "fee_bps: 20000 is outside 0..10000" in (
        refused.content.decode()
    )
    assert not SellerPolicy.objects.exists()

    client.post(url, {"seller": seller.pk, "fee_bps": "700", "hold": "3d"})

    policy = SellerPolicy.objects.get(seller=seller)
    assert (policy.fee_bps, policy.hold, policy.reserve_bps) == (700, timedelta(days=3), None)
    change = SellerPolicyChange.objects.get(seller=seller)
    assert change.changed_by == user and change.after["hold"] == "3d"
