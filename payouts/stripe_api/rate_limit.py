"""Stripe's request budgets, shared by every worker process through Redis.

Stripe limits requests in two ways at once: a budget for the whole account (live: 100 a second)
and one per named operation (live: 25 a second on ``POST /v1/transfers``, on
``POST /v1/transfers/{id}/reversals``, on ``GET /v1/transfers/{id}``…); a sandbox allows 25 a
second in all. Each request must fit both, so the limiter keeps one window per budget in Redis
and admits a request only when every window it counts against has room, taking a place in all
of them in one atomic script (a request admitted by the global window but refused by its
operation's must not spend global budget).

The checks (reconciliation, ``ledger_check``) count against a third window of their own, smaller
than what paying or reversing each may use, so a long check never starves the workers draining a
backlog: together they stay within the global budget.

Each window is a log of the last second's admissions (a sorted set scored by Redis's own clock,
so processes on hosts whose clocks differ agree). At most N admissions in any window keeps a
Stripe token bucket of N a second from ever running dry; the window is a little longer than a
second so that requests admitted a second apart and delayed differently on the way still arrive
at most N in a second.

A 429 anyway (another client on the same account, a burst limit) pauses the whole fleet briefly
through a shared cool-down key: one row's 429 slows everyone.
"""

import logging
import random
import time
from enum import StrEnum

import redis

from payouts.conf import RateBudgets

logger = logging.getLogger(__name__)

# A second, plus what network jitter between our count and Stripe's might add.
WINDOW_MS = 1050
# Waiting for a place: wake at the moment the oldest admission leaves the window, plus a little
# jitter so that waiting threads do not all ask Redis at the same instant; never sleep longer
# than this between looks (another process may have been refused and freed nothing, but a
# shorter budget set by a new deployment must be seen soon).
LONGEST_NAP = 0.05

# KEYS: the windows; ARGV[1]: the window in microseconds; ARGV[2..]: each window's limit.
# Returns 0 when admitted (a place taken in every window), else microseconds until the window
# that is full has room.
_ADMIT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local window = tonumber(ARGV[1])
local wait = 0
for i, key in ipairs(KEYS) do
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    local limit = tonumber(ARGV[i + 1])
    local count = redis.call('ZCARD', key)
    if count >= limit then
        local leaving = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
        local until_free = tonumber(leaving[2]) + window - now
        if until_free > wait then
            wait = until_free
        end
    end
end
if wait > 0 then
    return wait
end
local member = now .. ':' .. redis.call('INCR', KEYS[1] .. ':seq')
for _, key in ipairs(KEYS) do
    redis.call('ZADD', key, now, member)
    redis.call('PEXPIRE', key, math.ceil(window / 1000) + 1000)
end
redis.call('PEXPIRE', KEYS[1] .. ':seq', math.ceil(window / 1000) + 1000)
return 0
"""


class Share(StrEnum):
    """Whose budget a request counts against besides the global and its operation's."""

    WORK = "work"  # paying sellers, reversing, refunds, reads the workers need on the way
    CHECKS = "checks"  # reconciliation and ledger_check: a smaller share of their own


class StripeRateLimiter:
    def __init__(self, redis_url: str, budgets: RateBudgets, *, namespace: str = "payouts:stripe"):
        self._redis = redis.Redis.from_url(redis_url)
        self._admit = self._redis.register_script(_ADMIT)
        self._budgets = budgets
        self._namespace = namespace
        self._cooldown_key = f"{namespace}:cooldown"

    @property
    def budgets(self) -> RateBudgets:
        return self._budgets

    def _windows(self, operation: str, share: Share) -> tuple[list[str], list[int]]:
        keys = [f"{self._namespace}:global", f"{self._namespace}:op:{operation}"]
        limits = [self._budgets.global_per_second, self._budgets.for_operation(operation)]
        if share is Share.CHECKS:
            keys.append(f"{self._namespace}:checks")
            limits.append(self._budgets.checks_per_second)
        return keys, limits

    def try_acquire(self, operation: str, *, share: Share = Share.WORK) -> float:
        """Take a place for one ``operation`` request now, if every window has room.

        Returns 0.0 when taken, else the seconds until the full window has room (nothing
        taken)."""
        keys, limits = self._windows(operation, share)
        wait_us = self._admit(keys=keys, args=[WINDOW_MS * 1000, *limits])
        return int(wait_us) / 1_000_000

    def acquire(self, operation: str, *, share: Share = Share.WORK, timeout: float = 60.0) -> None:
        """Wait for this process's turn to send one ``operation`` request.

        Blocks until every window has room (or ``timeout`` passes, then sends anyway: a late
        request is better than a worker stuck forever on Redis)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            cooldown_ms = self._redis.pttl(self._cooldown_key)
            if cooldown_ms > 0:
                time.sleep(min(cooldown_ms / 1000, max(deadline - time.monotonic(), 0)))
                continue
            wait = self.try_acquire(operation, share=share)
            if wait == 0:
                return
            time.sleep(min(wait + random.uniform(0, 0.002), LONGEST_NAP))
        logger.warning(
            "rate limiter wait timed out; sending anyway",
            extra={"stripe_operation": operation, "share": share.value},
        )

    def slow_down(self, seconds: float = 0.25) -> None:
        """Pause every process's calls to Stripe after a 429.

        Stripe answered 429: every process pauses for ``seconds``. A pause under way is not
        extended by the 429s it already caused, so a burst of them costs one pause, not many."""
        self._redis.set(self._cooldown_key, 1, px=max(int(seconds * 1000), 1), nx=True)
