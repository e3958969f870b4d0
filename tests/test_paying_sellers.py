"""Paying sellers: a signed payment event → one Stripe transfer per seller."""

import pytest

from marketplace.models import Order
from payouts.models import SellerTransfer
from payouts.services.transfers import platform_fee
from payouts.transfer.transitions import TransferStatus
from tests.builders import connected_seller, make_event, paid_intent, post_event, seller_order


@pytest.mark.parametrize(
    ("gross", "bps", "fee"),
    [(1000, 1000, 100), (2005, 1000, 201), (3333, 1000, 333), (5, 1000, 1), (4, 1000, 0)],
)
def test_platform_fee_rounds_half_up(gross, bps, fee):
    assert platform_fee(gross, bps) == fee


@pytest.mark.django_db
def test_one_payment_event_pays_three_sellers_their_net_share(
    client, sandbox, stripe_client, django_capture_on_commit_callbacks
):
    sellers = [connected_seller(stripe_client) for _ in range(3)]
    order = seller_order(stripe_client, [1000, (1500, 505), 3333], sellers=sellers)

    with django_capture_on_commit_callbacks(execute=True):
        response = post_event(
            client, make_event("payment_intent.succeeded", paid_intent(stripe_client, order))
        )

    assert response.status_code == 200, response.content
    order.refresh_from_db()
    assert order.status == Order.Status.PAID
    assert order.stripe_charge_id.startswith("ch_")
    transfers = {t.seller_id: t for t in SellerTransfer.objects.filter(order=order)}
    expected = {sellers[0].pk: (900, 100), sellers[1].pk: (1804, 201), sellers[2].pk: (3000, 333)}
    assert {pk: (t.amount, t.platform_fee) for pk, t in transfers.items()} == expected
    assert {t.status for t in transfers.values()} == {TransferStatus.COMPLETED}
    at_stripe = {t["id"]: t for t in sandbox.state()["transfers"]}
    assert len(at_stripe) == 3
    for transfer in transfers.values():
        remote = at_stripe[transfer.stripe_transfer_id]
        assert remote["amount"] == transfer.amount
        assert remote["destination"] == transfer.seller.stripe_account_id
        assert remote["transfer_group"] == f"order_{order.pk}"
        assert remote["source_transaction"] == order.stripe_charge_id
        assert remote["metadata"] == {
            "order_id": str(order.pk),
            "seller_transfer_id": str(transfer.pk),
            # The row's creation time: with the id, it names the row after a database restore.
            "seller_transfer_created": str(int(transfer.created_at.timestamp() * 1_000_000)),
        }
