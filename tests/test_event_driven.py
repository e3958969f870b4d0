"""Money moves when it becomes due, not at beat's next tick: a refund wakes the reversal worker
after commit, a failed attempt wakes it when its backoff ends, wake-ups coalesce, and beat's
sweep is only the safety net for a lost wake-up. The claim keeps a wake-up and the sweep racing
for the same rows from moving money twice."""

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from django.db import connection, transaction

from payouts import tasks
from payouts.models import SellerTransfer
from payouts.services.reversals import reversals_drain, reversals_process_due
from payouts.transfer.transitions import TransferStatus
from payouts.wakeups import reversals_due_after_commit
from tests.builders import (
    make_event,
    paid_order,
    post_event,
    refund_at_stripe,
    reversal_backlog,
    worker_environment,
)

ROOT = Path(__file__).resolve().parent.parent
# A broker of these tests' own: no other Celery worker on the machine takes their tasks.
BROKER_URL = "redis://127.0.0.1:6379/13"
IDLE_BROKER_URL = "redis://127.0.0.1:6379/14"


@pytest.fixture(scope="module")
def worker_process(sandbox_server, django_db_setup):
    """One Celery worker process (no beat) on ``BROKER_URL``, the test database and the sandbox,
    for the tests of this module that need one."""
    redis.Redis.from_url(BROKER_URL).flushdb()
    environment = worker_environment(
        sandbox_server.url,
        CELERY_BROKER_URL=BROKER_URL,
        CELERY_TASK_ALWAYS_EAGER="false",
        REVERSAL_BACKOFF_BASE="2s",
        REVERSAL_BACKOFF_MAX="2s",
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--concurrency=2"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_listening(worker)
        yield worker
    finally:
        worker.kill()
        worker.wait()


def _wait_until_listening(worker: subprocess.Popen) -> None:
    # A worker declares its queue's binding in Redis once it consumes from it.
    broker = redis.Redis.from_url(BROKER_URL)
    deadline = time.monotonic() + 30
    while not broker.exists("_kombu.binding.celery"):
        if worker.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the Celery worker did not start (exit code {worker.poll()})")
        time.sleep(0.05)


@pytest.fixture
def celery_worker(worker_process, celery_queueing):
    """The worker process, with this test's wake-ups queued to it."""
    celery_queueing(BROKER_URL)
    return worker_process


def statuses(order) -> list[str]:
    return sorted(SellerTransfer.objects.filter(order=order).values_list("status", flat=True))


def wait_until(check, timeout: float) -> float:
    """Seconds until ``check()`` holds; fails after ``timeout``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not reached within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.mark.django_db(transaction=True)  # the worker process must see the committed rows
@pytest.mark.slow
def test_a_refunds_reversals_start_without_any_beat_tick(
    client, sandbox, stripe_client, celery_worker
):
    order, _ = paid_order(stripe_client, [1000, 2000, 3000])

    post_event(client, make_event("refund.created", refund_at_stripe(stripe_client, order)))
    waited = wait_until(lambda: statuses(order) == [TransferStatus.REVERSED] * 3, timeout=10)

    assert waited < 5, "the reversals waited for something other than the wake-up"
    assert [t["reversal_count"] for t in sandbox.ledger()["transfers"]] == [1, 1, 1]


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_failed_reversal_is_tried_again_when_its_backoff_ends(
    client, sandbox, stripe_client, celery_worker
):
    order, [row] = paid_order(stripe_client, [2000])
    sandbox.script(
        "reversals.create", [{"status": 503, "error": {"type": "api_error", "message": "down"}}]
    )

    post_event(client, make_event("refund.created", refund_at_stripe(stripe_client, order)))
    wait_until(lambda: SellerTransfer.objects.get(pk=row.pk).retry_count == 1, timeout=10)
    failed_at = time.monotonic()
    wait_until(lambda: statuses(order) == [TransferStatus.REVERSED], timeout=10)

    # Backoff 2 s, beat not running: the countdown wake-up, not a tick, retried it.
    assert 1.5 < time.monotonic() - failed_at < 5


@pytest.mark.django_db
def test_a_lost_wake_up_is_picked_up_by_beats_sweep(
    client, sandbox, stripe_client, broker_down, django_capture_on_commit_callbacks
):
    order, _ = paid_order(stripe_client, [1000, 2000])
    with django_capture_on_commit_callbacks(execute=True):
        post_event(client, make_event("refund.created", refund_at_stripe(stripe_client, order)))
    assert (
        statuses(order) == [TransferStatus.REVERSAL_PENDING] * 2
    )  # the wake-up never reached a worker

    tasks.reversals_process_due()  # beat's tick

    assert statuses(order) == [TransferStatus.REVERSED] * 2


@pytest.mark.django_db(transaction=True)  # two threads, each with its own connection
def test_a_wake_up_and_the_sweep_racing_for_the_same_rows_reverse_each_once(sandbox, stripe_client):
    rows = reversal_backlog(stripe_client, 40)
    sandbox.set_faults("reversals.create", latency_ms=20)
    start = threading.Barrier(2)
    results = []

    def run(work) -> None:
        start.wait()
        try:
            results.append(work())
        finally:
            connection.close()

    # The wake-up's drain and beat's tick, at the same moment, on the same 40 due rows.
    racers = [
        threading.Thread(target=run, args=(work,))
        for work in (reversals_drain, reversals_process_due)
    ]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()

    ledger = {t["id"]: t for t in sandbox.ledger()["transfers"]}
    assert [ledger[row.stripe_transfer_id]["reversal_count"] for row in rows] == [1] * 40
    assert set(SellerTransfer.objects.values_list("status", flat=True)) == {TransferStatus.REVERSED}
    assert sum(result.get("reversed", 0) for result in results) == 40


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_refunds_sends_one_drain_not_one_per_refund(celery_queueing):
    # A broker no worker listens on, so the queue shows every task sent.
    redis.Redis.from_url(IDLE_BROKER_URL).flushdb()
    celery_queueing(IDLE_BROKER_URL)

    for _ in range(1000):
        with transaction.atomic():
            reversals_due_after_commit()

    queued = redis.Redis.from_url(IDLE_BROKER_URL).llen("celery")
    assert queued == 1
