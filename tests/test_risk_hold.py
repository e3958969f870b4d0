"""Risk holds: a seller whose disputes pass both thresholds (count and ratio) has their next
transfers held with the reason ``risk``, which no time ends; staff release them (audited, through
the approvals app) and they are paid; the console lists the seller meanwhile."""

from dataclasses import replace
from decimal import Decimal

import pytest
from django.urls import reverse

from payouts.models import SellerPolicyChange
from payouts.services.holds import holds_release_due
from payouts.services.ledger_check import ledger_check
from payouts.transfer.transitions import HeldReason, TransferStatus
from tests.builders import DISPUTE_EVENTS, connected_seller, paid_order, staff_with
from tests.factories import SellerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def thresholds(settings):
    """Held once two disputed orders are at least half of the seller's paid orders."""
    settings.PAYOUTS = replace(
        settings.PAYOUTS, risk_dispute_count=2, risk_dispute_ratio=Decimal("0.5")
    )


def disputed_order(client, sandbox, stripe_client, seller, deliver):
    order, _ = paid_order(stripe_client, [1000], sellers=[seller], webhook=client)
    sandbox.open_dispute(order.stripe_charge_id)
    deliver(*DISPUTE_EVENTS)
    return order


def test_past_both_thresholds_the_next_transfer_is_held_until_staff_release_it(
    client, sandbox, stripe_client, deliver, thresholds, django_capture_on_commit_callbacks
):
    seller = connected_seller(stripe_client)
    disputed_order(client, sandbox, stripe_client, seller, deliver)
    _, [row] = paid_order(stripe_client, [1000], sellers=[seller], webhook=client)
    assert row.status == TransferStatus.COMPLETED  # one dispute: under the count
    disputed_order(client, sandbox, stripe_client, seller, deliver)

    order, [held] = paid_order(stripe_client, [1000], sellers=[seller], webhook=client)

    assert (held.status, held.held_reason) == (TransferStatus.HELD, HeldReason.RISK)
    assert held.policy["risk"] is True
    assert held.stripe_transfer_id == ""
    assert holds_release_due() == {"released": 0}  # no time ends a risk hold
    assert ledger_check()[1] == []
    staff = staff_with("change_sellerpolicy", is_superuser=True)
    client.force_login(staff)
    board = client.get(reverse("admin:index")).content.decode()
    assert 'data-figure="risk-held-sellers">1<' in board
    report = client.get(reverse("admin:needs_attention")).content.decode()
    assert f'data-risk-held="{seller.pk}-usd"' in report
    assert "payouts_risk_held_sellers 1.0" in client.get("/metrics").content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/api/admin/sellers/{seller.pk}/risk-release/",
            {"reason": "disputes explained"},
            content_type="application/json",
        )

    assert response.status_code == 200, response.content
    held.refresh_from_db()
    assert held.status == TransferStatus.COMPLETED and held.stripe_transfer_id
    change = SellerPolicyChange.objects.get(seller=seller, kind="risk_release")
    assert change.changed_by == staff and change.after["released"] == [held.pk]
    # The count starts again at the release: the disputes already judged hold nothing more.
    _, [after] = paid_order(stripe_client, [1000], sellers=[seller], webhook=client)
    assert after.status == TransferStatus.COMPLETED
    assert ledger_check()[1] == []
    board = client.get(reverse("admin:index")).content.decode()
    assert 'data-figure="risk-held-sellers">0<' in board


def test_a_high_count_under_the_ratio_holds_nothing(
    client, sandbox, stripe_client, deliver, settings
):
    settings.PAYOUTS = replace(
        settings.PAYOUTS, risk_dispute_count=1, risk_dispute_ratio=Decimal("0.9")
    )
    seller = connected_seller(stripe_client)
    paid_order(stripe_client, [1000], sellers=[seller], webhook=client)
    disputed_order(client, sandbox, stripe_client, seller, deliver)

    _, [row] = paid_order(stripe_client, [1000], sellers=[seller], webhook=client)

    assert row.status == TransferStatus.COMPLETED  # 1 of 2 paid orders disputed: under 90 %


def test_releasing_a_seller_with_nothing_held_for_risk_is_a_409(client):
    seller = SellerFactory()
    client.force_login(staff_with("change_sellerpolicy"))

    response = client.post(
        f"/api/admin/sellers/{seller.pk}/risk-release/", {}, content_type="application/json"
    )

    assert response.status_code == 409 and response.json()["code"] == "no_risk_hold"
    assert (
        client.post(
            "/api/admin/sellers/999999/risk-release/", {}, content_type="application/json"
        ).status_code
        == 404
    )
