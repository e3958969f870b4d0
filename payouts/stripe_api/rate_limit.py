"""One Stripe request budget for every worker process, kept in Redis.

A moving one-second window (the ``limits`` library's Redis storage) caps the requests all
processes send together, so the fleet stays under Stripe's token bucket instead of each process
discovering it through 429s. A 429 anyway (another client on the same account, a burst limit)
pauses the whole fleet briefly through a shared cool-down key: one row's 429 slows everyone.
"""

import logging
import time

import redis
from limits import RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

logger = logging.getLogger(__name__)


class StripeRateLimiter:
    def __init__(self, redis_url: str, per_second: int, *, namespace: str = "payouts:stripe"):
        self._limiter = MovingWindowRateLimiter(storage_from_string(redis_url))
        self._item = RateLimitItemPerSecond(per_second)
        self._redis = redis.Redis.from_url(redis_url)
        self._namespace = namespace
        self._cooldown_key = f"{namespace}:cooldown"

    def acquire(self, *, timeout: float = 60.0) -> None:
        """Wait for this process's turn to call Stripe.

        Block until this process may send one request (or ``timeout`` passes, then send
        anyway: a late request is better than a worker stuck forever on Redis)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            cooldown_ms = self._redis.pttl(self._cooldown_key)
            if cooldown_ms > 0:
                time.sleep(min(cooldown_ms / 1000, max(deadline - time.monotonic(), 0)))
                continue
            if self._limiter.hit(self._item, self._namespace):
                return
            reset_at = self._limiter.get_window_stats(self._item, self._namespace).reset_time
            time.sleep(min(max(reset_at - time.time(), 0.002), 0.05))
        logger.warning("rate limiter wait timed out; sending anyway")

    def slow_down(self, seconds: float = 0.25) -> None:
        """Pause every process's calls to Stripe after a 429.

        Stripe answered 429: every process pauses for ``seconds``. A pause under way is not
        extended by the 429s it already caused, so a burst of them costs one pause, not many."""
        self._redis.set(self._cooldown_key, 1, px=max(int(seconds * 1000), 1), nx=True)
