"""The transfer sender and its retry worker against the Stripe sandbox."""

from dataclasses import replace
from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.models import Order
from payouts import tasks
from payouts.models import SellerTransfer
from payouts.services.transfers import transfer_group
from payouts.stripe_api.gateway import get_gateway
from payouts.transfer.idempotency import transfer_key
from payouts.transfer.locks import claim_due
from payouts.transfer.transitions import TransferStatus
from tests.builders import (
    STRIPE_500,
    make_due,
    make_event,
    paid_order,
    post_event,
    refund_at_stripe,
    transfers_at_stripe_for,
)
from tests.factories import SellerFactory, SellerTransferFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def retry_policy(settings):
    """Short, countable retries: two after the first attempt, 1 s base, 10 s cap."""
    settings.PAYOUTS = replace(
        settings.PAYOUTS,
        transfer_retry=replace(
            settings.PAYOUTS.transfer_retry,
            enabled=True,
            max_retries=2,
            backoff_base=timedelta(seconds=1),
            backoff_max=timedelta(seconds=10),
        ),
    )
    return settings.PAYOUTS.transfer_retry


def unsent_transfer(stripe_client, *, seller=None) -> SellerTransfer:
    """A one-seller order of 2,000 paid at the sandbox, with its transfer row created and not yet
    sent."""
    _, [transfer] = paid_order(
        stripe_client, [2000], unpaid=[0], sellers=[seller] if seller else None
    )
    return transfer


def test_a_stripe_500_leaves_the_row_failed_with_the_error_and_the_first_backoff(
    sandbox, stripe_client, retry_policy
):
    transfer = unsent_transfer(stripe_client)
    sandbox.script("transfers.create", [STRIPE_500])

    before = timezone.now()
    tasks.order_transfers_send(order_id=transfer.order_id)
    after = timezone.now()

    transfer.refresh_from_db()
    assert transfer.status == TransferStatus.FAILED
    assert "500" in transfer.error_message
    assert "boom" in transfer.error_message
    assert transfer.retry_count == 1
    assert before + retry_policy.backoff_base <= transfer.next_retry_at
    assert transfer.next_retry_at <= after + retry_policy.backoff_base
    assert transfer.stripe_transfer_id == ""
    assert sandbox.state()["transfers"] == []


def test_the_retry_after_a_500_reads_stripe_first_then_completes_with_one_transfer(
    sandbox, stripe_client, retry_policy
):
    transfer = unsent_transfer(stripe_client)
    sandbox.script("transfers.create", [STRIPE_500])
    tasks.order_transfers_send(order_id=transfer.order_id)
    make_due(transfer)

    summary = tasks.transfers_send_due()

    assert summary == {"completed": 1}
    transfer.refresh_from_db()
    assert transfer.status == TransferStatus.COMPLETED
    assert (transfer.error_message, transfer.next_retry_at) == ("", None)
    [remote] = transfers_at_stripe_for(sandbox, transfer)
    assert transfer.stripe_transfer_id == remote["id"]
    # Stripe stored the 500 under the first key, so the retry took a new one, and looked for
    # a transfer the 500 might have hidden before sending with it.
    steps = [c for c in sandbox.calls() if c["operation"].startswith("transfers.")]
    assert [c["operation"] for c in steps] == [
        "transfers.create",
        "transfers.list",
        "transfers.create",
    ]
    assert steps[0]["idempotency_key"] != steps[2]["idempotency_key"]


def test_the_retry_after_a_500_adopts_the_transfer_stripe_made_despite_the_error(
    sandbox, stripe_client, retry_policy
):
    transfer = unsent_transfer(stripe_client)
    sandbox.script("transfers.create", [STRIPE_500])
    tasks.order_transfers_send(order_id=transfer.order_id)
    order = transfer.order
    # What the 500 hid: Stripe did make the transfer (same group and metadata as our request).
    hidden = stripe_client.v1.transfers.create(
        params={
            "amount": transfer.amount,
            "currency": transfer.currency,
            "destination": transfer.seller.stripe_account_id,
            "transfer_group": transfer_group(order),
            "source_transaction": order.stripe_charge_id,
            "metadata": {"order_id": str(order.pk), "seller_transfer_id": str(transfer.pk)},
        }
    )
    make_due(transfer)

    tasks.transfers_send_due()

    transfer.refresh_from_db()
    assert transfer.status == TransferStatus.COMPLETED
    assert transfer.stripe_transfer_id == hidden.id
    assert [t["id"] for t in transfers_at_stripe_for(sandbox, transfer)] == [hidden.id]


def test_a_row_failing_past_max_retries_ends_permanently_failed_after_one_plus_max_attempts(
    sandbox, stripe_client, retry_policy
):
    transfer = unsent_transfer(stripe_client)
    sandbox.script("transfers.create", [STRIPE_500] * (1 + retry_policy.max_retries + 1))

    tasks.order_transfers_send(order_id=transfer.order_id)
    for _ in range(retry_policy.max_retries):
        transfer.refresh_from_db()
        assert transfer.status == TransferStatus.FAILED
        make_due(transfer)
        tasks.transfers_send_due()
    # Another tick finds nothing due: the row has given up.
    tasks.transfers_send_due()

    transfer.refresh_from_db()
    assert transfer.status == TransferStatus.PERMANENTLY_FAILED
    assert transfer.next_retry_at is None
    assert "boom" in transfer.error_message
    assert len(sandbox.calls("transfers.create")) == 1 + retry_policy.max_retries
    assert sandbox.state()["transfers"] == []


def test_a_seller_without_a_connected_account_fails_clearly_without_calling_stripe(
    sandbox, stripe_client, retry_policy
):
    seller = SellerFactory(stripe_account_id="")
    transfer = unsent_transfer(stripe_client, seller=seller)
    calls_before = len(sandbox.calls())

    tasks.order_transfers_send(order_id=transfer.order_id)

    transfer.refresh_from_db()
    assert transfer.status == TransferStatus.FAILED
    assert "no connected Stripe account" in transfer.error_message
    assert transfer.retry_count == 1
    assert transfer.next_retry_at is not None
    assert len(sandbox.calls()) == calls_before


def test_a_response_lost_after_stripe_performed_keeps_the_key_and_the_retry_replays_it(
    sandbox, stripe_client, retry_policy
):
    transfer = unsent_transfer(stripe_client)
    first_key = transfer_key(transfer)
    sandbox.script("transfers.create", [{"action": "drop_after_perform"}])

    tasks.order_transfers_send(order_id=transfer.order_id)

    transfer.refresh_from_db()
    assert transfer.status == TransferStatus.FAILED
    assert transfer.transfer_idempotency_key == first_key
    [made] = transfers_at_stripe_for(sandbox, transfer)

    make_due(transfer)
    tasks.transfers_send_due()

    transfer.refresh_from_db()
    assert transfer.status == TransferStatus.COMPLETED
    assert transfer.stripe_transfer_id == made["id"]
    assert len(transfers_at_stripe_for(sandbox, transfer)) == 1
    creates = sandbox.calls("transfers.create")
    assert [(c["idempotency_key"], c["outcome"]) for c in creates] == [
        (first_key, "dropped_after_perform"),
        (first_key, "replayed"),
    ]


def test_a_pending_row_whose_worker_died_after_paying_completes_without_a_second_transfer(
    sandbox, stripe_client, retry_policy
):
    unsent = unsent_transfer(stripe_client)
    # The dead worker: it claimed the row, paid the seller, and died before recording it.
    [claimed] = claim_due(
        statuses=[TransferStatus.PENDING], now=timezone.now(), limit=1, order_id=unsent.order_id
    )
    order = claimed.order
    paid = get_gateway().create_transfer(
        amount=claimed.amount,
        currency=claimed.currency,
        destination=claimed.seller.stripe_account_id,
        transfer_group=transfer_group(order),
        source_transaction=order.stripe_charge_id or None,
        metadata={
            "order_id": str(order.pk),
            "seller_transfer_id": str(claimed.pk),
            "seller_transfer_created": str(int(claimed.created_at.timestamp() * 1_000_000)),
        },
        idempotency_key=transfer_key(claimed),
    )
    make_due(claimed)  # its lease ran out
    claimed.refresh_from_db()
    assert claimed.status == TransferStatus.PENDING

    summary = tasks.transfers_send_due()

    assert summary == {"completed": 1}
    claimed.refresh_from_db()
    assert claimed.status == TransferStatus.COMPLETED
    assert claimed.stripe_transfer_id == paid.id
    assert [t["id"] for t in transfers_at_stripe_for(sandbox, claimed)] == [paid.id]


def test_with_the_retry_worker_disabled_a_tick_reports_disabled_and_touches_nothing(
    sandbox, settings, retry_policy
):
    settings.PAYOUTS = replace(
        settings.PAYOUTS, transfer_retry=replace(settings.PAYOUTS.transfer_retry, enabled=False)
    )
    transfer = SellerTransferFactory(
        status=TransferStatus.FAILED,
        retry_count=1,
        error_message="Stripe 500: boom",
        next_retry_at=timezone.now() - timedelta(minutes=5),
    )
    before = SellerTransfer.objects.values().get(pk=transfer.pk)

    summary = tasks.transfers_send_due()

    assert summary == {"disabled": 1}
    assert SellerTransfer.objects.values().get(pk=transfer.pk) == before
    assert sandbox.calls() == []


def test_a_seller_not_yet_paid_when_the_order_is_fully_refunded_is_never_paid(
    client, sandbox, stripe_client
):
    order = refunded_order_with_one_unpaid_seller(
        client, sandbox, stripe_client, script=[STRIPE_500]
    )
    row = SellerTransfer.objects.get(order=order)
    creates_before = len(sandbox.calls("transfers.create"))

    tasks.transfers_send_due()

    row.refresh_from_db()
    assert row.status == TransferStatus.PERMANENTLY_FAILED
    assert "fully refunded before the seller was paid" in row.error_message
    assert len(sandbox.calls("transfers.create")) == creates_before
    assert sandbox.state()["transfers"] == []


def test_a_transfer_paid_behind_a_lost_answer_is_reversed_not_forgotten_after_a_full_refund(
    client, sandbox, stripe_client
):
    order = refunded_order_with_one_unpaid_seller(
        client, sandbox, stripe_client, script=[{"action": "drop_after_perform"}]
    )
    row = SellerTransfer.objects.get(order=order)
    [paid_at_stripe] = sandbox.state()["transfers"]
    assert row.status == TransferStatus.FAILED  # we never saw Stripe's answer

    tasks.transfers_send_due()

    row.refresh_from_db()
    assert row.stripe_transfer_id == paid_at_stripe["id"]
    assert (row.status, row.reversal_target) == (TransferStatus.REVERSAL_PENDING, row.amount)
    assert len(sandbox.state()["transfers"]) == 1


def refunded_order_with_one_unpaid_seller(client, sandbox, stripe_client, *, script):
    """An order of one seller whose first transfer attempt meets ``script``, then is refunded
    in full (the refund webhook arrives while the row is ``failed``); the row is due again."""
    sandbox.script("transfers.create", script)
    order, _ = paid_order(stripe_client, [1000], webhook=client)
    refund = refund_at_stripe(stripe_client, order)
    assert post_event(client, make_event("refund.created", refund)).status_code == 200
    order.refresh_from_db()
    assert order.status == Order.Status.REFUNDED
    SellerTransfer.objects.filter(order=order).update(next_retry_at=timezone.now())
    return order
