"""Several workers on one backlog, as processes or as threads of one run: each transfer is
reversed exactly once at the sandbox, even when the sandbox performs a reversal and then drops
the response; and the Stripe request budget they share.

The workers have their own database connections, so the backlog is committed
(``transaction=True``)."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from payouts.models import SellerTransfer
from payouts.services.reversals import reversals_process_due
from payouts.transfer.transitions import TransferStatus
from tests.builders import reversal_backlog, worker_environment

ROOT = Path(__file__).resolve().parent.parent
ROWS = 500
WORKERS = 4


def most_calls_in_flight(calls: list[dict]) -> int:
    """The largest number of sandbox calls that were being served at the same moment."""
    edges = sorted(
        [(c["time"], 1) for c in calls] + [(c["time"] + c["duration_ms"] / 1000, -1) for c in calls]
    )
    busy = most = 0
    for _, change in edges:
        busy += change
        most = max(most, busy)
    return most


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_four_worker_processes_reverse_each_transfer_exactly_once_despite_dropped_responses(
    sandbox, sandbox_server, stripe_client
):
    rows = reversal_backlog(stripe_client, ROWS)
    sandbox.set_faults("reversals.create", drop_after_perform_rate=0.10)

    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "process_reversals",
                "--drain",
                "--max-seconds",
                "120",
            ],
            cwd=ROOT,
            env=worker_environment(sandbox_server.url),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(WORKERS)
    ]
    outputs = [worker.communicate(timeout=180)[0] for worker in workers]

    assert [w.returncode for w in workers] == [0] * WORKERS, outputs
    statuses = SellerTransfer.objects.filter(pk__in=[r.pk for r in rows]).values_list(
        "status", flat=True
    )
    assert set(statuses) == {TransferStatus.REVERSED}
    ledger = {t["id"]: t for t in sandbox.ledger()["transfers"]}
    for row in SellerTransfer.objects.filter(pk__in=[r.pk for r in rows]):
        at_stripe = ledger[row.stripe_transfer_id]
        assert at_stripe["reversal_count"] == 1, row.stripe_transfer_id
        assert at_stripe["amount_reversed"] == row.amount == row.amount_reversed
    dropped = sandbox.calls("reversals.create", outcome="dropped_after_perform")
    assert len(dropped) >= ROWS * 0.05  # the fault really happened
    busy_workers = sum(1 for out in outputs if '"reversed"' in out)
    assert busy_workers >= 2  # the backlog really was shared


@pytest.mark.slow  # seconds of paced Stripe calls
@pytest.mark.django_db(transaction=True)
def test_one_run_keeps_several_stripe_calls_in_flight_and_reverses_each_row_once(
    sandbox, stripe_client, settings
):
    settings.PAYOUTS = replace(settings.PAYOUTS, reversal_concurrency=8)
    rows = reversal_backlog(stripe_client, 120)
    sandbox.set_faults("reversals.create", latency_ms=50)

    summary = reversals_process_due()

    assert summary == {"reversed": 120}
    ledger = {t["id"]: t for t in sandbox.ledger()["transfers"]}
    assert all(ledger[r.stripe_transfer_id]["reversal_count"] == 1 for r in rows)
    assert most_calls_in_flight(sandbox.calls("reversals.create")) > 1
