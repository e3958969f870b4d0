"""Orders paid in one currency and settled in another: transfers, fees and every share are
computed in the settlement currency, from what Stripe's balance transactions say (the charge's
for the payment, each refund's own for the refund), never from the buyer's currency.

The expected figures are worked out by hand in each test, not by the code under test.
"""

import pytest
from django.urls import reverse

from ledger.models import Entry, EntryKind
from marketplace.models import Order, Refund
from payouts import tasks
from payouts.models import SellerTransfer, WebhookEvent, WebhookOutcome
from payouts.services.ledger_check import ledger_check
from payouts.services.transfers import orders_settle_due, platform_fee
from payouts.telemetry import EVENTS_REFUSED
from payouts.transfer.transitions import TransferStatus
from tests.builders import (
    STRIPE_500,
    make_event,
    paid_intent,
    paid_order,
    post_event,
    refund_at_stripe,
    seller_order,
)
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def rows(order: Order) -> list[SellerTransfer]:
    return list(SellerTransfer.objects.filter(order=order).order_by("pk"))


def stripe_transfers(sandbox, order: Order) -> list[dict]:
    return [t for t in sandbox.ledger()["transfers"] if t["transfer_group"] == f"order_{order.pk}"]


def refunded_from_sellers(order: Order) -> list[int]:
    return [row.amount_reversed for row in rows(order)]


def assert_books_agree_with_stripe(sandbox) -> None:
    ledger = sandbox.ledger()
    assert ledger["consistent"], ledger
    assert ledger_check()[1] == []  # the book, the rows and Stripe's transfers agree


@pytest.fixture
def usd_platform(sandbox):
    """A platform settling in USD, EUR converted at 1.0873, Stripe taking 2.9% + 30¢."""
    sandbox.set_settlement("usd", {"eur": 1.0873}, fee_percent=2.9, fee_fixed=30)
    return sandbox


@pytest.fixture
def eur_order(client, usd_platform, stripe_client):
    """€30.00, €45.00 and €25.00 from three sellers, paid through the webhook.

    €100.00 settles as $108.73; Stripe's fee is 2.9% of it (315.3 → 315) + 30 = 345, so the net
    is 10,528¢. Split by the items (30/45/25): 3158.4, 4737.6, 2632.0 → 3158, 4738 (the largest
    remainder takes the unit lost by flooring), 2632. The platform's 10% of each, half up: 316,
    474, 263. The sellers get 2842, 4264 and 2369."""
    order, _ = paid_order(stripe_client, [3000, 4500, 2500], webhook=client, currency="eur")
    return order


def test_a_eur_order_on_a_usd_platform_pays_each_seller_in_usd_from_the_settled_net(
    usd_platform, eur_order
):
    eur_order.refresh_from_db()
    assert (eur_order.settlement_currency, eur_order.settlement_amount) == ("usd", 10873)
    assert eur_order.settlement_net == 10528
    assert str(eur_order.exchange_rate) == "1.087300000000"
    assert eur_order.stripe_balance_transaction_id.startswith("txn_")
    assert eur_order.settlement_due_at is None

    assert [(r.currency, r.amount, r.platform_fee, r.status) for r in rows(eur_order)] == [
        ("usd", 2842, 316, TransferStatus.COMPLETED),
        ("usd", 4264, 474, TransferStatus.COMPLETED),
        ("usd", 2369, 263, TransferStatus.COMPLETED),
    ]
    assert sum(r.amount + r.platform_fee for r in rows(eur_order)) == eur_order.settlement_net
    at_stripe = stripe_transfers(usd_platform, eur_order)
    assert [(t["currency"], t["amount"]) for t in at_stripe] == [
        ("usd", 2842),
        ("usd", 4264),
        ("usd", 2369),
    ]
    payment = Entry.objects.get(kind=EntryKind.PAYMENT, order_id=eur_order.pk)
    assert {line.currency for line in payment.lines.all()} == {"usd"}
    assert_books_agree_with_stripe(usd_platform)


def test_a_partial_refund_at_another_rate_reverses_the_usd_shares_its_own_balance_transaction_says(
    client, usd_platform, stripe_client, eur_order, django_capture_on_commit_callbacks
):
    # The euro rose: €40.00 back to the buyer costs the platform $44.00 (its own balance
    # transaction), 4400 / 10873 of what the payment settled as. Of 2842, 4264 and 2369 that is
    # 1150.08, 1725.52 and 958.67 (3834.27 in all, rounded 3834): 1150, 1725 and 959.
    usd_platform.set_settlement(rates={"eur": 1.1})
    refund = refund_at_stripe(stripe_client, eur_order, 4000)

    with django_capture_on_commit_callbacks(execute=True):
        post_event(client, make_event("refund.created", refund))

    stored = Refund.objects.get(stripe_refund_id=refund["id"])
    assert (stored.settlement_currency, stored.settlement_amount) == ("usd", 4400)
    assert str(stored.exchange_rate) == "1.100000000000"
    assert refunded_from_sellers(eur_order) == [1150, 1725, 959]
    assert [t["amount_reversed"] for t in stripe_transfers(usd_platform, eur_order)] == [
        1150,
        1725,
        959,
    ]
    assert_books_agree_with_stripe(usd_platform)


def test_a_refund_in_another_currency_waits_for_its_balance_transaction_and_never_guesses(
    client, usd_platform, stripe_client, eur_order, django_capture_on_commit_callbacks
):
    refund = refund_at_stripe(stripe_client, eur_order, 4000)
    usd_platform.script("refunds.retrieve", [STRIPE_500])

    with django_capture_on_commit_callbacks(execute=True):
        post_event(client, make_event("refund.created", refund))

    stored = Refund.objects.get(stripe_refund_id=refund["id"])
    eur_order.refresh_from_db()
    assert eur_order.status == Order.Status.PARTIALLY_REFUNDED  # the buyer's side is done
    assert stored.settlement_amount is None and stored.settlement_due_at is not None
    assert refunded_from_sellers(eur_order) == [0, 0, 0]
    assert not Entry.objects.filter(kind=EntryKind.REFUND).exists()

    Refund.objects.filter(pk=stored.pk).update(settlement_due_at=stored.created_at)
    tasks.reversals_process_due()  # the sweep reads it, then reverses

    stored.refresh_from_db()
    assert stored.settlement_amount == 4349  # €40.00 at 1.0873 = 43.492 → 4349
    assert sum(refunded_from_sellers(eur_order)) == 3790  # 9475 × 4349 / 10873 = 3789.8
    assert_books_agree_with_stripe(usd_platform)


def test_a_full_refund_reverses_every_seller_exactly_whatever_the_rates(
    client, usd_platform, stripe_client, eur_order, django_capture_on_commit_callbacks
):
    # A partial refund when the euro rose, the rest when it fell: the two balance transactions
    # add up to 4400 + 6300 = 10700, less than the 10873 the payment settled as, but the buyer
    # has everything back, so every seller gives back everything.
    usd_platform.set_settlement(rates={"eur": 1.1})
    first = refund_at_stripe(stripe_client, eur_order, 4000)
    usd_platform.set_settlement(rates={"eur": 1.05})
    rest = refund_at_stripe(stripe_client, eur_order)

    for refund in (first, rest):
        with django_capture_on_commit_callbacks(execute=True):
            post_event(client, make_event("refund.created", refund))

    eur_order.refresh_from_db()
    assert eur_order.status == Order.Status.REFUNDED
    assert [(r.status, r.amount_reversed) for r in rows(eur_order)] == [
        (TransferStatus.REVERSED, 2842),
        (TransferStatus.REVERSED, 4264),
        (TransferStatus.REVERSED, 2369),
    ]
    assert [
        (t["amount"], t["amount_reversed"]) for t in stripe_transfers(usd_platform, eur_order)
    ] == [
        (2842, 2842),
        (4264, 4264),
        (2369, 2369),
    ]
    assert_books_agree_with_stripe(usd_platform)


def test_a_jpy_order_has_no_fractional_yen_and_the_fee_rounds_half_up(
    client, sandbox, stripe_client, django_capture_on_commit_callbacks
):
    # Settled in yen, no conversion. The platform's 10% of ¥1,005 is 100.5 → 101 (half up), of
    # ¥2,995 is 299.5 → 300: the sellers get ¥904 and ¥2,695.
    sandbox.set_settlement("jpy")
    assert (platform_fee(1005, 1000), platform_fee(2995, 1000)) == (101, 300)
    order, _ = paid_order(stripe_client, [1005, 2995], webhook=client, currency="jpy")

    assert [(r.currency, r.amount, r.platform_fee) for r in rows(order)] == [
        ("jpy", 904, 101),
        ("jpy", 2695, 300),
    ]
    # ¥1,001 back: 904 × 1001/4000 = 226.23 and 2695 × 1001/4000 = 674.42, 900.65 in all
    # (rounded 901): 226 and 675, whole yen.
    refund = refund_at_stripe(stripe_client, order, 1001)
    with django_capture_on_commit_callbacks(execute=True):
        post_event(client, make_event("refund.created", refund))

    assert refunded_from_sellers(order) == [226, 675]
    reversals = [a for t in stripe_transfers(sandbox, order) for a in t["reversal_amounts"]]
    assert reversals == [226, 675]
    assert_books_agree_with_stripe(sandbox)


def test_a_jpy_order_on_a_usd_platform_pays_whole_cents(
    client, sandbox, stripe_client, django_capture_on_commit_callbacks
):
    # ¥4,000 at 0.0067 is $26.80: 2680¢, split 1005/2995 → 673.35 and 2006.65 → 673, 2007;
    # less 10% (67.3 → 67, 200.7 → 201): 606 and 1806.
    sandbox.set_settlement("usd", {"jpy": 0.0067})
    order, _ = paid_order(stripe_client, [1005, 2995], webhook=client, currency="jpy")

    assert [(r.currency, r.amount, r.platform_fee) for r in rows(order)] == [
        ("usd", 606, 67),
        ("usd", 1806, 201),
    ]
    assert_books_agree_with_stripe(sandbox)


def test_an_order_whose_settlement_cannot_be_read_yet_is_paid_once_it_can(
    client, usd_platform, stripe_client, django_capture_on_commit_callbacks
):
    order, _ = paid_order(stripe_client, [3000, 4500, 2500], mark_paid=False, currency="eur")
    intent = stripe_client.v1.payment_intents.retrieve(order.stripe_payment_intent_id).to_dict()
    usd_platform.script("charges.retrieve", [STRIPE_500])

    with django_capture_on_commit_callbacks(execute=True):
        response = post_event(client, make_event("payment_intent.succeeded", intent))

    assert response.status_code == 200
    order.refresh_from_db()
    assert order.status == Order.Status.PAID and order.settlement_amount is None
    assert rows(order) == []  # nothing is sent in a currency we only guess
    assert stripe_transfers(usd_platform, order) == []

    Order.objects.filter(pk=order.pk).update(settlement_due_at=order.created_at)
    tasks.transfers_send_due()  # the sweep

    assert [(r.currency, r.amount, r.status) for r in rows(order)] == [
        ("usd", 2842, TransferStatus.COMPLETED),
        ("usd", 4264, TransferStatus.COMPLETED),
        ("usd", 2369, TransferStatus.COMPLETED),
    ]
    assert_books_agree_with_stripe(usd_platform)


@pytest.mark.parametrize("event_type", ["refund.created", "charge.dispute.created"])
def test_a_refund_or_dispute_in_a_currency_of_neither_the_order_nor_its_settlement_moves_nothing(
    client, usd_platform, stripe_client, eur_order, event_type
):
    refunded_before = EVENTS_REFUSED.labels(
        reason="dispute_currency" if "dispute" in event_type else "refund_currency"
    )._value.get()
    obj = {
        "id": "re_gbp" if event_type == "refund.created" else "dp_gbp",
        "object": "refund" if event_type == "refund.created" else "dispute",
        "amount": 1000,
        "currency": "gbp",
        "status": "succeeded" if event_type == "refund.created" else "needs_response",
        "charge": eur_order.stripe_charge_id,
        "payment_intent": eur_order.stripe_payment_intent_id,
        "metadata": {},
        "reason": "fraudulent",
        "balance_transactions": [],
    }

    response = post_event(client, make_event(event_type, obj))

    # Stored with its error (a replay can apply it once fixed); the answer says why.
    assert response.status_code == 422 and "gbp" in response.json()["detail"]
    event = WebhookEvent.objects.get(type=event_type)
    assert event.outcome == WebhookOutcome.FAILED
    assert "gbp" in event.error and "nothing" in event.error
    assert not Refund.objects.exists()
    assert refunded_from_sellers(eur_order) == [0, 0, 0]
    reason = "dispute_currency" if "dispute" in event_type else "refund_currency"
    assert EVENTS_REFUSED.labels(reason=reason)._value.get() == refunded_before + 1


def test_a_dispute_whose_funds_move_in_another_currency_than_the_settlement_moves_nothing(
    client, usd_platform, stripe_client, eur_order
):
    dispute = {
        "id": "dp_moved_in_gbp",
        "object": "dispute",
        "amount": 1000,
        "currency": "eur",
        "status": "needs_response",
        "charge": eur_order.stripe_charge_id,
        "payment_intent": eur_order.stripe_payment_intent_id,
        "reason": "fraudulent",
        "balance_transactions": [
            {"id": "txn_gbp", "amount": -870, "fee": 1500, "net": -2370, "currency": "gbp"}
        ],
    }

    post_event(client, make_event("charge.dispute.funds_withdrawn", dispute))

    event = WebhookEvent.objects.get(type="charge.dispute.funds_withdrawn")
    assert event.outcome == WebhookOutcome.FAILED and "gbp" in event.error
    assert not Entry.objects.filter(kind=EntryKind.DISPUTE_FUNDS).exists()
    assert [r.dispute_target for r in rows(eur_order)] == [0, 0, 0]


def test_a_chargeback_on_a_eur_order_recovers_what_stripe_withdrew_in_usd(
    client, usd_platform, stripe_client, eur_order, deliver
):
    # The whole €100.00 disputed, withdrawn at 1.0873: $108.73, all of the payment; each
    # seller's whole transfer is recovered, in USD.
    usd_platform.open_dispute(eur_order.stripe_charge_id)
    deliver(
        "charge.dispute.created",
        "charge.dispute.updated",
        "charge.dispute.funds_withdrawn",
    )

    assert [(r.dispute_target, r.amount_reversed) for r in rows(eur_order)] == [
        (2842, 2842),
        (4264, 4264),
        (2369, 2369),
    ]
    assert_books_agree_with_stripe(usd_platform)


def test_the_sweep_settles_every_due_order_in_batches_and_each_once(
    client, usd_platform, stripe_client
):
    orders = []
    for _ in range(5):
        order, _ = paid_order(stripe_client, [1000], mark_paid=False, currency="eur")
        intent = stripe_client.v1.payment_intents.retrieve(order.stripe_payment_intent_id)
        post_event(client, make_event("payment_intent.succeeded", intent.to_dict()))
        orders.append(order)  # paid; the send task after commit never ran

    assert orders_settle_due(limit=2) == 5

    assert [len(rows(order)) for order in orders] == [1] * 5
    assert len(usd_platform.calls("charges.retrieve")) == 5
    assert not Order.objects.filter(settlement_due_at__isnull=False).exists()


def test_the_order_and_dispute_pages_show_the_settlement_and_what_is_recovered(
    client, usd_platform, eur_order, deliver
):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    usd_platform.open_dispute(eur_order.stripe_charge_id)
    deliver("charge.dispute.created", "charge.dispute.funds_withdrawn")

    order_page = client.get(reverse("admin:marketplace_order_change", args=[eur_order.pk]))
    disputes = client.get(reverse("admin:marketplace_dispute_changelist"))

    assert order_page.status_code == 200
    text = order_page.content.decode()
    assert "108.73 USD</span> at 1.0873" in text and "105.28 USD" in text
    assert disputes.status_code == 200
    listed = disputes.content.decode()
    assert "100.00 EUR" in listed  # disputed, in the buyer's currency
    assert "108.73 USD" in listed  # withdrawn by Stripe
    assert "94.75 USD" in listed  # recovered from the three sellers: 2842 + 4264 + 2369


@pytest.mark.parametrize("currency", ["usd", "eur"])
def test_a_refund_whose_event_comes_before_the_payments_counts_in_the_settlement_currency(
    client, sandbox, stripe_client, currency, django_capture_on_commit_callbacks
):
    sandbox.set_settlement("usd", {"eur": 1.0873}, fee_percent=2.9, fee_fixed=30)
    order = seller_order(stripe_client, [1000, 3000], currency=currency)
    intent = paid_intent(stripe_client, order)
    Order.objects.filter(pk=order.pk).update(stripe_payment_intent_id=intent["id"])
    order.refresh_from_db()
    refund = refund_at_stripe(stripe_client, order, 4000)  # all of it
    with django_capture_on_commit_callbacks(execute=True):
        assert post_event(client, make_event("refund.created", refund)).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        paid = make_event("payment_intent.succeeded", intent)
        assert post_event(client, paid).status_code == 200
    tasks.reversals_process_due()

    order.refresh_from_db()
    stored = Refund.objects.get(order=order)
    assert order.status == Order.Status.REFUNDED
    assert (stored.settlement_currency, stored.settlement_amount) == (
        "usd",
        order.settlement_amount,
    )
    # Nothing stays with the sellers, and the book agrees with the rows and Stripe.
    kept = [t["amount"] - t["amount_reversed"] for t in sandbox.state()["transfers"]]
    assert sum(kept) == 0
    assert ledger_check()[1] == []
