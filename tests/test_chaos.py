"""Chaos: two reversal worker processes drain a backlog while the sandbox fails a quarter of the
reversal calls (500s, 429s, timeouts, reversals performed and then not answered) and the workers
are SIGKILLed at random moments and restarted. In the end every transfer is reversed exactly once
at Stripe and the database says exactly what Stripe says.

Full reversals cannot overshoot at Stripe (it refuses to reverse more than is left), so a second
reversal attempted with a fresh idempotency key would surface as Stripe's "already fully
reversed" refusal rather than as a second reversal in the ledger: the test fails on that too.

Why the numbers are what they are (on two cores, the whole test takes about 15 s):

- ``KILLS`` = 6, one every 0.8-1.6 s. A restarted worker needs about 0.7 s to boot Django and
  claim a batch, so most kills land while a worker has calls in flight; six kills over two
  workers hit each of them several times, at different points of the claim → call → record step.
- ``ROWS`` = 500: at the ~35 rows/s two killed-and-restarted workers reverse on this machine,
  the kills (about 7 s) use up roughly half the backlog; the rest keeps every kill an interrupting
  one (asserted) with a safety factor of about two, and shows the restarted workers finishing
  the rows the killed ones held once their lease ends.
- The fault rates (25 % of reversal calls and reconcile reads) make every kind of fault happen
  dozens of times over 500 rows (asserted), including performed-then-dropped reversals.
- The workers' Stripe timeout is 1 s and the sandbox holds an injected timeout for 2 s, so a
  timeout is a timeout to the worker; the claim lease is 1 s + 2 s margin, so a killed worker's
  rows come back 3 s after the kill. ``latency_ms`` adds Stripe's own latency to every call,
  which keeps calls in flight when a kill lands.
- ``DRAIN_SECONDS``/``WAIT_SECONDS`` only bound a broken run: about six times what a good one
  takes.
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

from payouts import selectors
from payouts.models import SellerTransfer, SellerTransferEvent
from payouts.services.ledger_check import ledger_check
from payouts.transfer.transitions import TransferStatus
from tests.builders import reversal_backlog, worker_environment

ROOT = Path(__file__).resolve().parent.parent
ROWS = 600
WORKERS = 2
KILLS = 6
KILL_INTERVAL_SECONDS = (0.6, 1.3)
SEED = 7_2024
MAX_RETRIES = 50
# Whole-test bounds: the workers give up draining after DRAIN_SECONDS, the test after WAIT.
DRAIN_SECONDS = 60
WAIT_SECONDS = 90
REVERSAL_FAULTS = {
    "error_500_rate": 0.10,
    "error_429_rate": 0.05,
    "timeout_rate": 0.05,
    "drop_after_perform_rate": 0.05,
    # Longer than the workers' STRIPE_TIMEOUT (1 s), so a timeout is a timeout to them.
    "timeout_seconds": 2,
    # Stripe's own latency: calls are in flight when a kill lands.
    "latency_ms": 20,
}

# Worker processes read the backlog through their own connections: it must be committed.
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


def history(sandbox, stripe_transfer_id: str) -> str:
    """Every sandbox call about one transfer, and its row's audit trail: what a failure needs."""
    calls = [
        (
            c["seq"],
            round(c["time"] % 1000, 3),
            c["operation"],
            (c["idempotency_key"] or "")[-4:],
            c["outcome"],
            c["status"],
            c["duration_ms"],
        )
        for c in sandbox.calls()
        if stripe_transfer_id in c["path"]
    ]
    row = SellerTransfer.objects.get(stripe_transfer_id=stripe_transfer_id)
    events = [
        (round(e.created_at.timestamp() % 1000, 3), e.from_status, e.to_status, e.detail)
        for e in row.events.order_by("pk")
    ]
    lines = [f"{stripe_transfer_id}: (seq, time, operation, key, outcome, status, ms)"]
    lines += [f"  call {call}" for call in calls] + [f"  event {event}" for event in events]
    return "\n".join(lines)


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
            time.sleep(rng.uniform(*KILL_INTERVAL_SECONDS))
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
        assert at_stripe["reversal_count"] == 1, history(sandbox, row.stripe_transfer_id)
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
    refused_histories = "\n".join(history(sandbox, c["path"].split("/")[3]) for c in refused[:3])
    print(refused_histories)  # in full: pytest shortens long assertion messages
    assert refused == [], refused_histories
    # The chaos really happened: every kind of fault hit reversal calls, reconcile reads ran.
    outcomes = Counter(call["outcome"] for call in calls)
    print(f"reversals.create outcomes: {dict(outcomes)}")
    for outcome in ("injected_500", "rate_limited", "timeout", "dropped_after_perform"):
        assert outcomes[outcome] > 0, outcomes
    assert sandbox.calls("reversals.list"), "no reconcile read was made"
    # And the book agrees with itself, the rows and Stripe, to the cent.
    _, breaks = ledger_check()
    assert breaks == [], breaks[:5]
    # And the counters /metrics reads, kept by triggers through every kill, equal a recount.
    assert selectors.transfer_counts_by_status() == selectors.transfer_counts_by_status_recount()
    assert selectors.transition_counts() == selectors.transition_counts_recount()
