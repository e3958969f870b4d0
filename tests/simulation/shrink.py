"""Shrinking a failing history to a shortest form that still fails the same way: remove
chunks of steps (halves, then quarters, ... then single steps) while it keeps failing."""

from collections.abc import Callable

from tests.simulation.history import History

KINDS = {
    "crashed": "the service crashed",
    "seller ": "a seller holds the wrong amount",
    "transfer ": "a row unfinished without a reason in needs attention",
    "ledger_check": "ledger_check found a break",
    "event refused": "an event is refused for good",
    "the book": "the book does not balance",
}


def kinds(failures: list[str]) -> set[str]:
    return {kind for failure in failures for kind in KINDS if failure.startswith(kind)}


def shrink(
    history: History, failures_of: Callable[[History], list[str]], *, budget: int = 200
) -> History:
    """The shortest history found (within ``budget`` runs) whose failures still include the
    first kind of failure of ``history``."""
    wanted = sorted(kinds(failures_of(history)))
    if not wanted:
        return history
    target = wanted[0]
    chunk = max(len(history.steps) // 2, 1)
    runs = 0
    while chunk >= 1 and runs < budget:
        start = 0
        while start < len(history.steps) and runs < budget:
            candidate = history.without(set(range(start, start + chunk)))
            runs += 1
            if candidate.steps and target in kinds(failures_of(candidate)):
                history = candidate
            else:
                start += chunk
        chunk //= 2
    return history
