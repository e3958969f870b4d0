"""A bounded set of threads with Stripe calls in flight, for one worker run.

Each thread runs the same loop (claim a row, call Stripe, settle it) until nothing is due or the
run's time is up, so a slow row never holds the others back, a row's lease starts when its own
call is about to start, and each thread keeps one database connection for the whole run (closed
when it ends). An unexpected error costs only its row: the row stays leased and a later tick
retries it with the same idempotency key.
"""

import logging
import threading
from collections import Counter
from collections.abc import Callable

from django.db import connection

logger = logging.getLogger(__name__)


def run_loops(step: Callable[[], str | None], *, threads: int) -> Counter:
    """Call ``step`` repeatedly in ``threads`` threads until it returns ``None`` (nothing left)
    in each of them; count the outcomes it returns. With one thread the loop runs in the calling
    thread, on its connection."""
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def loop() -> None:
        while True:
            try:
                outcome = step()
            except Exception:
                logger.exception("worker row failed unexpectedly; it stays leased")
                outcome = "error"
            if outcome is None:
                return
            with lock:
                outcomes[outcome] += 1

    if threads <= 1:
        loop()
        return outcomes

    def loop_then_close() -> None:
        try:
            loop()
        finally:
            connection.close()

    pool = [threading.Thread(target=loop_then_close, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return outcomes
