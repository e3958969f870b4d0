"""Connected accounts that cannot receive: their transfers wait, spending no retries, and go out
the moment Stripe's Connect endpoint says the account can receive again; a seller who
disconnects has their unsent transfers held for staff. Connect events come to their own
endpoint, signed with its own secret."""

import pytest
from django.utils import timezone

from marketplace.models import Order, Seller
from payouts.models import SellerTransfer, WebhookEvent, WebhookOutcome
from payouts.services.ledger_check import ledger_check
from payouts.transitions import HeldReason, TransferStatus
from tests.builders import (
    WEBHOOK_SECRET,
    connected_seller,
    make_event,
    paid_order,
    post_connect_event,
    post_event,
    refund_at_stripe,
)
from tests.factories import UserFactory

S = TransferStatus
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

    assert [row.status for row in rows] == [S.COMPLETED, S.HELD, S.COMPLETED]
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
    assert (row.status, row.retry_count) == (S.COMPLETED, 0)
    [remote] = [t for t in sandbox.state()["transfers"] if t["id"] == row.stripe_transfer_id]
    assert (remote["amount"], remote["destination"]) == (1800, restricted.stripe_account_id)
    assert ledger_check()[1] == []


def test_a_transfer_stripe_refuses_for_the_accounts_capabilities_is_held_not_retried(
    client, sandbox, stripe_client
):
    seller = connected_seller(stripe_client, account_status=Seller.AccountStatus.READY)
    sandbox.set_transfers_capability(seller.stripe_account_id, "inactive")

    _, [row] = paid_order(stripe_client, [2000], webhook=client, sellers=[seller])

    assert (row.status, row.retry_count, row.next_retry_at) == (S.HELD, 0, None)
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
    assert (unsent.status, unsent.held_reason) == (S.HELD, HeldReason.ACCOUNT_DEAUTHORIZED)
    assert unsent.seller.account_status == Seller.AccountStatus.DEAUTHORIZED
    paid.refresh_from_db()
    assert paid.status == S.COMPLETED


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
    assert (row.status, row.end_reason) == (S.PERMANENTLY_FAILED, "order_refunded")
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
    assert row.status == S.HELD
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
    assert (row.status, row.end_reason) == (S.PERMANENTLY_FAILED, "order_refunded")


def test_refresh_from_stripe_records_the_account_and_sends_what_was_held_for_it(
    client, sandbox, stripe_client, django_capture_on_commit_callbacks
):
    seller = connected_seller(stripe_client, account_status=Seller.AccountStatus.READY)
    sandbox.set_transfers_capability(seller.stripe_account_id, "inactive")
    _, [row] = paid_order(stripe_client, [2000], webhook=client, sellers=[seller])
    assert row.status == S.HELD
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
    assert row.status == S.COMPLETED


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
