"""Disputes and chargebacks, through the signed endpoint with the sandbox's own events: the
sellers' share is recovered (when Stripe withdraws the funds, or only once lost), given back when
the dispute is won, never more than a seller received together with refunds, and owed as debt
by a seller whose balance cannot cover it."""

import random
from dataclasses import replace

import pytest

from ledger.selectors import seller_balances
from marketplace.models import Dispute, Order
from payouts.models import SellerTransfer
from payouts.services.ledger_check import ledger_check
from payouts.transfer.transitions import TransferStatus
from tests.builders import (
    DISPUTE_EVENTS,
    make_event,
    paid_order,
    post_event,
    refund_at_stripe,
    returned_at_stripe,
)
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def rows(order) -> list[SellerTransfer]:
    return list(SellerTransfer.objects.filter(order=order).order_by("amount"))


def test_a_chargeback_takes_each_sellers_share_back_and_a_won_dispute_gives_it_back(
    client, sandbox, stripe_client, deliver
):
    order, _ = paid_order(stripe_client, [1000, 2000, 3000], webhook=client)
    dispute = sandbox.open_dispute(order.stripe_charge_id)
    deliver(*DISPUTE_EVENTS)

    assert [(r.status, r.dispute_target, r.amount_reversed) for r in rows(order)] == [
        (TransferStatus.REVERSED, 900, 900),
        (TransferStatus.REVERSED, 1800, 1800),
        (TransferStatus.REVERSED, 2700, 2700),
    ]
    assert ledger_check()[1] == []

    sandbox.advance_dispute(dispute["id"], "won")
    deliver(*DISPUTE_EVENTS)

    assert Dispute.objects.get().status == Dispute.Status.WON
    for row in rows(order):
        assert (row.status, row.dispute_target, row.amount_returned) == (
            TransferStatus.COMPLETED,
            0,
            row.amount,
        )
        assert returned_at_stripe(sandbox, row) == [row.amount]
    assert ledger_check()[1] == []


def test_with_recovery_on_loss_nothing_moves_until_the_dispute_is_lost(
    client, sandbox, stripe_client, deliver, settings
):
    settings.PAYOUTS = replace(settings.PAYOUTS, dispute_recovery="on_loss")
    order, _ = paid_order(stripe_client, [1000, 2000], webhook=client)
    dispute = sandbox.open_dispute(order.stripe_charge_id)
    deliver(*DISPUTE_EVENTS)
    assert {r.status for r in rows(order)} == {TransferStatus.COMPLETED}
    assert sandbox.calls("reversals.create") == []

    sandbox.advance_dispute(dispute["id"], "lost")
    deliver(*DISPUTE_EVENTS)

    assert [(r.status, r.amount_reversed) for r in rows(order)] == [
        (TransferStatus.REVERSED, 900),
        (TransferStatus.REVERSED, 1800),
    ]
    assert ledger_check()[1] == []


def test_a_dispute_after_a_partial_refund_never_takes_more_than_a_seller_received(
    client, sandbox, stripe_client, deliver
):
    order, _ = paid_order(stripe_client, [1000, 3000], webhook=client)
    post_event(client, make_event("refund.created", refund_at_stripe(stripe_client, order, 2000)))
    deliver("refund.created")
    sandbox.open_dispute(order.stripe_charge_id, amount=4000)  # more than is left: capped
    deliver(*DISPUTE_EVENTS)

    assert [(r.reversal_target, r.dispute_target, r.amount_reversed) for r in rows(order)] == [
        (450, 450, 900),
        (1350, 1350, 2700),
    ]
    at_stripe = {t["id"]: t["amount_reversed"] for t in sandbox.ledger()["transfers"]}
    assert all(at_stripe[r.stripe_transfer_id] == r.amount for r in rows(order))
    assert ledger_check()[1] == []


def test_a_staff_refund_of_a_disputed_charge_is_refused(client, sandbox, stripe_client, deliver):
    order, _ = paid_order(stripe_client, [2000], webhook=client)
    sandbox.open_dispute(order.stripe_charge_id)
    deliver(*DISPUTE_EVENTS)
    client.force_login(UserFactory(is_superuser=True, is_staff=True))

    response = client.post(
        f"/api/admin/orders/{order.pk}/refund/", {"amount": 500}, content_type="application/json"
    )

    assert response.status_code == 409
    assert response.json()["code"] == "order_disputed"
    assert not order.refunds.exists()


def test_a_refund_reported_during_a_dispute_is_applied_within_what_the_seller_received(
    client, sandbox, stripe_client, deliver
):
    order, [row] = paid_order(stripe_client, [2000], webhook=client)
    sandbox.open_dispute(order.stripe_charge_id, amount=1500)
    deliver(*DISPUTE_EVENTS)
    refund = {
        "id": "re_during_dispute",
        "object": "refund",
        "amount": 1000,
        "currency": "usd",
        "status": "succeeded",
        "charge": order.stripe_charge_id,
        "payment_intent": order.stripe_payment_intent_id,
        "metadata": {},
    }

    deliver(events=[make_event("refund.created", refund)])

    row.refresh_from_db()
    assert row.reversal_target + row.dispute_target == row.amount == row.amount_reversed
    assert Order.objects.get(pk=order.pk).status == Order.Status.PARTIALLY_REFUNDED


def test_duplicated_and_shuffled_dispute_events_end_in_the_same_state(
    client, sandbox, stripe_client, deliver
):
    order, _ = paid_order(stripe_client, [1000, 2000], webhook=client)
    dispute = sandbox.open_dispute(order.stripe_charge_id)
    sandbox.advance_dispute(dispute["id"], "under_review")
    sandbox.advance_dispute(dispute["id"], "won")
    events = [e for e in sandbox.events() if e["type"] in DISPUTE_EVENTS]
    shuffled = events + events[:2]
    random.Random(7).shuffle(shuffled)

    deliver(events=shuffled)

    assert Dispute.objects.get().status == Dispute.Status.WON
    for row in rows(order):
        # Recovered then given back, or never recovered (the won event came first): all the
        # same to the seller.
        taken = row.amount_reversed - row.amount_returned
        assert (row.status, row.dispute_target, taken) == (TransferStatus.COMPLETED, 0, 0)
    assert ledger_check()[1] == []


def test_a_seller_who_cannot_cover_the_chargeback_owes_it_and_their_next_order_nets_it(
    client, sandbox, stripe_client, deliver
):
    order, [row] = paid_order(stripe_client, [2000], webhook=client)
    sandbox.simulate_payout(row.seller.stripe_account_id, 1800, "usd")
    sandbox.open_dispute(order.stripe_charge_id)
    deliver(*DISPUTE_EVENTS)

    row.refresh_from_db()
    assert (row.status, row.amount_owed) == (TransferStatus.REVERSAL_REFUSED, 1800)
    _, [next_row] = paid_order(stripe_client, [3000], webhook=client, sellers=[row.seller])

    assert (next_row.amount, next_row.amount_netted) == (2700, 1800)
    assert seller_balances(seller_id=row.seller_id) == {"usd": {"payable": 0, "debt": 0}}
    assert ledger_check()[1] == []


def test_sellers_bear_the_dispute_fee_in_proportion_when_configured(
    client, sandbox, stripe_client, deliver, settings
):
    settings.PAYOUTS = replace(settings.PAYOUTS, dispute_fee_borne_by="sellers")
    order, _ = paid_order(stripe_client, [1000, 3000], webhook=client)

    sandbox.open_dispute(order.stripe_charge_id, amount=1000)
    deliver(*DISPUTE_EVENTS)

    # 1,000 disputed and Stripe's 1,500 fee, of a 4,000 order: each seller gives back 62.5 %.
    assert [r.dispute_target for r in rows(order)] == [563, 1687]
    assert ledger_check()[1] == []
