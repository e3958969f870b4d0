"""Regressions from an adversarial audit: each test failed on the code before its fix.

Money first (a seller paid late keeping a refunded share, a reversal resent after Stripe forgot
its key, someone else's transfer adopted as ours, a staff refund locking its amount forever, a
refund in another currency), then the fail-open defaults (settings, admin, configuration,
hostile webhook bodies, a broker or database that is down, public operations endpoints).
"""

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from django.contrib.auth.models import Permission
from django.db import OperationalError, transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from marketplace.models import Order, Refund, SellerAccountChange
from marketplace.selectors import order_refund_reserved_amount
from marketplace.services import order_apply_refunds, refund_open_by_staff
from payouts import tasks
from payouts.concurrency import run_loops
from payouts.models import SellerTransfer, WebhookEvent, WebhookOutcome
from payouts.selectors import over_reversed_count
from payouts.services.refunds import (
    ReservationOutcome,
    order_refund_by_staff,
    staff_refund_settle,
)
from payouts.services.transfers import transfer_group
from payouts.transfer.transitions import TransferStatus
from tests.builders import (
    WEBHOOK_SECRET,
    age_transfer,
    make_due,
    make_event,
    paid_order,
    post_event,
    sign,
    stripe_transfer,
)
from tests.factories import (
    OrderFactory,
    RefundFactory,
    SellerFactory,
    SellerTransferFactory,
    UserFactory,
    WebhookEventFactory,
)

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"

pytestmark = pytest.mark.django_db


class KilledHere(BaseException):
    """Stands for the process dying at that very line: nothing in the code may catch it."""


# --- 1. A seller paid late keeps the refunded share -----------------------------------------


def test_a_seller_paid_late_gives_back_the_refunded_share_even_if_the_process_dies_after_paying(
    sandbox, stripe_client, monkeypatch, django_capture_on_commit_callbacks
):
    order, [early, late] = paid_order(stripe_client, amounts=[1000, 3000], unpaid=[1])
    RefundFactory(order=order, amount=2000, status=Refund.Status.SUCCEEDED)
    with transaction.atomic():
        order_apply_refunds(order=order)

    def die(**kwargs):
        raise KilledHere

    monkeypatch.setattr("payouts.services.transfers.transfers_apply_shares", die)
    with pytest.raises(KilledHere):
        tasks.transfers_send_due()
    monkeypatch.undo()
    make_due(late)
    tasks.transfers_send_due()

    late.refresh_from_db()
    assert late.status == TransferStatus.REVERSAL_PENDING
    assert late.reversal_target == 1350  # 2000 refunded of 4000: half of the 2700 net
    assert len([t for t in sandbox.state()["transfers"] if t["amount"] == late.amount]) == 1


def test_the_daily_reconciliation_schedules_a_refund_share_a_paid_transfer_missed(
    sandbox, stripe_client
):
    order, [transfer] = paid_order(stripe_client, amounts=[2000])
    RefundFactory(order=order, amount=500, status=Refund.Status.SUCCEEDED)
    Order.objects.filter(pk=order.pk).update(status=Order.Status.PARTIALLY_REFUNDED)

    summary = tasks.reconciliation_run_daily()

    transfer.refresh_from_db()
    assert summary["missed_shares_scheduled"] == 1
    assert transfer.status == TransferStatus.REVERSAL_PENDING
    assert transfer.reversal_target == 450  # a quarter of the 1800 net


def test_the_weekly_reconciliation_finds_a_missed_share_older_than_the_daily_run_reads(
    sandbox, stripe_client
):
    order, [transfer] = paid_order(stripe_client, amounts=[2000])
    refund = RefundFactory(order=order, amount=500, status=Refund.Status.SUCCEEDED)
    Order.objects.filter(pk=order.pk).update(status=Order.Status.PARTIALLY_REFUNDED)
    three_days_ago = timezone.now() - timedelta(days=3)
    SellerTransfer.objects.filter(pk=transfer.pk).update(updated_at=three_days_ago)
    Refund.objects.filter(pk=refund.pk).update(updated_at=three_days_ago)

    assert tasks.reconciliation_run_daily()["missed_shares_scheduled"] == 0
    assert tasks.reconciliation_run_weekly()["missed_shares_scheduled"] == 1

    transfer.refresh_from_db()
    assert (transfer.status, transfer.reversal_target) == (TransferStatus.REVERSAL_PENDING, 450)


# --- 2. A reversal retried after Stripe forgot its key -----------------------------------------


def test_a_reversal_resent_after_stripe_forgot_its_key_reads_stripe_first_and_reverses_once(
    sandbox, stripe_client
):
    row = SellerTransferFactory(
        reversal_due=True,
        amount=1000,
        reversal_target=400,
        stripe_transfer_id=stripe_transfer(stripe_client, 1000),
    )
    sandbox.script("reversals.create", [{"action": "drop_after_perform"}])
    tasks.reversals_process_due()  # Stripe reversed 400; we never saw the answer
    row.refresh_from_db()
    assert (row.status, row.amount_reversed) == (TransferStatus.REVERSAL_PENDING, 0)

    age_transfer(row, timedelta(hours=25))  # a day without workers ...
    sandbox.forget_idempotency_keys()  # ... after which Stripe no longer knows the key
    make_due(row)
    tasks.reversals_process_due()

    row.refresh_from_db()
    remote = next(t for t in sandbox.ledger()["transfers"] if t["id"] == row.stripe_transfer_id)
    assert remote["amount_reversed"] == 400
    assert (row.status, row.amount_reversed) == (TransferStatus.PARTIALLY_REVERSED, 400)


@pytest.mark.slow  # starts a Python process
def test_a_backoff_longer_than_stripes_key_memory_stops_start_up():
    result = _manage("check", REVERSAL_BACKOFF_MAX="25h")

    assert result.returncode != 0
    assert "REVERSAL_BACKOFF_MAX" in result.stderr


def test_stripe_reversing_more_than_the_refunded_share_is_alerted_not_adopted(
    sandbox, stripe_client, caplog
):
    row = SellerTransferFactory(
        completed=True, amount=1000, stripe_transfer_id=stripe_transfer(stripe_client, 1000)
    )
    stripe_client.v1.transfers.reversals.create(row.stripe_transfer_id, params={"amount": 300})

    tasks.reconciliation_run_daily()

    row.refresh_from_db()
    assert (row.amount_reversed, row.reversal_target) == (300, 0)
    assert over_reversed_count() == 1
    assert "more of the transfer than the refunds' share" in caplog.text


# --- 3. A transfer to another account taken for ours ---------------------------------------------


def test_a_transfer_of_another_amount_to_another_account_is_never_taken_for_ours(
    sandbox, stripe_client
):
    order, [row] = paid_order(stripe_client, amounts=[2000], unpaid=[0])
    other = stripe_client.v1.accounts.create(params={"type": "express"})
    # Left at Stripe by an earlier life of the database, whose rows had the same ids.
    stripe_client.v1.transfers.create(
        params={
            "amount": 5,
            "currency": "usd",
            "destination": other.id,
            "transfer_group": transfer_group(order),
            "metadata": {"order_id": str(order.pk), "seller_transfer_id": str(row.pk)},
        }
    )
    SellerTransfer.objects.filter(pk=row.pk).update(read_stripe_first=True)
    make_due(row)

    tasks.transfers_send_due()

    row.refresh_from_db()
    mine = next(t for t in sandbox.state()["transfers"] if t["id"] == row.stripe_transfer_id)
    assert row.status == TransferStatus.COMPLETED
    assert (mine["amount"], mine["destination"]) == (1800, row.seller.stripe_account_id)


# --- 4. A staff refund whose Stripe call failed locks the amount forever --------------------------


def test_a_staff_refund_that_timed_out_is_sent_again_with_its_key_by_the_settling_job(
    sandbox, stripe_client, short_stripe_timeout
):
    order, _ = paid_order(stripe_client, amounts=[2000])
    sandbox.script("refunds.create", [{"action": "timeout", "timeout_seconds": 1}])
    with pytest.raises(Exception, match="no response"):
        order_refund_by_staff(order_id=order.pk, amount=700)
    refund = Refund.objects.get(order=order)
    Refund.objects.filter(pk=refund.pk).update(created_at=F("created_at") - timedelta(minutes=15))

    summary = tasks.staff_refunds_settle()

    refund.refresh_from_db()
    assert summary == {ReservationOutcome.RESENT: 1}
    assert refund.stripe_refund_id.startswith("re_")
    assert [r["amount"] for r in sandbox.state()["refunds"]] == [700]


def test_a_staff_refund_stripe_answered_500_is_released_when_stripe_holds_none(
    sandbox, stripe_client
):
    order, _ = paid_order(stripe_client, amounts=[2000])
    sandbox.script("refunds.create", [{"action": "error_500"}])
    with pytest.raises(Exception, match="500"):
        order_refund_by_staff(order_id=order.pk, amount=2000)
    refund = Refund.objects.get(order=order)
    assert order_refund_reserved_amount(order=order) == 2000

    outcome = staff_refund_settle(refund_id=refund.pk)

    refund.refresh_from_db()
    assert outcome == ReservationOutcome.RELEASED
    assert refund.status == Refund.Status.FAILED
    assert order_refund_reserved_amount(order=order) == 0
    assert refund_open_by_staff(order_id=order.pk, amount=2000).amount == 2000


def test_staff_can_release_a_reservation_from_the_admin(client, sandbox, stripe_client):
    order, _ = paid_order(stripe_client, amounts=[2000])
    refund = refund_open_by_staff(order_id=order.pk, amount=500)
    Refund.objects.filter(pk=refund.pk).update(created_at=F("created_at") - timedelta(minutes=15))
    admin = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(admin)

    client.post(
        reverse("admin:marketplace_refund_changelist"),
        {"action": "settle_reservation", "_selected_action": [str(refund.pk)]},
    )

    refund.refresh_from_db()
    assert refund.status == Refund.Status.FAILED
    assert refund.error_message.startswith("released")


# --- 5. A refund in another currency than the order's ------------------------------------------


def test_a_refund_in_another_currency_is_refused_and_reverses_nothing(
    client, sandbox, stripe_client
):
    order, [transfer] = paid_order(stripe_client, amounts=[2000])
    refund = {
        "id": "re_eur_on_usd",
        "object": "refund",
        "amount": 2000,
        "currency": "eur",
        "status": "succeeded",
        "charge": order.stripe_charge_id,
        "payment_intent": order.stripe_payment_intent_id,
        "metadata": {},
    }

    response = post_event(client, make_event("refund.created", refund))

    assert response.status_code == 422, response.content
    event = WebhookEvent.objects.get(type="refund.created")
    assert event.outcome == WebhookOutcome.FAILED
    assert "eur" in event.error
    transfer.refresh_from_db()
    assert (transfer.status, transfer.reversal_target) == (TransferStatus.COMPLETED, 0)
    assert not Refund.objects.filter(order=order).exists()


# --- 6. Entry points and secrets fail closed -----------------------------------------------------


def _python(code: str, **variables: str) -> subprocess.CompletedProcess:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "STRIPE_", "METRICS_"))
    }
    environment.update(variables)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _manage(*argv: str, **variables: str) -> subprocess.CompletedProcess:
    code = f"import sys; from django.core.management import execute_from_command_line; sys.argv = ['manage.py', *{list(argv)!r}]; import os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings.local'); execute_from_command_line(sys.argv)"  # noqa: E501
    return _python(code, **variables)


@pytest.mark.slow  # starts a Python process
@pytest.mark.parametrize("entry_point", ["config.wsgi", "config.asgi", "config.celery"])
def test_the_entry_points_run_production_settings_unless_told_otherwise(entry_point):
    result = _python(f"import {entry_point}; import django; django.setup()")

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set in production" in result.stderr


@pytest.mark.slow  # starts a Python process
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STRIPE_SECRET_KEY", "sk_test_local_sandbox"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_local_sandbox"),
    ],
)
def test_production_refuses_the_sandboxs_public_secrets(variable, value):
    secrets = {
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": "x" * 60,
        "STRIPE_SECRET_KEY": "sk_live_example",
        "STRIPE_WEBHOOK_SECRET": "whsec_example",
        variable: value,
    }

    result = _python("import django; django.setup()", **secrets)

    assert result.returncode != 0
    assert f"{variable} is one of the sandbox's public values" in result.stderr


def test_docker_compose_refuses_to_start_without_real_secrets():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    environment = compose["x-app"]["environment"]

    for name in ("DJANGO_SECRET_KEY", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"):
        assert environment[name].startswith(f"${{{name}:?"), name
    assert "sandbox" not in compose["services"]
    assert (
        "sandbox" in yaml.safe_load((ROOT / "docker-compose.sandbox.yml").read_text())["services"]
    )


# --- 7. Read-only admin pages ------------------------------------------------------------------


def test_saving_a_seller_transfer_page_is_refused_and_changes_nothing(client):
    transfer = SellerTransferFactory(completed=True)
    before = SellerTransfer.objects.values().get(pk=transfer.pk)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    url = reverse("admin:payouts_sellertransfer_change", args=[transfer.pk])

    response = client.post(url, {"error_message": "edited"})

    assert response.status_code == 403
    assert SellerTransfer.objects.values().get(pk=transfer.pk) == before


def test_a_paid_orders_buyer_and_currency_are_not_editable(client):
    order = OrderFactory(status=Order.Status.PAID, currency="usd", buyer_email="a@example.com")
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    url = reverse("admin:marketplace_order_change", args=[order.pk])

    client.post(
        url,
        {
            "buyer_email": "b@example.com",
            "currency": "eur",
            "items-TOTAL_FORMS": "0",
            "items-INITIAL_FORMS": "0",
            "refunds-TOTAL_FORMS": "0",
            "refunds-INITIAL_FORMS": "0",
            "transfers-TOTAL_FORMS": "0",
            "transfers-INITIAL_FORMS": "0",
        },
    )

    order.refresh_from_db()
    assert (order.buyer_email, order.currency) == ("a@example.com", "usd")


def test_changing_a_sellers_connected_account_is_audited(client):
    seller = SellerFactory(stripe_account_id="acct_before")
    admin = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(admin)
    url = reverse("admin:marketplace_seller_change", args=[seller.pk])

    client.post(
        url,
        {
            "name": seller.name,
            "email": seller.email,
            "stripe_account_id": "acct_after",
            "account_changes-TOTAL_FORMS": "0",
            "account_changes-INITIAL_FORMS": "0",
        },
    )

    seller.refresh_from_db()
    assert seller.stripe_account_id == "acct_after"
    [change] = SellerAccountChange.objects.filter(seller=seller)
    assert (change.old_account, change.new_account, change.changed_by) == (
        "acct_before",
        "acct_after",
        admin,
    )


def test_replaying_inbox_events_needs_the_replay_permission_not_just_view_access(client):
    event = WebhookEventFactory(outcome=WebhookOutcome.FAILED, error="boom")
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_webhookevent"))
    client.force_login(viewer)

    client.post(
        reverse("admin:payouts_webhookevent_changelist"),
        {"action": "replay", "_selected_action": [str(event.pk)]},
    )

    event.refresh_from_db()
    assert (event.outcome, event.attempts) == (WebhookOutcome.FAILED, 0)


# --- 8. Nonsense numbers ---------------------------------------------------------------------


@pytest.mark.slow  # starts a Python process
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STRIPE_MAX_NETWORK_RETRIES", "-3"),
        ("REVERSAL_CONCURRENCY", "0"),
        ("STRIPE_RATE_LIMITS", "global=0/s"),
    ],
)
def test_a_nonsense_number_stops_start_up_naming_its_variable(variable, value):
    result = _manage("check", **{variable: value})

    assert result.returncode != 0
    assert variable in result.stderr


# --- 9. Hostile but signed webhook bodies ------------------------------------------------------


def _post_raw(client, body: bytes):
    return client.post(
        "/webhooks/stripe/",
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign(body, WEBHOOK_SECRET),
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            b'{"id": "evt_nul", "type": "x.y", "data": {"object": {"a": "\\u0000"}}}', id="nul"
        ),
        pytest.param(
            b'{"id": "evt_sur", "type": "x.y", "data": {"object": {"a": "\\ud800"}}}',
            id="lone-surrogate",
        ),
        pytest.param(
            b'{"id": "evt_deep", "type": "x.y", "data": {"object": '
            + b'{"a": ' * 5000
            + b"1"
            + b"}" * 5000
            + b"}}",
            id="nested-5000-deep",
        ),
    ],
)
def test_a_hostile_but_signed_body_answers_400_and_stores_nothing(client, webhook_secret, body):
    response = _post_raw(client, body)

    assert response.status_code == 400, response.content
    assert not WebhookEvent.objects.exists()


def test_an_event_created_far_in_the_future_is_refused(client, webhook_secret):
    event = {**make_event("customer.created", {"id": "cus_1"}), "created": int(time.time()) + 10**6}

    response = _post_raw(client, json.dumps(event).encode())

    assert response.status_code == 400, response.content


@pytest.mark.parametrize("amount", ["2000", 2000.9])
def test_a_payment_with_a_non_integer_amount_is_refused_and_pays_nobody(
    client, sandbox, stripe_client, amount
):
    order, _ = paid_order(stripe_client, amounts=[2000], mark_paid=False)
    intent = {
        "id": "pi_hostile",
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount,
        "currency": "usd",
        "latest_charge": "ch_hostile",
        "metadata": {"order_id": str(order.pk)},
    }

    response = post_event(client, make_event("payment_intent.succeeded", intent))

    assert response.status_code == 422, response.content
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    assert not SellerTransfer.objects.filter(order=order).exists()


# --- 10. A broker that is down after the inbox commit -----------------------------------------


def test_a_broker_that_is_down_after_the_event_is_stored_still_answers_200_and_the_sweep_pays(
    client, sandbox, stripe_client, broker_down, django_capture_on_commit_callbacks
):
    order, _ = paid_order(stripe_client, amounts=[2000], mark_paid=False)
    intent = stripe_client.v1.payment_intents.retrieve(order.stripe_payment_intent_id).to_dict()

    with django_capture_on_commit_callbacks(execute=True):
        response = post_event(client, make_event("payment_intent.succeeded", intent))

    assert response.status_code == 200, response.content
    order.refresh_from_db()
    assert order.status == Order.Status.PAID and order.settlement_due_at is not None
    assert not SellerTransfer.objects.filter(order=order).exists()
    tasks.transfers_send_due()  # beat's sweep: reads the settlement, creates and pays
    [transfer] = SellerTransfer.objects.filter(order=order)
    assert transfer.status == TransferStatus.COMPLETED


def test_the_sweep_processes_a_stored_event_whose_processing_never_ran(
    sandbox, stripe_client, django_capture_on_commit_callbacks
):
    order, _ = paid_order(stripe_client, amounts=[2000], mark_paid=False)
    intent = stripe_client.v1.payment_intents.retrieve(order.stripe_payment_intent_id).to_dict()
    stored = WebhookEventFactory(
        type="payment_intent.succeeded",
        payload=make_event("payment_intent.succeeded", intent),
        outcome=WebhookOutcome.RECEIVED,
    )
    WebhookEvent.objects.filter(pk=stored.pk).update(
        received_at=timezone.now() - timedelta(minutes=5)
    )

    with django_capture_on_commit_callbacks(execute=True):
        summary = tasks.webhook_events_process_stranded()

    assert summary == {WebhookOutcome.PROCESSED: 1}
    [transfer] = SellerTransfer.objects.filter(order=order)
    assert transfer.status == TransferStatus.COMPLETED


# --- 11. A database that is down ---------------------------------------------------------------


def test_a_worker_step_that_keeps_failing_backs_off_instead_of_spinning():
    calls = []
    started = time.monotonic()

    def step():
        calls.append(time.monotonic())
        if time.monotonic() - started > 0.5:
            return None
        raise OperationalError("connection refused")

    outcomes = run_loops(step, threads=1)

    # Pauses of 0.1, 0.2, 0.4 s: a handful of attempts in half a second, not thousands.
    assert outcomes["error"] <= 5
    assert len(calls) <= 6


# --- 12. Operations endpoints are not public -----------------------------------------------------


def test_metrics_refuse_an_anonymous_scrape(client):
    response = client.get("/metrics")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_metrics_answer_the_bearer_token_and_staff(client, settings):
    settings.METRICS_TOKEN = "t" * 40

    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer " + "t" * 40).status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    client.force_login(UserFactory(is_staff=True))
    assert client.get("/metrics").status_code == 200


def test_the_openapi_schema_is_for_staff_only(client):
    assert client.get("/api/schema/").status_code in (401, 403)
    client.force_login(UserFactory(is_staff=True))
    assert client.get("/api/schema/").status_code == 200
