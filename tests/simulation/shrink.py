"""Shrinking a failing history to a shortest form that still fails the same way: remove
chunks of steps (halves, then quarters, ... then single steps) while it keeps failing."""

from collections.abc import Callable

from tests.simulation.history import History

# Kinds of failure, the most telling first: a history is shrunk keeping the first its
# failures show.
KINDS = {
    "crashed": "the service crashed",
    "the book": "the book does not balance",
    "ledger_check": "ledger_check found a break",
    "gave up": "a transfer gave up after its retries (shown in its row)",
    "seller holds too much": "a seller holds more than they are owed",
    "transfer ": "a row unfinished without a reason in needs attention",
    "release ": "a reserve release left pending or given up",
    "debit pending": "an account debit left pending",
    "reserve left": "a seller's reserve account not empty once every reserve is due",
    "event refused": "an event is refused for good",
    "seller holds too little": "a seller holds less than they are owed",
}


def kinds(failures: list[str]) -> list[str]:
    found = {kind for failure in failures for kind in KINDS if failure.startswith(kind)}
    if any("'retries_exhausted'" in failure for failure in failures):
        found.add("gave up")
    return [kind for kind in KINDS if kind in found]


def shrink(
    history: History, failures_of: Callable[[History], list[str]], *, budget: int = 200
) -> History:
    """The shortest history found (within ``budget`` runs) whose failures still include the
    first kind of failure of ``history``."""
    wanted = kinds(failures_of(history))
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
