"""The reversal worker's outcome table and backoff rule (docs/flows.md), against the sandbox."""

from dataclasses import replace
from datetime import timedelta

import pytest
from django.utils import timezone

from payouts import tasks
from payouts.models import SellerTransfer
from payouts.transfer.transitions import TransferStatus
from tests.builders import due_row, make_due, reversal_backlog
from tests.factories import SellerTransferFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def reversal_policy(settings):
    """Set reversal knobs for one test: ``reversal_policy(max_retries=3, ...)``."""

    def configure(**changes):
        settings.PAYOUTS = replace(
            settings.PAYOUTS, reversal=replace(settings.PAYOUTS.reversal, **changes)
        )
        return settings.PAYOUTS.reversal

    return configure


def remote(sandbox, stripe_transfer_id: str) -> dict:
    """The sandbox ledger's view of one transfer: amount_reversed, reversal_count, …"""
    return next(t for t in sandbox.ledger()["transfers"] if t["id"] == stripe_transfer_id)


def remote_reversal_ids(sandbox, stripe_transfer_id: str) -> list[str]:
    return [
        r["id"]
        for r in sandbox.state()["transfer_reversals"]
        if r["transfer"] == stripe_transfer_id
    ]


def test_a_due_row_is_reversed_in_full_at_stripe_and_settled(sandbox, stripe_client):
    row = due_row(stripe_client, amount=900)

    summary = tasks.reversals_process_due()

    row.refresh_from_db()
    assert summary == {"reversed": 1}
    assert row.status == TransferStatus.REVERSED
    assert row.stripe_reversal_id.startswith("trr_")
    assert row.amount_reversed == 900
    assert row.next_retry_at is None
    assert remote(sandbox, row.stripe_transfer_id)["amount_reversed"] == 900
    assert remote_reversal_ids(sandbox, row.stripe_transfer_id) == [row.stripe_reversal_id]


def test_already_reversed_at_stripe_is_reversed_with_an_informative_message(sandbox, stripe_client):
    row = due_row(stripe_client)
    stripe_client.v1.transfers.reversals.create(row.stripe_transfer_id)

    summary = tasks.reversals_process_due()

    row.refresh_from_db()
    assert summary == {"already_reversed": 1}
    assert row.status == TransferStatus.REVERSED
    assert row.amount_reversed == row.amount
    assert "already fully reversed" in row.error_message
    assert row.next_retry_at is None
    assert remote(sandbox, row.stripe_transfer_id)["reversal_count"] == 1


def test_not_found_is_terminal_after_one_call(sandbox):
    row = SellerTransferFactory(reversal_due=True, stripe_transfer_id="tr_doesnotexist")

    summary = tasks.reversals_process_due()

    row.refresh_from_db()
    assert summary == {"not_found": 1}
    assert row.status == TransferStatus.PERMANENTLY_FAILED
    assert "not found" in row.error_message
    assert row.next_retry_at is None
    assert len(sandbox.calls()) == 1


def test_transient_503_stays_pending_with_one_retry_after_the_base_delay(
    sandbox, stripe_client, reversal_policy
):
    policy = reversal_policy(backoff_base=timedelta(minutes=1))
    row = due_row(stripe_client)
    sandbox.script(
        "reversals.create", [{"status": 503, "error": {"type": "api_error", "message": "down"}}]
    )
    before = timezone.now()

    summary = tasks.reversals_process_due()

    row.refresh_from_db()
    assert summary == {"retry_scheduled": 1}
    assert row.status == TransferStatus.REVERSAL_PENDING
    assert row.retry_count == 1
    assert before + policy.backoff_base <= row.next_retry_at <= timezone.now() + policy.backoff_base
    assert "503" in row.error_message
    assert remote(sandbox, row.stripe_transfer_id)["amount_reversed"] == 0


def test_backoff_is_capped_at_the_maximum(sandbox, stripe_client, reversal_policy):
    reversal_policy(
        backoff_base=timedelta(seconds=1), backoff_max=timedelta(seconds=10), max_retries=5
    )
    row = due_row(stripe_client, retry_count=4)
    sandbox.script(
        "reversals.create", [{"status": 503, "error": {"type": "api_error", "message": "down"}}]
    )
    before = timezone.now()

    tasks.reversals_process_due()

    row.refresh_from_db()
    assert row.retry_count == 5
    waited = row.next_retry_at - before
    assert timedelta(seconds=10) <= waited < timedelta(seconds=11)  # 10 s, not 2^4 = 16 s


def test_retries_exhausted_is_permanently_failed_after_one_plus_max_attempts(
    sandbox, stripe_client, reversal_policy
):
    reversal_policy(max_retries=3)
    row = due_row(stripe_client)
    sandbox.set_faults("reversals.create", error_500_rate=1.0)

    outcomes = []
    for _ in range(10):
        outcomes.append(tasks.reversals_process_due())
        row.refresh_from_db()
        if row.status != TransferStatus.REVERSAL_PENDING:
            break
        make_due(row)

    assert row.status == TransferStatus.PERMANENTLY_FAILED
    assert row.next_retry_at is None
    assert outcomes[-1] == {"permanently_failed": 1}
    assert len(sandbox.calls("reversals.create")) == 1 + 3
    # After each 5xx the key changes, so each retry first reads Stripe's reversals.
    assert len(sandbox.calls("reversals.list")) == 3
    keys = [call["idempotency_key"] for call in sandbox.calls("reversals.create")]
    assert len(set(keys)) == 4


def test_legacy_row_without_transfer_id_fails_without_calling_stripe(sandbox):
    row = SellerTransferFactory(
        status=TransferStatus.REVERSAL_PENDING, stripe_transfer_id="", next_retry_at=timezone.now()
    )

    summary = tasks.reversals_process_due()

    row.refresh_from_db()
    assert summary == {"no_transfer_id": 1}
    assert row.status == TransferStatus.PERMANENTLY_FAILED
    assert "no stripe_transfer_id" in row.error_message
    assert sandbox.calls() == []


def test_only_reversal_pending_rows_are_picked(sandbox, stripe_client):
    past = timezone.now() - timedelta(hours=1)
    others = [
        SellerTransferFactory(status=status, next_retry_at=past, stripe_transfer_id=f"tr_{status}")
        for status in TransferStatus
        if status != TransferStatus.REVERSAL_PENDING
    ]
    snapshot = {t.pk: (t.status, t.updated_at, t.next_retry_at) for t in others}
    due = due_row(stripe_client)

    summary = tasks.reversals_process_due()

    assert summary == {"reversed": 1}
    due.refresh_from_db()
    assert due.status == TransferStatus.REVERSED
    after = {
        t.pk: (t.status, t.updated_at, t.next_retry_at)
        for t in SellerTransfer.objects.filter(pk__in=snapshot)
    }
    assert after == snapshot
    assert len(sandbox.calls("reversals.create")) == 1


def test_rows_with_a_future_next_retry_at_are_skipped(sandbox, stripe_client):
    later = timezone.now() + timedelta(minutes=5)
    row = due_row(stripe_client, next_retry_at=later)

    summary = tasks.reversals_process_due()

    row.refresh_from_db()
    assert summary == {}
    assert (row.status, row.next_retry_at, row.retry_count) == (
        TransferStatus.REVERSAL_PENDING,
        later,
        0,
    )
    assert sandbox.calls("reversals.create") == []


def test_a_switched_off_worker_reports_disabled_and_reverses_nothing(
    sandbox, stripe_client, reversal_policy
):
    reversal_policy(enabled=False)
    row = due_row(stripe_client)

    assert tasks.reversals_process_due() == {"disabled": 1}
    row.refresh_from_db()
    assert row.status == TransferStatus.REVERSAL_PENDING
    assert sandbox.calls("reversals.create") == []


@pytest.mark.slow  # a backlog of hundreds of Stripe calls
def test_one_run_drains_a_backlog_larger_than_a_batch(sandbox, stripe_client):
    rows = reversal_backlog(stripe_client, 120)

    summary = tasks.reversals_process_due()

    assert summary == {"reversed": 120}
    assert set(
        SellerTransfer.objects.filter(pk__in=[r.pk for r in rows]).values_list("status", flat=True)
    ) == {TransferStatus.REVERSED}


def test_a_dropped_response_is_recovered_with_the_same_key_and_no_second_reversal(
    sandbox, stripe_client
):
    row = due_row(stripe_client)
    sandbox.script("reversals.create", [{"action": "drop_after_perform"}])

    first = tasks.reversals_process_due()
    row.refresh_from_db()
    kept_key = row.reversal_idempotency_key
    make_due(row)
    second = tasks.reversals_process_due()

    row.refresh_from_db()
    assert (first, second) == ({"retry_scheduled": 1}, {"reversed": 1})
    assert row.status == TransferStatus.REVERSED
    at_stripe = remote(sandbox, row.stripe_transfer_id)
    assert (at_stripe["reversal_count"], at_stripe["amount_reversed"]) == (1, row.amount)
    assert [c["idempotency_key"] for c in sandbox.calls("reversals.create")] == [kept_key] * 2


def test_a_5xx_that_hid_a_performed_reversal_is_found_before_a_new_key_is_sent(
    sandbox, stripe_client
):
    row = due_row(stripe_client)
    # Someone (an earlier attempt of this row) reversed it, then Stripe answered 500.
    stripe_client.v1.transfers.reversals.create(
        row.stripe_transfer_id, params={"metadata": {"seller_transfer_id": str(row.pk)}}
    )
    SellerTransfer.objects.filter(pk=row.pk).update(read_stripe_first=True)
    row.refresh_from_db()
    reversals_before = len(sandbox.calls("reversals.create"))

    summary = tasks.reversals_process_due()

    row.refresh_from_db()
    assert summary == {"reversed": 1}
    assert len(sandbox.calls("reversals.create")) == reversals_before
    assert remote(sandbox, row.stripe_transfer_id)["reversal_count"] == 1
