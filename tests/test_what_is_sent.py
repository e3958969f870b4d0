"""What an unpaid transfer sends, and how a send whose outcome was never seen is found again:
kept-back chargeback shares, an account changed behind a lost answer, a row held after a 5xx."""

from dataclasses import replace
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from marketplace.models import AccountStatus
from marketplace.services import seller_account_set
from payouts.models import SellerTransfer
from payouts.services.holds import seller_account_updated, seller_deauthorized
from payouts.services.ledger_check import ledger_check
from payouts.services.reconciliation import transfers_compare_with_stripe
from payouts.services.transfers import transfer_send, transfers_send_due
from payouts.stripe_api.gateway import StripeAccount, StripeTransientError, get_gateway
from payouts.transfer.actors import Actor
from payouts.transfer.locks import claim_due
from payouts.transfer.transitions import TransferStatus
from tests.builders import (
    DISPUTE_EVENTS,
    make_due,
    make_event,
    paid_order,
    post_event,
    refund_at_stripe,
    transfers_at_stripe_for,
)
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_a_chargeback_during_the_hold_is_kept_back_and_paid_once_when_the_dispute_is_won(
    client, sandbox, stripe_client, settings, deliver, django_capture_on_commit_callbacks
):
    settings.PAYOUTS = replace(settings.PAYOUTS, transfer_hold=timedelta(days=7))
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="release_sellertransfer"))
    order, _ = paid_order(stripe_client, [1000], webhook=client)
    dispute = sandbox.open_dispute(order.stripe_charge_id)
    deliver(*DISPUTE_EVENTS)
    row = SellerTransfer.objects.get(order=order)
    assert (row.status, row.dispute_target) == (TransferStatus.HELD, 900)

    client.force_login(staff)
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            client.post(
                f"/api/admin/orders/{order.pk}/release/", content_type="application/json"
            ).status_code
            == 200
        )

    # All of the share is disputed: nothing is sent while the bank holds it.
    assert transfers_at_stripe_for(sandbox, row) == []
    assert ledger_check()[1] == []

    sandbox.advance_dispute(dispute["id"], "won")
    deliver(*DISPUTE_EVENTS)

    row.refresh_from_db()
    at_stripe = [t["amount"] for t in sandbox.state()["transfers"]]
    assert sum(at_stripe) == row.amount == 900
    assert ledger_check()[1] == []


def test_a_send_whose_answer_was_lost_is_found_after_the_seller_changed_account(
    sandbox, stripe_client
):
    order, [row, other] = paid_order(stripe_client, [1000, 3000], unpaid=[0, 1])
    later = timezone.now() + timedelta(days=1)
    SellerTransfer.objects.filter(pk=other.pk).update(next_retry_at=later)
    sandbox.script("transfers.create", [{"action": "drop_after_perform"}])
    make_due(row)
    transfers_send_due(order_id=order.pk)  # Stripe made the transfer; we never saw it
    new_account = stripe_client.v1.accounts.create(params={"type": "express"})
    seller_account_set(seller=row.seller, stripe_account_id=new_account.id)

    for _ in range(3):
        make_due(row)
        transfers_send_due(order_id=order.pk)
        row.refresh_from_db()
        if row.status == TransferStatus.COMPLETED:
            break

    assert row.status == TransferStatus.COMPLETED
    assert [t["amount"] for t in transfers_at_stripe_for(sandbox, row)] == [900]


class MadeThenAnswered500:
    """The gateway, except that Stripe makes the transfer and then answers 500."""

    def __init__(self, real):
        self.real = real

    def __getattr__(self, name):
        return getattr(self.real, name)

    def create_transfer(self, **params):
        self.real.create_transfer(**params)
        raise StripeTransientError(
            "boom", http_status=500, response_seen=True, may_have_executed=True
        )


def test_a_row_held_after_a_5xx_keeps_no_share_back_until_stripe_is_read(
    client, sandbox, stripe_client, django_capture_on_commit_callbacks
):
    order, [row, _] = paid_order(stripe_client, [1000, 3000], unpaid=[0, 1])
    row.seller.account_status = AccountStatus.READY
    row.seller.save()
    [claimed] = [
        c
        for c in claim_due(statuses=[TransferStatus.PENDING], now=timezone.now(), limit=10)
        if c.pk == row.pk
    ]
    transfer_send(claimed, gateway=MadeThenAnswered500(get_gateway()), actor=Actor("test"))
    seller_deauthorized(account_id=row.seller.stripe_account_id, actor=Actor("test"))
    with django_capture_on_commit_callbacks(execute=True):
        refund = refund_at_stripe(stripe_client, order, 2000)
        assert post_event(client, make_event("refund.created", refund)).status_code == 200

    account = StripeAccount(row.seller.stripe_account_id, True, "")
    with django_capture_on_commit_callbacks(execute=True):
        seller_account_updated(account=account, actor=Actor("test"))
    transfers_send_due(order_id=order.pk)

    row.refresh_from_db()
    # The transfer the 5xx hid is adopted, not sent again; the refund's share is taken back.
    assert [t["amount"] for t in transfers_at_stripe_for(sandbox, row)] == [900]
    assert (row.amount_withheld, row.reversal_target) == (0, 450)
    assert row.status in (TransferStatus.REVERSAL_PENDING, TransferStatus.PARTIALLY_REVERSED)


def test_reconciliation_compares_stripe_with_what_was_sent_and_records_a_dashboard_reversal(
    client, sandbox, stripe_client, settings, django_capture_on_commit_callbacks
):
    settings.PAYOUTS = replace(settings.PAYOUTS, transfer_hold=timedelta(days=7))
    order, _ = paid_order(stripe_client, [1000, 3000], webhook=client)
    event = make_event("refund.created", refund_at_stripe(stripe_client, order, 2000))
    with django_capture_on_commit_callbacks(execute=True):
        assert post_event(client, event).status_code == 200
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="release_sellertransfer"))
    client.force_login(staff)
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            client.post(
                f"/api/admin/orders/{order.pk}/release/", content_type="application/json"
            ).status_code
            == 200
        )
    row = SellerTransfer.objects.filter(order=order).order_by("amount").first()
    assert row.amount_withheld > 0  # sent less than its amount
    stripe_client.v1.transfers.reversals.create(row.stripe_transfer_id, params={"amount": 100})

    differences = transfers_compare_with_stripe(repair=True)

    row.refresh_from_db()
    assert row.amount_reversed == 100
    assert [d.transfer_id for d in differences if not d.repaired] == []
