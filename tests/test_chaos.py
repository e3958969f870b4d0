"""Chaos: two reversal worker processes drain a backlog while the sandbox fails a
quarter of the reversal calls (500s, 429s, timeouts, reversals performed and then not answered)
and the workers are SIGKILLed at random moments, ten times, and restarted. In the end every
transfer is reversed exactly once at Stripe and the database says exactly what Stripe says.

Full reversals cannot overshoot at Stripe (it refuses to reverse more than is left), so a second
reversal attempted with a fresh idempotency key would surface as Stripe's "already fully
reversed" refusal rather than as a second reversal in the ledger: the test fails on that too.
"""

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from django.db.models import Count

from payouts.models import SellerTransfer, SellerTransferEvent
from payouts.transitions import TransferStatus
from tests.reversal_backlog import reversal_backlog, worker_environment

ROOT = Path(__file__).resolve().parent.parent
ROWS = 2000
WORKERS = 2
KILLS = 10
SEED = 7_2024
MAX_RETRIES = 50
# Whole-test bounds: the workers give up draining after DRAIN_SECONDS, the test after WAIT.
DRAIN_SECONDS = 150
WAIT_SECONDS = 200
REVERSAL_FAULTS = {
    "error_500_rate": 0.10,
    "error_429_rate": 0.05,
    "timeout_rate": 0.05,
    "drop_after_perform_rate": 0.05,
    # Longer than the workers' STRIPE_TIMEOUT, so a timeout is a timeout to them.
    "timeout_seconds": 2,
    # Stripe's own latency, which also keeps the backlog alive through all ten kills.
    "latency_ms": 20,
}

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


class WorkerSlot:
    """One worker process position: the current process and its successors after kills."""

    def __init__(self, index: int, env: dict[str, str], log_dir: Path):
        self.index = index
        self.env = env
        self.log_dir = log_dir
        self.generation = 0
        self.process = self._start()

    def _start(self) -> subprocess.Popen:
        self.generation += 1
        name = f"worker{self.index}-{self.generation}"
        with (
            open(self.log_dir / f"{name}.out", "wb") as out,
            open(self.log_dir / f"{name}.log", "wb") as err,
        ):
            return subprocess.Popen(
                [sys.executable, "manage.py", "process_reversals", "--drain"]
                + ["--max-seconds", str(DRAIN_SECONDS)],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=err,
            )

    def kill_and_restart(self) -> bool:
        """SIGKILL the running process (if it still runs) and start another; True if killed."""
        alive = self.process.poll() is None
        if alive:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process = self._start()
        return alive

    def output(self) -> str:
        return (self.log_dir / f"worker{self.index}-{self.generation}.out").read_text()


def pending_rows() -> int:
    return SellerTransfer.objects.filter(status=TransferStatus.REVERSAL_PENDING).count()


def test_killed_workers_and_a_failing_stripe_still_reverse_every_transfer_exactly_once(
    sandbox, sandbox_server, stripe_client, tmp_path
):
    rows = reversal_backlog(stripe_client, ROWS)
    sandbox.set_faults("reversals.create", **REVERSAL_FAULTS)
    sandbox.set_faults("reversals.list", **REVERSAL_FAULTS)
    rng = random.Random(SEED)
    env = worker_environment(sandbox_server.url, REVERSAL_MAX_RETRIES=str(MAX_RETRIES))
    started = time.monotonic()

    slots = [WorkerSlot(i, env, tmp_path) for i in range(WORKERS)]
    kills = []  # (seconds since start, slot, killed a live worker, rows still pending)
    try:
        while len(kills) < KILLS:
            # Long enough for a restarted worker to boot Django and claim a batch.
            time.sleep(rng.uniform(0.8, 2.0))
            slot = rng.choice(slots)
            pending = pending_rows()
            killed = slot.kill_and_restart()
            kills.append((round(time.monotonic() - started, 1), slot.index, killed, pending))
        for slot in slots:
            remaining = max(WAIT_SECONDS - (time.monotonic() - started), 1)
            try:
                slot.process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                pytest.fail(f"workers still draining after {WAIT_SECONDS} s; kills {kills}")
    finally:
        for slot in slots:
            if slot.process.poll() is None:
                slot.process.kill()
                slot.process.wait()
    elapsed = time.monotonic() - started

    outputs = {f"worker{slot.index}": slot.output() for slot in slots}
    diagnostics = f"after {elapsed:.0f} s; kills {kills}; last outputs {outputs}; logs {tmp_path}"
    print(diagnostics)
    assert [slot.process.returncode for slot in slots] == [0] * WORKERS, diagnostics
    # Every kill hit a live worker while there was still work to interrupt.
    assert all(killed and pending > 0 for _, _, killed, pending in kills), diagnostics

    ours = SellerTransfer.objects.filter(pk__in=[row.pk for row in rows])
    assert pending_rows() == 0, diagnostics
    statuses = Counter(ours.values_list("status", flat=True))
    assert statuses == {TransferStatus.REVERSED: ROWS}, (statuses, diagnostics)

    ledger = {t["id"]: t for t in sandbox.ledger()["transfers"]}
    for row in ours:
        at_stripe = ledger[row.stripe_transfer_id]
        assert at_stripe["reversal_count"] == 1, (row.pk, at_stripe)
        assert row.amount_reversed == at_stripe["amount_reversed"] == row.amount, at_stripe
        assert "already fully reversed" not in row.error_message, (row.pk, row.error_message)
    settled_twice = (
        SellerTransferEvent.objects.filter(transfer__in=ours, to_status=TransferStatus.REVERSED)
        .values("transfer")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    assert not settled_twice.exists()

    # No reversal was ever sent for money already reversed (Stripe's 400 "already … reversed").
    calls = sandbox.calls("reversals.create")
    refused = [call for call in calls if call["status"] == 400]
    assert refused == [], refused[:5]
    # The chaos really happened: every kind of fault hit reversal calls, reconcile reads ran.
    outcomes = Counter(call["outcome"] for call in calls)
    print(f"reversals.create outcomes: {dict(outcomes)}")
    for outcome in ("injected_500", "rate_limited", "timeout", "dropped_after_perform"):
        assert outcomes[outcome] > 0, outcomes
    assert sandbox.calls("reversals.list"), "no reconcile read was made"
