"""Staff retry of a failed transfer: the HTTP API, spoken to over real HTTP with a staff
user's bearer token against the live server, and the Django admin action."""

from datetime import timedelta

import pytest
import requests
from django.contrib.auth.models import Permission
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from marketplace.models import Refund
from marketplace.services import order_apply_refunds
from payouts.models import SellerTransfer, SellerTransferEvent
from payouts.transfer.transitions import TransferStatus
from tests.builders import STRIPE_500, paid_order
from tests.factories import RefundFactory, SellerTransferFactory, UserFactory

# The API is spoken to over real HTTP: the live server's thread has its own connection and must
# see the rows, so these tests commit (the admin action's test, in-thread, does not need to).
pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct horse battery staple"


def user_with(*, is_staff: bool, may_retry: bool, **fields):
    user = UserFactory(is_staff=is_staff, **fields)
    if may_retry:
        user.user_permissions.add(Permission.objects.get(codename="retry_sellertransfer"))
    return user


@pytest.fixture
def staff(db):
    return user_with(is_staff=True, may_retry=True)


def token_of(user) -> str:
    return Token.objects.create(user=user).key


def retry(live_server, pk: int, token: str | None) -> requests.Response:
    url = f"{live_server.url}/api/admin/transfers/{pk}/retry/"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(url, headers=headers, timeout=30)


@pytest.fixture
def failed_transfer(sandbox, stripe_client):
    """A ``failed`` transfer of an order paid at the sandbox, to a seller connected there: its
    row was never sent, and is written as an earlier outage left it (Stripe not called)."""
    _, [transfer] = paid_order(stripe_client, [2000], unpaid=[0])
    assert (transfer.amount, transfer.platform_fee) == (1800, 200)
    SellerTransfer.objects.filter(pk=transfer.pk).update(
        status=TransferStatus.FAILED,
        retry_count=1,
        error_message="Stripe 500: earlier outage",
        next_retry_at=timezone.now() + timedelta(minutes=5),
    )
    transfer.refresh_from_db()
    return transfer


def test_retrying_a_failed_transfer_answers_200_with_the_completed_transfer(
    live_server, sandbox, failed_transfer, staff
):
    response = retry(live_server, failed_transfer.pk, token_of(staff))

    assert response.status_code == 200, response.text
    body = response.json()
    [remote] = sandbox.state()["transfers"]
    assert body["id"] == failed_transfer.pk
    assert body["status"] == TransferStatus.COMPLETED
    assert body["stripe_transfer_id"] == remote["id"]
    assert body["error_message"] == ""
    failed_transfer.refresh_from_db()
    assert failed_transfer.status == TransferStatus.COMPLETED
    assert failed_transfer.stripe_transfer_id == remote["id"]
    event = SellerTransferEvent.objects.filter(transfer=failed_transfer).last()
    assert (event.from_status, event.to_status) == (TransferStatus.FAILED, TransferStatus.COMPLETED)
    assert (event.user, event.caused_by) == (staff, f"staff:{staff.username}")


def test_a_stripe_500_on_retry_answers_502_with_stripes_error_and_the_row_stays_failed(
    live_server, sandbox, failed_transfer, staff
):
    sandbox.script("transfers.create", [STRIPE_500])

    response = retry(live_server, failed_transfer.pk, token_of(staff))

    assert response.status_code == 502, response.text
    body = response.json()
    assert body["code"] == "stripe_error"
    assert "boom" in body["detail"]
    assert body["transfer"]["status"] == TransferStatus.FAILED
    failed_transfer.refresh_from_db()
    assert failed_transfer.status == TransferStatus.FAILED
    assert "boom" in failed_transfer.error_message
    assert sandbox.state()["transfers"] == []


@pytest.mark.parametrize(
    ("status", "fields"),
    [
        pytest.param(TransferStatus.PENDING, {}, id="pending"),
        pytest.param(
            TransferStatus.COMPLETED, {"stripe_transfer_id": "tr_staff_completed"}, id="completed"
        ),
        pytest.param(
            TransferStatus.PERMANENTLY_FAILED, {"error_message": "gave up"}, id="permanently_failed"
        ),
        pytest.param(
            TransferStatus.REVERSAL_PENDING,
            {"stripe_transfer_id": "tr_staff_reversing", "next_retry_at": timezone.now()},
            id="reversal_pending",
        ),
        pytest.param(
            TransferStatus.REVERSED,
            {"stripe_transfer_id": "tr_staff_reversed", "amount_reversed": 900},
            id="reversed",
        ),
    ],
)
def test_retrying_a_transfer_that_is_not_failed_answers_409_and_changes_nothing(
    live_server, sandbox, staff, status, fields
):
    transfer = SellerTransferFactory(status=status, amount=900, **fields)
    before = SellerTransfer.objects.values().get(pk=transfer.pk)

    response = retry(live_server, transfer.pk, token_of(staff))

    assert response.status_code == 409, response.text
    assert SellerTransfer.objects.values().get(pk=transfer.pk) == before
    assert sandbox.calls() == []


def test_retrying_an_unknown_transfer_answers_404(live_server, sandbox, staff):
    response = retry(live_server, 987_654_321, token_of(staff))

    assert response.status_code == 404, response.text


@pytest.mark.parametrize(
    "credentials",
    ["none", "wrong-token"],
)
def test_retrying_without_valid_credentials_answers_401(
    live_server, sandbox, failed_transfer, staff, credentials
):
    token_of(staff)
    token = None if credentials == "none" else "not-the-token"

    response = retry(live_server, failed_transfer.pk, token)

    assert response.status_code == 401, response.text
    # A challenge no browser answers with a password prompt (never Basic).
    assert response.headers.get("WWW-Authenticate") == "Bearer"
    failed_transfer.refresh_from_db()
    assert failed_transfer.status == TransferStatus.FAILED
    assert sandbox.calls("transfers.create") == []


@pytest.mark.parametrize(
    ("is_staff", "may_retry"),
    [(False, True), (True, False)],
    ids=["not-staff-with-permission", "staff-without-permission"],
)
def test_retrying_without_staff_status_and_the_permission_answers_403(
    live_server, sandbox, failed_transfer, is_staff, may_retry
):
    user = user_with(is_staff=is_staff, may_retry=may_retry)

    response = retry(live_server, failed_transfer.pk, token_of(user))

    assert response.status_code == 403, response.text
    failed_transfer.refresh_from_db()
    assert failed_transfer.status == TransferStatus.FAILED
    assert sandbox.calls("transfers.create") == []


@pytest.mark.django_db  # the admin runs in the test's thread: rollback is enough
def test_the_admin_retry_action_completes_a_failed_transfer(client, sandbox, failed_transfer):
    admin = UserFactory(is_staff=True, is_superuser=True)
    assert client.login(username=admin.username, password=PASSWORD)

    changelist = reverse("admin:payouts_sellertransfer_changelist")
    chosen = {"action": "retry_failed", "_selected_action": [str(failed_transfer.pk)]}
    confirm = client.post(changelist, chosen)
    assert confirm.status_code == 200
    [plan] = confirm.context["plan"]
    assert plan.startswith(f"Transfer {failed_transfer.pk}: send ")
    failed_transfer.refresh_from_db()
    assert failed_transfer.status == TransferStatus.FAILED  # nothing before confirming

    response = client.post(changelist, {**chosen, "apply": "1"}, follow=True)

    assert response.status_code == 200
    failed_transfer.refresh_from_db()
    assert failed_transfer.status == TransferStatus.COMPLETED
    assert [t["id"] for t in sandbox.state()["transfers"]] == [failed_transfer.stripe_transfer_id]
    messages = [str(m) for m in response.context["messages"]]
    seller = failed_transfer.seller
    assert messages == [
        f"Transfer {failed_transfer.pk} completed: sent 18.00 USD to {seller.name} "
        f"(seller {seller.pk}, {seller.stripe_account_id}) at Stripe "
        f"({failed_transfer.stripe_transfer_id})."
    ]


def test_retrying_a_transfer_whose_order_was_refunded_answers_409_order_refunded(
    live_server, sandbox, failed_transfer, staff
):
    RefundFactory(order=failed_transfer.order, amount=2000, status=Refund.Status.SUCCEEDED)
    with transaction.atomic():
        order_apply_refunds(order=failed_transfer.order)

    response = retry(live_server, failed_transfer.pk, token_of(staff))

    assert response.status_code == 409, response.text
    body = response.json()
    assert body["code"] == "order_refunded"
    assert body["transfer"]["status"] == TransferStatus.PERMANENTLY_FAILED
    assert body["transfer"]["end_reason"] == "order_refunded"
    assert sandbox.calls("transfers.create") == []


@pytest.mark.django_db  # the admin runs in the test's thread: rollback is enough
def test_the_admin_retry_action_shows_stripes_refusal_and_the_row_stays_failed(
    client, sandbox, failed_transfer, django_capture_on_commit_callbacks
):
    admin = UserFactory(is_staff=True, is_superuser=True)
    assert client.login(username=admin.username, password=PASSWORD)
    sandbox.script("transfers.create", [STRIPE_500])

    # Committing runs the failed attempt's wake-up, as outside a test.
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:payouts_sellertransfer_changelist"),
            {
                "action": "retry_failed",
                "_selected_action": [str(failed_transfer.pk)],
                "apply": "1",
            },
            follow=True,
        )

    assert response.status_code == 200
    [message] = list(response.context["messages"])
    assert message.level_tag == "error"
    assert str(message).startswith(
        f"transfer {failed_transfer.pk} to {failed_transfer.seller.name}"
    )
    assert "boom" in str(message)
    failed_transfer.refresh_from_db()
    assert (failed_transfer.status, failed_transfer.retry_count) == (TransferStatus.FAILED, 2)
    assert sandbox.state()["transfers"] == []


# Real commits: the wake-up that breaks runs when the attempt's transaction commits, inside the
# request, as in production.
@pytest.mark.django_db(transaction=True)
def test_whatever_breaks_during_an_admin_retry_is_a_message_not_the_error_page(
    client, sandbox, failed_transfer, settings
):
    # Stripe refuses again, and recording that refusal may fail for a reason of our own: here
    # the wake-up read a setting that only the tests define (as a development run did, which
    # showed Django's error page). Whichever happens, the operator gets a message naming the
    # transfer and what failed.
    del settings.CELERY_TASK_ALWAYS_EAGER
    sandbox.script("transfers.create", [STRIPE_500])
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    chosen = {"action": "retry_failed", "_selected_action": [str(failed_transfer.pk)]}

    response = client.post(
        reverse("admin:payouts_sellertransfer_changelist"), {**chosen, "apply": "1"}, follow=True
    )

    assert response.status_code == 200
    [note] = [str(message) for message in response.context["messages"]]
    assert note.startswith(f"transfer {failed_transfer.pk} to {failed_transfer.seller.name}")
    assert "failed unexpectedly (AttributeError" in note or note.endswith("Stripe 500: boom")
