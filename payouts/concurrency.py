"""A bounded set of threads with Stripe calls in flight, for one worker run (SPEC §10).

Each thread takes rows from a shared queue, runs one row at a time and closes its own database
connection when the queue is empty. An unexpected error costs only its row: the row stays leased
and the next tick after the lease retries it with the same idempotency key.
"""

import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from django.db import connection

logger = logging.getLogger(__name__)

Row = TypeVar("Row")


def run_in_threads(rows: list[Row], work: Callable[[Row], str], *, threads: int) -> Counter:
    """Run ``work`` on every row with at most ``threads`` in parallel; count the outcomes.

    With one thread (or one row) the rows run in the calling thread, on its connection.
    """
    outcomes: Counter[str] = Counter()
    if threads <= 1 or len(rows) <= 1:
        for row in rows:
            outcomes[work(row)] += 1
        return outcomes
    pending: queue.SimpleQueue = queue.SimpleQueue()
    for row in rows:
        pending.put(row)
    lock = threading.Lock()

    def drain() -> None:
        try:
            while True:
                try:
                    row = pending.get_nowait()
                except queue.Empty:
                    return
                try:
                    outcome = work(row)
                except Exception:
                    logger.exception("worker row failed unexpectedly; it stays leased")
                    outcome = "error"
                with lock:
                    outcomes[outcome] += 1
        finally:
            connection.close()

    pool = [threading.Thread(target=drain, daemon=True) for _ in range(min(threads, len(rows)))]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return outcomes
