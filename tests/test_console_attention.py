"""What needs a person: every transfer whose seller is not paid, or whose reversal is not done,
beyond what the workers normally take, each with its reason; the sellers in debt; the latest
ledger check's breaks. Through the transfer list's filter and the "needs attention" page."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

import ledger.services
from ledger.models import Break, BreakKind, CheckRun
from marketplace.models import Dispute, DisputeStatus
from payouts.models import SellerTransfer, WebhookOutcome
from payouts.selectors import FAILING_AFTER_ATTEMPTS, UNPAID_AFTER, Attention
from payouts.transfer.moves import book_ref
from payouts.transfer.transitions import EndReason, HeldReason, TransferStatus
from tests.factories import (
    PaidOrderFactory,
    SellerFactory,
    SellerTransferFactory,
    UserFactory,
    WebhookEventFactory,
)

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:payouts_sellertransfer_changelist")
PAGE = reverse("admin:needs_attention")
LONG_AGO = UNPAID_AFTER + timedelta(minutes=1)
A_MOMENT_AGO = timedelta(minutes=1)


def aged(transfer: SellerTransfer, **clocks: timedelta) -> SellerTransfer:
    """Move the row's ``created_at`` / ``updated_at`` into the past (``update`` skips
    ``auto_now``)."""
    now = timezone.now()
    SellerTransfer.objects.filter(pk=transfer.pk).update(
        **{name: now - ago for name, ago in clocks.items()}
    )
    return transfer


@pytest.fixture
def rows():
    """One transfer per situation the reasons must tell apart."""
    now = timezone.now()
    return {
        "unpaid_pending": SellerTransferFactory(next_retry_at=now - LONG_AGO),
        "pending_now": SellerTransferFactory(next_retry_at=now - A_MOMENT_AGO),
        "unpaid_failed": aged(
            SellerTransferFactory(
                status=TransferStatus.FAILED, next_retry_at=now, error_message="Stripe 500"
            ),
            created_at=LONG_AGO,
        ),
        "failing_now": SellerTransferFactory(status=TransferStatus.FAILED, next_retry_at=now),
        "held_account": aged(
            SellerTransferFactory(
                status=TransferStatus.HELD, held_reason=HeldReason.ACCOUNT_RESTRICTED
            ),
            updated_at=LONG_AGO,
        ),
        "held_for_release": aged(
            SellerTransferFactory(
                status=TransferStatus.HELD,
                held_reason=HeldReason.AWAITING_RELEASE,
                next_retry_at=now + timedelta(days=3),
            ),
            updated_at=LONG_AGO,
        ),
        "failing_reversal": SellerTransferFactory(
            reversal_due=True, retry_count=FAILING_AFTER_ATTEMPTS, error_message="Stripe 503"
        ),
        "retrying_reversal": SellerTransferFactory(reversal_due=True, retry_count=1),
        "stale_reversal": aged(SellerTransferFactory(reversal_due=True), updated_at=LONG_AGO),
        "reversal_refused": SellerTransferFactory(
            status=TransferStatus.REVERSAL_REFUSED,
            amount_owed=900,
            error_message="reversal refused: balance",
        ),
        "gave_up_unpaid": SellerTransferFactory(
            status=TransferStatus.PERMANENTLY_FAILED,
            end_reason=EndReason.RETRIES_EXHAUSTED,
            error_message="Stripe 400 account_invalid",
        ),
        "gave_up_reversal": SellerTransferFactory(
            status=TransferStatus.PERMANENTLY_FAILED,
            stripe_transfer_id="tr_gave_up",
            end_reason=EndReason.RETRIES_EXHAUSTED,
            error_message="Stripe 503",
        ),
        "permanently_failed": SellerTransferFactory(
            status=TransferStatus.PERMANENTLY_FAILED,
            stripe_transfer_id="tr_missing",
            end_reason=EndReason.TRANSFER_MISSING,
            error_message="Stripe 404",
        ),
        "cancelled": SellerTransferFactory(
            status=TransferStatus.PERMANENTLY_FAILED, end_reason=EndReason.ORDER_REFUNDED
        ),
        "completed": aged(SellerTransferFactory(completed=True), updated_at=timedelta(days=3)),
        "reversed": SellerTransferFactory(
            status=TransferStatus.REVERSED, stripe_transfer_id="tr_done"
        ),
    }


@pytest.fixture
def staff(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def shown(response) -> set[int]:
    assert response.status_code == 200, response.content[:300]
    return {row.pk for row in response.context["cl"].result_list}


# The rows of ``rows`` each reason selects: its own, and for "failing now" also the reversal
# whose one failed attempt is being retried.
SELECTED = {reason: {reason.value} for reason in Attention} | {
    Attention.FAILING_NOW: {"failing_now", "retrying_reversal"}
}


@pytest.mark.parametrize("reason", list(Attention))
def test_each_reason_selects_exactly_its_rows(staff, rows, reason):
    expected = {rows[key].pk for key in SELECTED[reason]}

    assert shown(staff.get(CHANGELIST, {"attention": reason.value})) == expected


def test_any_reason_selects_every_row_a_person_must_look_at_and_nothing_else(staff, rows):
    expected = {rows[key].pk for keys in SELECTED.values() for key in keys}

    assert shown(staff.get(CHANGELIST, {"attention": "any"})) == expected


def test_the_list_says_why_each_row_needs_attention_and_what_it_last_recorded(staff, rows):
    page = staff.get(CHANGELIST, {"attention": "any"}).content.decode()

    assert "Seller not paid: failed, made over 30 min ago" in page
    assert "Reversal failing: 3+ attempts failed in a row" in page
    assert "retries_exhausted: Stripe 400 account_invalid" in page
    assert "account_restricted" in page


def test_the_page_lists_each_reason_with_its_rows_and_what_to_do(staff, rows):
    page = staff.get(PAGE).content.decode()

    for reason in Attention:
        row = rows[reason.value]
        section = page.split(f'id="attention-{reason.value}"', 1)[1].split('class="module"', 1)[0]
        count = len(SELECTED[reason])
        assert f'data-figure="attention-{reason.value}">{count}<' in section
        assert reverse("admin:payouts_sellertransfer_change", args=[row.pk]) in section
    assert f"{CHANGELIST}?attention=unpaid_failed" in page
    assert "retry it from the transfer list" in page


def test_the_page_lists_the_sellers_in_debt_largest_first(staff):
    small, large = SellerFactory(name="Small debt"), SellerFactory(name="Large debt")
    for seller, amount in ((small, 250), (large, 1800)):
        row = SellerTransferFactory(seller=seller, status=TransferStatus.REVERSAL_REFUSED)
        ledger.services.post_refund_share(
            book_ref(row, "scenario"), previous_target=0, target=amount
        )
        ledger.services.post_reversal_refused(
            book_ref(row, "scenario"), previous_owed=0, owed_total=amount
        )

    page = staff.get(PAGE).content.decode()

    debts = page.split('id="debts"', 1)[1]
    assert debts.index("Large debt") < debts.index("Small debt")
    assert f'data-debt="{large.pk}-usd">' in debts
    assert "18.00 USD" in debts and "2.50 USD" in debts


def test_the_page_lists_the_latest_checks_breaks_only(staff):
    old = CheckRun.objects.create(finished_at=timezone.now(), breaks_found=1)
    Break.objects.create(run=old, kind=BreakKind.SELLER_DEBT, detail="an old break")
    latest = CheckRun.objects.create(finished_at=timezone.now(), breaks_found=1)
    Break.objects.create(
        run=latest, kind=BreakKind.TRANSFER_BOOK, transfer_id=42, detail="sent 900 / 0 in book"
    )

    page = staff.get(PAGE).content.decode()

    breaks = page.split('id="breaks"', 1)[1]
    assert "sent 900 / 0 in book" in breaks
    assert "an old break" not in breaks
    link = f"{reverse('admin:ledger_break_changelist')}?run__id__exact={latest.pk}"
    assert link in breaks
    assert staff.get(link).status_code == 200


def test_the_page_lists_open_disputes_whose_evidence_is_due_soonest_first(staff, settings):
    settings.STRIPE_USES_LOCAL_SANDBOX = False
    settings.STRIPE_SECRET_KEY = "sk_live_console"
    now = timezone.now()
    for name, status, due in [
        ("later", DisputeStatus.NEEDS_RESPONSE, now + timedelta(days=9)),
        ("sooner", DisputeStatus.WARNING_NEEDS_RESPONSE, now + timedelta(days=2)),
        ("closed", DisputeStatus.LOST, now + timedelta(days=1)),
    ]:
        Dispute.objects.create(
            order=PaidOrderFactory(),
            stripe_dispute_id=f"dp_{name}",
            amount=4200,
            currency="eur",
            status=status,
            evidence_due_by=due,
        )

    disputes = staff.get(PAGE).content.decode().split('id="disputes"', 1)[1]

    assert disputes.index("dp_sooner") < disputes.index("dp_later")
    assert "dp_closed" not in disputes.split('id="breaks"')[0]
    assert 'href="https://dashboard.stripe.com/disputes/dp_sooner"' in disputes
    assert "42.00 EUR" in disputes


def test_the_page_says_so_when_nothing_needs_attention(staff):
    page = staff.get(PAGE).content.decode()

    assert "No seller owes anything." in page
    assert "No ledger check has run yet" in page
    assert "No dispute is open." in page
    assert page.count('data-figure="attention-') == len(Attention)


def test_a_failure_counts_from_the_first_failed_attempt_with_its_attempts_and_next_retry(staff):
    next_try = timezone.now() + timedelta(seconds=40)
    row = SellerTransferFactory(
        status=TransferStatus.FAILED,
        retry_count=1,
        next_retry_at=next_try,
        error_message="Stripe 500",
    )

    page = staff.get(PAGE).content.decode()

    section = page.split('id="attention-failing_now"', 1)[1].split('class="module"', 1)[0]
    assert 'data-figure="attention-failing_now">1<' in section
    assert reverse("admin:payouts_sellertransfer_change", args=[row.pk]) in section
    assert "Stripe 500" in section
    assert "<td>1</td>" in section  # its attempts


def test_advice_for_rows_that_gave_up_is_to_requeue_never_to_pay_by_hand_as_well(staff, rows):
    page = staff.get(PAGE).content.decode()

    for reason in ("gave_up_unpaid", "gave_up_reversal"):
        section = page.split(f'id="attention-{reason}"', 1)[1].split('class="module"', 1)[0]
        assert "Re-queue selected transfers that gave up" in section
        assert "Do not" in section
    final = page.split('id="attention-permanently_failed"', 1)[1].split('class="module"', 1)[0]
    assert f'data-end-advice="{rows["permanently_failed"].pk}"' in final
    assert "Stripe has no such transfer in this account" in final


def test_failed_stripe_events_are_on_the_dashboard_and_listed_with_how_to_replay(staff):
    WebhookEventFactory(outcome=WebhookOutcome.PROCESSED)
    failed = WebhookEventFactory(
        outcome=WebhookOutcome.FAILED, error="no order 999 for payment pi_x", attempts=2
    )

    dashboard = staff.get(reverse("admin:index")).content.decode()
    page = staff.get(PAGE).content.decode()

    assert 'data-figure="failed-webhooks">1<' in dashboard
    webhooks = page.split('id="webhooks"', 1)[1].split('id="breaks"', 1)[0]
    assert 'data-figure="failed-webhooks">1<' in webhooks
    assert failed.stripe_event_id in webhooks
    assert "no order 999 for payment pi_x" in webhooks
    assert "replay_webhook_events" in webhooks
