"""A bounded set of threads with Stripe calls in flight, for one worker run.

Each thread runs the same loop (claim a row, call Stripe, settle it) until nothing is due or the
run's time is up, so a slow row never holds the others back, a row's lease starts when its own
call is about to start, and each thread keeps one database connection for the whole run (closed
when it ends). An unexpected error costs only its row: the row stays leased and a later tick
retries it with the same idempotency key.
"""

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from django.db import connection

logger = logging.getLogger(__name__)

# After an unexpected error a loop waits before its next step, doubling up to the maximum, so
# that a database or network that is down is not hammered (hundreds of attempts a second).
ERROR_PAUSE_FIRST = 0.1
ERROR_PAUSE_MAX = 5.0


def run_loops(step: Callable[[], str | None], *, threads: int) -> Counter:
    """Run ``step`` in a loop in several threads until no work is left.

    Call ``step`` repeatedly in ``threads`` threads until it returns ``None`` (nothing left)
    in each of them; count the outcomes it returns. With one thread the loop runs in the calling
    thread, on its connection."""
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def loop() -> None:
        errors_in_a_row = 0
        while True:
            try:
                outcome = step()
            except Exception as error:
                errors_in_a_row += 1
                _pause_after_error(error, errors_in_a_row)
                outcome = "error"
            else:
                errors_in_a_row = 0
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


def _pause_after_error(error: Exception, errors_in_a_row: int) -> None:
    pause = min(ERROR_PAUSE_FIRST * 2 ** (errors_in_a_row - 1), ERROR_PAUSE_MAX)
    if errors_in_a_row == 1:
        logger.exception("worker step failed unexpectedly; its row stays leased")
    else:
        logger.warning(
            "worker step failed again; pausing",
            extra={"error": repr(error), "errors_in_a_row": errors_in_a_row, "pause_s": pause},
        )
    # A broken connection is replaced on the next step instead of failing every step after.
    if not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()
    time.sleep(pause)
