"""Connected accounts that cannot receive: their transfers wait, spending no retries, and go out
the moment Stripe's Connect endpoint says the account can receive again; a seller who
disconnects has their unsent transfers held for staff. Connect events come to their own
endpoint, signed with its own secret."""

import time

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from marketplace.models import Order, Seller
from payouts.models import SellerTransfer, WebhookEvent, WebhookOutcome
from payouts.services.ledger_check import ledger_check
from payouts.services.reversals import reversals_process_due
from payouts.transfer.transitions import HeldReason, TransferStatus
from tests.builders import (
    WEBHOOK_SECRET,
    connected_seller,
    make_event,
    paid_order,
    post_connect_event,
    post_event,
    refund_at_stripe,
    returned_at_stripe,
)
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def account_object(stripe_client, account_id: str) -> dict:
    return stripe_client.v1.accounts.retrieve(account_id).to_dict()


def test_a_restricted_sellers_transfer_waits_and_is_paid_once_the_account_is_fixed(
    client, sandbox, stripe_client, django_capture_on_commit_callbacks
):
    sellers = [connected_seller(stripe_client) for _ in range(3)]
    restricted = sellers[1]
    sandbox.set_transfers_capability(
        restricted.stripe_account_id, "inactive", disabled_reason="requirements.past_due"
    )

    order, rows = paid_order(stripe_client, [1000, 2000, 3000], webhook=client, sellers=sellers)

    assert [row.status for row in rows] == [
        TransferStatus.COMPLETED,
        TransferStatus.HELD,
        TransferStatus.COMPLETED,
    ]
    assert (rows[1].held_reason, rows[1].retry_count) == (HeldReason.ACCOUNT_RESTRICTED, 0)
    assert "requirements.past_due" in rows[1].error_message
    assert Seller.objects.get(pk=restricted.pk).account_status == Seller.AccountStatus.RESTRICTED

    sandbox.set_transfers_capability(restricted.stripe_account_id, "active")
    account = account_object(stripe_client, restricted.stripe_account_id)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_connect_event(
            client, "account.updated", account, account=restricted.stripe_account_id
        )

    assert response.status_code == 200, response.content
    row = SellerTransfer.objects.get(pk=rows[1].pk)
    assert (row.status, row.retry_count) == (TransferStatus.COMPLETED, 0)
    [remote] = [t for t in sandbox.state()["transfers"] if t["id"] == row.stripe_transfer_id]
    assert (remote["amount"], remote["destination"]) == (1800, restricted.stripe_account_id)
    assert ledger_check()[1] == []


def test_a_transfer_stripe_refuses_for_the_accounts_capabilities_is_held_not_retried(
    client, sandbox, stripe_client
):
    seller = connected_seller(stripe_client, account_status=Seller.AccountStatus.READY)
    sandbox.set_transfers_capability(seller.stripe_account_id, "inactive")

    _, [row] = paid_order(stripe_client, [2000], webhook=client, sellers=[seller])

    assert (row.status, row.retry_count, row.next_retry_at) == (TransferStatus.HELD, 0, None)
    assert "insufficient_capabilities_for_transfer" in row.error_message
    seller.refresh_from_db()
    assert seller.account_status == Seller.AccountStatus.RESTRICTED


def test_a_seller_who_disconnects_has_their_unsent_transfers_held_for_staff(
    client, sandbox, stripe_client
):
    order, [paid, unsent] = paid_order(stripe_client, [1000, 2000], unpaid=[1])
    account = unsent.seller.stripe_account_id

    response = post_connect_event(
        client, "account.application.deauthorized", {"id": "ca_platform", "object": "application"},
        account=account,
    )  # fmt: skip

    assert response.status_code == 200, response.content
    unsent.refresh_from_db()
    assert (unsent.status, unsent.held_reason) == (
        TransferStatus.HELD,
        HeldReason.ACCOUNT_DEAUTHORIZED,
    )
    assert unsent.seller.account_status == Seller.AccountStatus.DEAUTHORIZED
    paid.refresh_from_db()
    assert paid.status == TransferStatus.COMPLETED


def test_a_connect_event_signed_with_the_platform_secret_is_refused(client, sandbox):
    response = post_connect_event(
        client, "account.updated", {"id": "acct_1"}, account="acct_1", secret=WEBHOOK_SECRET
    )

    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


def test_a_platform_event_on_the_connect_endpoint_and_the_reverse_are_refused(client, sandbox):
    connect_event = {**make_event("account.updated", {"id": "acct_1"}), "account": "acct_1"}

    on_platform = post_event(client, connect_event)
    on_connect = post_connect_event(
        client, "account.updated", {"id": "acct_1"}, account=""
    )  # no account: not a Connect event

    assert (on_platform.status_code, on_connect.status_code) == (400, 400)
    assert "account" in on_platform.json()["detail"]
    assert not WebhookEvent.objects.exists()


def test_other_connect_events_are_stored_and_ignored(client, sandbox):
    response = post_connect_event(client, "payout.paid", {"id": "po_1"}, account="acct_1")

    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert (event.outcome, event.account) == (WebhookOutcome.IGNORED, "acct_1")


def test_an_account_update_older_than_the_one_applied_does_not_restrict_the_seller(
    client, sandbox, stripe_client
):
    seller = connected_seller(stripe_client)
    account_id = seller.stripe_account_id
    sandbox.set_transfers_capability(
        account_id, "inactive", disabled_reason="requirements.past_due"
    )
    restricted = account_object(stripe_client, account_id)
    sandbox.set_transfers_capability(account_id, "active")
    ready = account_object(stripe_client, account_id)
    now = int(time.time())

    post_connect_event(client, "account.updated", ready, account=account_id, created=now)
    # Stripe does not deliver in order: the restriction, a minute older, arrives last.
    late = post_connect_event(
        client, "account.updated", restricted, account=account_id, created=now - 60
    )

    assert late.status_code == 200, late.content
    seller.refresh_from_db()
    assert seller.account_status == Seller.AccountStatus.READY
    _, [row] = paid_order(stripe_client, [2000], webhook=client, sellers=[seller])
    assert row.status == TransferStatus.COMPLETED


def test_a_newer_account_update_still_restricts_the_seller(client, sandbox, stripe_client):
    seller = connected_seller(stripe_client)
    account_id = seller.stripe_account_id
    ready = account_object(stripe_client, account_id)
    sandbox.set_transfers_capability(
        account_id, "inactive", disabled_reason="requirements.past_due"
    )
    restricted = account_object(stripe_client, account_id)
    now = int(time.time())

    post_connect_event(client, "account.updated", ready, account=account_id, created=now - 60)
    post_connect_event(client, "account.updated", restricted, account=account_id, created=now)

    seller.refresh_from_db()
    assert seller.account_status == Seller.AccountStatus.RESTRICTED


def test_a_restriction_of_the_same_second_arriving_after_the_fix_does_not_strand_the_seller(
    client, sandbox, stripe_client
):
    seller = connected_seller(stripe_client)
    account_id = seller.stripe_account_id
    sandbox.set_transfers_capability(
        account_id, "inactive", disabled_reason="requirements.past_due"
    )
    restricted = account_object(stripe_client, account_id)
    sandbox.set_transfers_capability(account_id, "active")
    ready = account_object(stripe_client, account_id)
    # Stripe stamps events to the second: the restriction and the fix share one, and Stripe
    # delivers them in any order. Nothing later comes: the account is fine now.
    now = int(time.time())

    post_connect_event(client, "account.updated", ready, account=account_id, created=now)
    late = post_connect_event(
        client, "account.updated", restricted, account=account_id, created=now
    )

    assert late.status_code == 200, late.content
    seller.refresh_from_db()
    assert seller.account_status == Seller.AccountStatus.READY
    _, [row] = paid_order(stripe_client, [2000], webhook=client, sellers=[seller])
    assert row.status == TransferStatus.COMPLETED


def test_a_fix_of_the_same_second_arriving_after_a_later_restriction_is_caught_by_stripe(
    client, sandbox, stripe_client
):
    seller = connected_seller(stripe_client)
    account_id = seller.stripe_account_id
    ready = account_object(stripe_client, account_id)
    sandbox.set_transfers_capability(
        account_id, "inactive", disabled_reason="requirements.past_due"
    )
    restricted = account_object(stripe_client, account_id)
    now = int(time.time())

    # The account really ends restricted, but its two events of one second arrive the other
    # way round: the seller is taken as ready, and Stripe's refusal of the send holds the row.
    post_connect_event(client, "account.updated", restricted, account=account_id, created=now)
    post_connect_event(client, "account.updated", ready, account=account_id, created=now)
    _, [row] = paid_order(stripe_client, [2000], webhook=client, sellers=[seller])

    assert (row.status, row.held_reason) == (TransferStatus.HELD, HeldReason.ACCOUNT_RESTRICTED)
    assert row.retry_count == 0
    seller.refresh_from_db()
    assert seller.account_status == Seller.AccountStatus.RESTRICTED


def test_a_disconnected_seller_given_a_new_account_is_paid(
    client, sandbox, stripe_client, django_capture_on_commit_callbacks
):
    order, [paid, unsent] = paid_order(stripe_client, [1000, 2000], unpaid=[1])
    seller = unsent.seller
    post_connect_event(
        client, "account.application.deauthorized", {"id": "ca_platform", "object": "application"},
        account=seller.stripe_account_id,
    )  # fmt: skip
    unsent.refresh_from_db()
    assert (unsent.status, unsent.held_reason) == (
        TransferStatus.HELD,
        HeldReason.ACCOUNT_DEAUTHORIZED,
    )
    new_account = stripe_client.v1.accounts.create(params={"type": "express"})
    admin = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(admin)

    # Staff reconnect the seller on their admin page.
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:marketplace_seller_change", args=[seller.pk]),
            {
                "name": seller.name,
                "email": seller.email,
                "stripe_account_id": new_account.id,
                # The (read-only) inline of earlier account changes.
                "account_changes-TOTAL_FORMS": "0",
                "account_changes-INITIAL_FORMS": "0",
            },
        )

    assert response.status_code == 302, response.content
    unsent.refresh_from_db()
    assert (unsent.status, unsent.held_reason) == (TransferStatus.COMPLETED, "")
    [remote] = [t for t in sandbox.state()["transfers"] if t["id"] == unsent.stripe_transfer_id]
    assert (remote["amount"], remote["destination"]) == (1800, new_account.id)
    assert ledger_check()[1] == []


def test_a_give_back_to_an_account_that_cannot_receive_waits_and_is_sent_once_it_can(
    client, sandbox, stripe_client, deliver, django_capture_on_commit_callbacks
):
    order, [row] = paid_order(stripe_client, [2000], webhook=client)
    refund = refund_at_stripe(stripe_client, order)
    deliver("refund.created")
    row.refresh_from_db()
    assert (row.status, row.amount_reversed) == (TransferStatus.REVERSED, 1800)
    account_id = row.seller.stripe_account_id
    sandbox.set_transfers_capability(
        account_id, "inactive", disabled_reason="requirements.past_due"
    )

    # The refund fails: the 18.00 taken back is to be given back, to an account that cannot
    # receive. However often the worker comes by, the give-back waits and spends no retry.
    sandbox.fail_refund(refund["id"], "expired_or_canceled_card")
    deliver("refund.failed")
    for _ in range(settings.PAYOUTS.reversal.max_retries + 2):
        SellerTransfer.objects.filter(pk=row.pk).update(next_retry_at=timezone.now())
        reversals_process_due()

    row.refresh_from_db()
    assert (row.status, row.retry_count, row.amount_to_give_back) == (
        TransferStatus.REVERSAL_PENDING,
        0,
        1800,
    )
    assert row.held_reason == HeldReason.ACCOUNT_RESTRICTED
    assert returned_at_stripe(sandbox, row) == []

    sandbox.set_transfers_capability(account_id, "active")
    account = account_object(stripe_client, account_id)
    with django_capture_on_commit_callbacks(execute=True):
        post_connect_event(client, "account.updated", account, account=account_id)

    row.refresh_from_db()
    assert (row.status, row.amount_returned, row.held_reason) == (
        TransferStatus.COMPLETED,
        1800,
        "",
    )
    assert returned_at_stripe(sandbox, row) == [1800]
    assert ledger_check()[1] == []


def test_a_transfer_stripe_refused_for_the_account_is_sent_once_the_account_is_fixed(
    client, sandbox, stripe_client, django_capture_on_commit_callbacks
):
    seller = connected_seller(stripe_client, account_status=Seller.AccountStatus.READY)
    sandbox.set_transfers_capability(seller.stripe_account_id, "inactive")
    _, [row] = paid_order(stripe_client, [2000], webhook=client, sellers=[seller])
    assert row.status == TransferStatus.HELD

    sandbox.set_transfers_capability(seller.stripe_account_id, "active")
    account = account_object(stripe_client, seller.stripe_account_id)
    with django_capture_on_commit_callbacks(execute=True):
        post_connect_event(client, "account.updated", account, account=seller.stripe_account_id)

    row.refresh_from_db()
    assert row.status == TransferStatus.COMPLETED, row.error_message
    [remote] = [t for t in sandbox.state()["transfers"] if t["id"] == row.stripe_transfer_id]
    assert (remote["amount"], remote["destination"]) == (1800, seller.stripe_account_id)


def test_a_row_held_at_send_time_is_closed_when_its_order_is_refunded_in_full(
    client, sandbox, stripe_client, django_capture_on_commit_callbacks
):
    # Stripe refused the send for the account. A row whose key was noted as sent (held before
    # a refusal renewed the key, or after a 5xx) may have paid the seller, so a full refund
    # cannot just cancel it: Stripe is read, and holding no transfer of it, the row is closed
    # instead of staying held for ever.
    seller = connected_seller(stripe_client, account_status=Seller.AccountStatus.READY)
    sandbox.set_transfers_capability(seller.stripe_account_id, "inactive")
    order, [row] = paid_order(stripe_client, [2000], webhook=client, sellers=[seller])
    SellerTransfer.objects.filter(pk=row.pk).update(key_first_sent_at=timezone.now())

    refund = make_event("refund.created", refund_at_stripe(stripe_client, order))
    with django_capture_on_commit_callbacks(execute=True):
        assert post_event(client, refund).status_code == 200

    row.refresh_from_db()
    assert (row.status, row.end_reason) == (TransferStatus.PERMANENTLY_FAILED, "order_refunded")
    to_seller = [
        t for t in sandbox.state()["transfers"] if t["destination"] == seller.stripe_account_id
    ]
    assert to_seller == []
    assert ledger_check()[1] == []


def test_a_send_refused_for_the_account_is_sent_with_a_new_key_once_it_can_receive(
    client, sandbox, stripe_client
):
    # Stripe keeps a 400 under its key: the same key sent again would replay the refusal.
    seller = connected_seller(stripe_client, account_status=Seller.AccountStatus.READY)
    sandbox.set_transfers_capability(seller.stripe_account_id, "inactive")
    _, [row] = paid_order(stripe_client, [2000], webhook=client, sellers=[seller])
    [refused] = sandbox.calls("transfers.create")

    row.refresh_from_db()
    assert row.status == TransferStatus.HELD
    assert row.transfer_idempotency_key.endswith("-g1")
    assert row.key_first_sent_at is None


def test_staff_release_closes_a_row_left_held_on_an_order_refunded_in_full(
    client, sandbox, stripe_client, django_capture_on_commit_callbacks
):
    # A row left held by a full refund before closing it was automatic: "Release" reads Stripe
    # and closes it, where it used to refuse ("nothing to pay") and leave it held for ever.
    seller = connected_seller(stripe_client, account_status=Seller.AccountStatus.READY)
    sandbox.set_transfers_capability(seller.stripe_account_id, "inactive")
    order, [row] = paid_order(stripe_client, [2000], webhook=client, sellers=[seller])
    Order.objects.filter(pk=order.pk).update(status=Order.Status.REFUNDED)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    chosen = {"action": "release_held", "_selected_action": [str(order.pk)]}

    plan = client.post("/admin/marketplace/order/", chosen).context["plan"]
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/admin/marketplace/order/", {**chosen, "apply": "1"})

    assert plan[0].startswith(f"Order {order.pk} was refunded in full: transfer {row.pk} to ")
    row.refresh_from_db()
    assert (row.status, row.end_reason) == (TransferStatus.PERMANENTLY_FAILED, "order_refunded")


def test_refresh_from_stripe_records_the_account_and_sends_what_was_held_for_it(
    client, sandbox, stripe_client, django_capture_on_commit_callbacks
):
    seller = connected_seller(stripe_client, account_status=Seller.AccountStatus.READY)
    sandbox.set_transfers_capability(seller.stripe_account_id, "inactive")
    _, [row] = paid_order(stripe_client, [2000], webhook=client, sellers=[seller])
    assert row.status == TransferStatus.HELD
    sandbox.set_transfers_capability(seller.stripe_account_id, "active")  # no event comes
    client.force_login(UserFactory(is_staff=True, is_superuser=True))

    with django_capture_on_commit_callbacks(execute=True):
        page = client.post(
            "/admin/marketplace/seller/",
            {"action": "refresh_from_stripe", "_selected_action": [str(seller.pk)]},
            follow=True,
        )

    notes = [str(message) for message in page.context["messages"]]
    assert notes == [
        f"{seller.name} (seller {seller.pk}, {seller.stripe_account_id}): Stripe says ready."
    ]
    row.refresh_from_db()
    assert row.status == TransferStatus.COMPLETED


def test_a_connected_account_entered_on_the_sellers_page_is_checked_at_stripe_at_once(
    client, sandbox, stripe_client
):
    seller = connected_seller(stripe_client, account_status=Seller.AccountStatus.READY)
    other = connected_seller(stripe_client)  # an account at the sandbox the seller reconnects to
    new_account = other.stripe_account_id
    other.delete()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    change = f"/admin/marketplace/seller/{seller.pk}/change/"
    management = client.get(change).context["inline_admin_formsets"][0].formset.management_form
    form = {f"{management.prefix}-{name}": value for name, value in management.initial.items()}

    page = client.post(
        change,
        {"name": seller.name, "email": seller.email, "stripe_account_id": new_account, **form},
        follow=True,
    )

    notes = [str(message) for message in page.context["messages"]]
    assert f"{seller.name} (seller {seller.pk}, {new_account}): Stripe says ready." in notes
    seller.refresh_from_db()
    assert (seller.stripe_account_id, seller.account_status) == (new_account, "ready")
