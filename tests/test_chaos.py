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

The second test does the same to the reserve release and account debit sweeps, run together by
``manage.py process_reserves_and_debits --drain`` in two processes, with about a third of
``POST /v1/transfers`` (releases and debits alike) and of the releases' reads failing. The
backlog is built through the webhook: 40 sellers keeping 10 % back (due at once), ten of them
paid twice (one release carries both), refunds taking 0-12 % of their orders (a 12 % refund
empties the reserves: nothing to release); 30 sellers in debt who allow debits, every fourth
with too little on their account (refused). While the sweeps run, each reserve order is refunded
3 % more, one at the start (as the reserves are batched: taken from the reserves) and one after
each kill (taken from the transfers, reversed at Stripe: a released reserve is fixed). In the
end: one Stripe transfer per release, of the amount its reserves still hold (or the reserve
still held, waiting for the next day's); at most one Stripe debit per debit row, never more
than the debt; each seller's debt in the book is the debt before less what Stripe debited; no
release or debit left pending; the ledger check clean. Its numbers (about 30 s on two cores
shared with other work: 10 s building, 15-18 s draining):

- Each sweep claims one row at a time, its lease (0.5 s timeout + 2 s margin) starting as its
  call does; a kill holds back only the row in flight. (Claiming batches under one lease is
  the defect ``test_sweep_leases.py`` keeps: a batch outlasted its lease.)
- Each kill waits until the worker it hits has logged a Stripe call (booting takes 1-3 s here),
  then 0.1-0.8 s more, the two workers in turn: five kills, each of a worker at work (asserted,
  with work left).
- ``DEBT_DEBIT_AFTER`` is 10 s: the book stamps entries with the database's clock, so the debts
  become old enough while the reserves are built; a refused debit may be tried again late in
  the run (refused again).
- ``DEBT_DEBIT_MAX_RETRIES`` is 8: a debit whose key met a 500 gets that 500 replayed under its
  key until its retries are spent, then it is ``failed`` (no money moved).
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

from ledger.selectors import seller_balances
from marketplace.selectors import order_total
from payouts import selectors
from payouts.models import (
    AccountDebit,
    DebitState,
    ReleaseState,
    ReserveRelease,
    SellerTransfer,
    SellerTransferEvent,
)
from payouts.services.ledger_check import ledger_check
from payouts.transfer import money
from payouts.transfer.transitions import PAID_STATUSES, TransferStatus
from tests.builders import (
    debts_backlog,
    order_refunded,
    reserves_backlog,
    reversal_backlog,
    worker_environment,
)

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

    def __init__(
        self,
        index: int,
        env: dict[str, str],
        log_dir: Path,
        command: tuple[str, ...] = ("process_reversals",),
    ):
        self.index = index
        self.env = env
        self.log_dir = log_dir
        self.command = command
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
                [sys.executable, "manage.py", *self.command, "--drain"]
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

    def working(self, timeout: float) -> bool:
        """Wait until the running process has called Stripe (it logs each call at ``INFO``);
        False if it exited or ``timeout`` passed first."""
        log = self.log_dir / f"worker{self.index}-{self.generation}.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if '"stripe call' in log.read_text():
                return True
            if self.process.poll() is not None:
                return False
            time.sleep(0.05)
        return False


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


# --- Reserve releases and account debits -------------------------------------------------------

RESERVE_SELLERS = 40
DEBT_SELLERS = 30
SWEEP_KILLS = 5
SWEEP_KILL_AFTER_SECONDS = (0.1, 0.8)
# At most a few rows per round of each sweep, so both sweeps take turns in each worker.
SWEEP_COMMAND = ("process_reserves_and_debits", "--limit", "5")
# The book keeps the database's time: the debts are old enough for the workers' debits this long
# after they are made (the reserves are built meanwhile); a refused debit is tried again this
# long after it was refused, if the workers still run.
DEBT_DEBIT_AFTER_SECONDS = 10
SWEEP_FAULTS = {
    **REVERSAL_FAULTS,
    "error_429_rate": 0.08,
    "timeout_rate": 0.08,
    "drop_after_perform_rate": 0.10,
    # Longer than the workers' STRIPE_TIMEOUT (0.5 s here).
    "timeout_seconds": 1,
    "latency_ms": 50,
}
SWEEP_ENVIRONMENT = {
    # Each Stripe call logged: the test kills a worker once it is at work.
    "LOG_LEVEL": "INFO",
    "STRIPE_TIMEOUT": "500ms",
    "DEBT_DEBIT_AFTER": f"{DEBT_DEBIT_AFTER_SECONDS}s",
    "TRANSFER_RETRY_MAX_RETRIES": "50",
    "TRANSFER_RETRY_BACKOFF_BASE": "100ms",
    "TRANSFER_RETRY_BACKOFF_MAX": "500ms",
    "DEBT_DEBIT_MAX_RETRIES": "8",
    "DEBT_DEBIT_BACKOFF_BASE": "100ms",
    "DEBT_DEBIT_BACKOFF_MAX": "300ms",
}
FINAL_DEBITS = (DebitState.SUCCEEDED, DebitState.REFUSED, DebitState.FAILED)


def reserves_left_by_seller(rows) -> dict[int, int]:
    """What each seller's paid reserves still hold, now (refund shares taken)."""
    left: Counter[int] = Counter()
    for row in SellerTransfer.objects.filter(pk__in=[row.pk for row in rows]):
        if row.status in PAID_STATUSES:
            left[row.seller_id] += money.reserve_held(
                reserved=row.amount_reserved, taken=row.reserve_refund + row.reserve_dispute
            )
    return {seller: amount for seller, amount in left.items() if amount > 0}


def sweep_work_left(releases_expected: int, debtors: int) -> int:
    """Releases not sent yet and sellers in debt without a final debit: what a kill can cut."""
    sent = ReserveRelease.objects.filter(state=ReleaseState.SENT).count()
    settled = AccountDebit.objects.filter(state__in=FINAL_DEBITS).values("seller").distinct()
    return releases_expected - sent + debtors - settled.count()


def test_killed_sweep_workers_and_a_failing_stripe_release_every_reserve_and_debit_at_most_the_debt(
    client, sandbox, sandbox_server, stripe_client, tmp_path
):
    building = time.monotonic()
    debtors = debts_backlog(client, sandbox, stripe_client, DEBT_SELLERS)
    debts_made = time.monotonic()
    reserve_rows = reserves_backlog(client, sandbox, stripe_client, RESERVE_SELLERS)
    built = time.monotonic()
    print(f"debts built in {debts_made - building:.1f} s, reserves in {built - debts_made:.1f} s")
    time.sleep(max(debts_made + DEBT_DEBIT_AFTER_SECONDS + 0.5 - time.monotonic(), 0))
    release_due = reserves_left_by_seller(reserve_rows)
    debts_before = {s.pk: seller_balances(seller_id=s.pk)["usd"]["debt"] for s in debtors}
    sandbox.set_faults("transfers.create", **SWEEP_FAULTS)
    sandbox.set_faults("transfers.list", **SWEEP_FAULTS)
    rng = random.Random(SEED)
    env = worker_environment(sandbox_server.url, **SWEEP_ENVIRONMENT)
    started = time.monotonic()

    slots = [WorkerSlot(i, env, tmp_path, command=SWEEP_COMMAND) for i in range(WORKERS)]
    # Buyers are refunded while the sweeps run: each order a little (3 %), one now (while the
    # first sweep batches the reserves), one after each kill.
    refunds = sorted({row.order for row in reserve_rows}, key=lambda order: order.pk)
    refunded = {}
    kills = []  # (seconds since start, slot, killed a live worker at work, work still left)
    try:
        while len(kills) < SWEEP_KILLS:
            if refunds:
                order = refunds.pop(0)
                refunded[order.pk] = order_total(order=order) * 3 // 100
                order_refunded(client, sandbox, stripe_client, order, refunded[order.pk])
            # In turn (one boots while the other works), each once it has called Stripe, at a
            # random moment of the calls that follow.
            slot = slots[len(kills) % WORKERS]
            working = slot.working(timeout=WAIT_SECONDS / 3)
            time.sleep(rng.uniform(*SWEEP_KILL_AFTER_SECONDS))
            left = sweep_work_left(len(release_due), len(debtors))
            killed = slot.kill_and_restart() and working
            kills.append((round(time.monotonic() - started, 1), slot.index, killed, left))
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
    sandbox.clear_faults("transfers.create")
    sandbox.clear_faults("transfers.list")  # the ledger check reads transfers

    outputs = {f"worker{slot.index}": slot.output() for slot in slots}
    diagnostics = f"after {elapsed:.0f} s; kills {kills}; last outputs {outputs}; logs {tmp_path}"
    print(diagnostics)
    assert [slot.process.returncode for slot in slots] == [0] * WORKERS, diagnostics
    assert all(killed and left > 0 for _, _, killed, left in kills), diagnostics

    live = SellerTransfer.objects.filter(order_id__in=refunded)
    print(
        f"refunded during the run: {refunded}; rows then reversed at Stripe (their reserve "
        f"released or emptied): {live.filter(reversal_target__gt=0).count()} of {live.count()}"
    )
    state = sandbox.state()
    assert_every_release_sent_once(state, reserves_left_by_seller(reserve_rows))
    assert_every_debit_at_most_once_and_within_the_debt(state, debts_before)
    assert_the_faults_happened(sandbox)
    _, breaks = ledger_check()
    assert breaks == [], breaks[:5]
    assert selectors.transfer_counts_by_status() == selectors.transfer_counts_by_status_recount()


def assert_every_release_sent_once(state: dict, release_due: dict[int, int]) -> None:
    """One Stripe transfer per sent release, of its amount, which its reserves still hold (no
    refund took from a reserve once released); what each seller's reserves have left is
    released, or (some reserves batched after that day's release) still held."""
    releases = list(ReserveRelease.objects.all())
    assert {r.state for r in releases} <= {ReleaseState.SENT}, Counter(r.state for r in releases)
    at_stripe: dict[str, list[dict]] = {}
    for transfer in state["transfers"]:
        if "reserve_release_id" in transfer["metadata"]:
            at_stripe.setdefault(transfer["metadata"]["reserve_release_id"], []).append(transfer)
    assert set(at_stripe) == {str(r.pk) for r in releases}
    for release in releases:
        [transfer] = at_stripe[str(release.pk)]
        assert transfer["id"] == release.stripe_transfer_id, release.pk
        assert transfer["amount"] == release.amount, release.pk
        carried = SellerTransfer.objects.filter(reserve_release=release)
        held = sum(
            money.reserve_held(
                reserved=t.amount_reserved, taken=t.reserve_refund + t.reserve_dispute
            )
            for t in carried
        )
        assert held == release.amount, release.pk
    released = Counter()
    for release in releases:
        released[release.seller_id] += release.amount
    still_held = {
        seller: seller_balances(seller_id=seller)["usd"]["reserve"] for seller in release_due
    }
    for seller, due in release_due.items():
        assert released[seller] + still_held[seller] == due, (seller, due, released[seller])
    waiting = {seller: held for seller, held in still_held.items() if held}
    print(f"{len(releases)} releases sent; reserves waiting for the next day's: {waiting}")
    assert set(released) <= set(release_due)


def assert_every_debit_at_most_once_and_within_the_debt(
    state: dict, debts_before: dict[int, int]
) -> None:
    """At most one Stripe debit per debit row, never more than the debt; the book's debt is
    the debt before less what Stripe debited; every row final."""
    debits = list(AccountDebit.objects.all())
    states = Counter(d.state for d in debits)
    print(f"account debits: {dict(states)}")
    unfinished = [
        (d.pk, d.seller_id, d.state, d.retry_count, d.next_retry_at, d.error_message)
        for d in debits
        if d.state not in FINAL_DEBITS
    ]
    assert set(states) <= set(FINAL_DEBITS), (states, unfinished)
    assert states[DebitState.SUCCEEDED] > 0 and states[DebitState.REFUSED] > 0, states
    by_row: dict[str, list[dict]] = {}
    for debit in state["account_debits"]:
        by_row.setdefault(debit["metadata"]["account_debit_id"], []).append(debit)
    rows = {str(d.pk): d for d in debits}
    assert set(by_row) <= set(rows)
    debited: Counter[int] = Counter()
    for pk, made in by_row.items():
        row = rows[pk]
        assert len(made) == 1, (row.pk, made)
        assert made[0]["amount"] == row.amount <= debts_before[row.seller_id], row.pk
        assert row.state == DebitState.SUCCEEDED, (row.pk, row.state, row.error_message)
        assert made[0]["id"] == row.stripe_transfer_id
        debited[row.seller_id] += row.amount
    assert all(d.state != DebitState.SUCCEEDED or str(d.pk) in by_row for d in debits)
    for seller, before in debts_before.items():
        assert debited[seller] <= before, seller
        after = seller_balances(seller_id=seller)["usd"]["debt"]
        assert after == before - debited[seller], (seller, before, debited[seller], after)


def assert_the_faults_happened(sandbox) -> None:
    """Every kind of fault hit the releases' and the debits' calls; reads ran before sends."""
    calls = sandbox.calls("transfers.create")
    overall = Counter(c["outcome"] for c in calls)
    for outcome in ("injected_500", "rate_limited", "timeout", "dropped_after_perform"):
        assert overall[outcome] > 0, overall
    kinds = {"release": "payouts-reserve-", "debit": "debit-"}
    for kind, prefix in kinds.items():
        outcomes = Counter(
            c["outcome"] for c in calls if (c["idempotency_key"] or "").startswith(prefix)
        )
        print(f"{kind} transfers.create outcomes: {dict(outcomes)}")
        # Each sweep met answers that may hide what Stripe did.
        ambiguous = ("injected_500", "timeout", "dropped_after_perform")
        assert sum(outcomes[outcome] for outcome in ambiguous) > 0, (kind, outcomes)
    assert sandbox.calls("transfers.list"), "no release read Stripe before sending again"
