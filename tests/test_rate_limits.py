"""The Stripe request budgets: one limiter in the real Redis, shared by every thread and process,
enforcing the global budget, one per operation, and the checks' smaller share."""

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from payouts.conf import RateBudgets
from payouts.stripe_api.rate_limit import WINDOW_MS, Share, StripeRateLimiter

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def namespace():
    """A budget of its own (fresh Redis keys) for each test."""
    return f"test:limits:{uuid.uuid4().hex}"


def limiter(settings, namespace, **budgets) -> StripeRateLimiter:
    return StripeRateLimiter(
        settings.STRIPE_RATE_LIMIT_REDIS_URL, RateBudgets(**budgets), namespace=namespace
    )


def admitted(limiter_: StripeRateLimiter, operation: str, tries: int, share=Share.WORK) -> int:
    return sum(limiter_.try_acquire(operation, share=share) == 0 for _ in range(tries))


def test_an_operation_gets_no_more_than_its_own_budget(settings, namespace):
    budget = limiter(
        settings, namespace, global_per_second=100, default_per_second=5, checks_per_second=5
    )

    assert admitted(budget, "transfers.create", 12) == 5
    # Another operation has its own 5, from the same global budget.
    assert admitted(budget, "reversals.create", 12) == 5


def test_a_named_operation_uses_its_configured_budget(settings, namespace):
    budget = limiter(
        settings,
        namespace,
        global_per_second=100,
        default_per_second=5,
        checks_per_second=5,
        per_operation=(("transfers.create", 8),),
    )

    assert admitted(budget, "transfers.create", 12) == 8
    assert admitted(budget, "transfers.retrieve", 12) == 5


def test_the_global_budget_caps_every_operation_together(settings, namespace):
    budget = limiter(
        settings, namespace, global_per_second=7, default_per_second=5, checks_per_second=5
    )

    first = admitted(budget, "transfers.create", 10)
    second = admitted(budget, "reversals.create", 10)
    third = admitted(budget, "transfers.retrieve", 10)

    assert (first, second, third) == (5, 2, 0)


def test_a_refused_request_takes_no_place_in_the_other_windows(settings, namespace):
    budget = limiter(
        settings, namespace, global_per_second=10, default_per_second=3, checks_per_second=3
    )

    # Nine tries on one operation: three admitted, six refused by the operation's window. The
    # refused six must not have spent the global budget, so another operation still gets 3.
    assert admitted(budget, "transfers.create", 9) == 3
    assert admitted(budget, "reversals.create", 9) == 3


def test_the_checks_get_a_smaller_share_of_an_operation_than_the_workers(settings, namespace):
    budget = limiter(
        settings, namespace, global_per_second=100, default_per_second=10, checks_per_second=3
    )

    checks = admitted(budget, "transfers.retrieve", 10, share=Share.CHECKS)
    work = admitted(budget, "transfers.retrieve", 10, share=Share.WORK)

    assert (checks, work) == (3, 7)


def test_the_checks_share_counts_across_every_operation_they_call(settings, namespace):
    budget = limiter(
        settings, namespace, global_per_second=100, default_per_second=25, checks_per_second=4
    )

    listed = admitted(budget, "transfers.list", 3, share=Share.CHECKS)
    read = admitted(budget, "transfers.retrieve", 3, share=Share.CHECKS)

    assert (listed, read) == (3, 1)
    # Paying sellers is untouched by the checks' exhaustion.
    assert admitted(budget, "transfers.create", 25) == 25


def test_a_full_window_says_how_long_until_it_has_room(settings, namespace):
    budget = limiter(
        settings, namespace, global_per_second=100, default_per_second=2, checks_per_second=2
    )
    admitted(budget, "transfers.create", 2)

    wait = budget.try_acquire("transfers.create")

    assert 0 < wait <= WINDOW_MS / 1000


def test_threads_with_their_own_connections_share_one_budget(settings, namespace):
    budgets = dict(global_per_second=100, default_per_second=20, checks_per_second=5)
    counts = []
    start = threading.Barrier(4)

    def hammer():
        own = limiter(settings, namespace, **budgets)  # a Redis connection of its own
        start.wait()
        counts.append(admitted(own, "reversals.create", 15))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(counts) == 20


HAMMER = """
import sys, time
from payouts.conf import RateBudgets
from payouts.stripe_api.rate_limit import StripeRateLimiter
url, namespace, tries = sys.argv[1], sys.argv[2], int(sys.argv[3])
budget = StripeRateLimiter(url, RateBudgets(100, 10, 5), namespace=namespace)
time.sleep(float(sys.argv[4]) - time.time())  # both processes start together
print(sum(budget.try_acquire("transfers.create") == 0 for _ in range(tries)))
"""


@pytest.mark.slow  # starts two Python processes
def test_two_processes_share_one_budget(settings, namespace):
    at = str(time.time() + 2)
    args = [settings.STRIPE_RATE_LIMIT_REDIS_URL, namespace, "12", at]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE
        )
        for _ in range(2)
    ]
    counts = [int(p.communicate(timeout=30)[0]) for p in processes]

    assert sum(counts) == 10


@pytest.mark.slow  # seconds of paced acquisitions
def test_waiting_threads_are_paced_to_the_operation_budget(settings, namespace):
    budgets = dict(global_per_second=100, default_per_second=10, checks_per_second=5)
    done = []

    def worker():
        own = limiter(settings, namespace, **budgets)
        for _ in range(10):
            own.acquire("transfers.create")
        done.append(time.monotonic())

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # 30 requests at 10 per (1.05 s) window: the first 10 at once, then two more windows.
    assert max(done) - started >= 2 * WINDOW_MS / 1000


def test_a_429_pauses_every_process_sharing_the_limiter(settings, namespace):
    budgets = dict(global_per_second=1000, default_per_second=1000, checks_per_second=1000)
    first = limiter(settings, namespace, **budgets)
    second = limiter(settings, namespace, **budgets)
    first.slow_down(0.5)
    started = time.monotonic()

    second.acquire("transfers.create")

    assert time.monotonic() - started >= 0.4
