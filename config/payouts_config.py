"""The payouts knobs (SPEC §8), read from the environment once into a typed, frozen object.

Every bad value stops start-up with ``ImproperlyConfigured`` naming the variable, so a typo in a
deployment never turns into a silently different retry policy.
"""

from dataclasses import dataclass
from datetime import timedelta

import environ
from django.core.exceptions import ImproperlyConfigured

from config.durations import parse_duration


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a worker runs and how it backs off (SPEC §7.2, pinned rule)."""

    enabled: bool
    max_retries: int
    check_interval: timedelta
    backoff_base: timedelta
    backoff_max: timedelta

    def delay_after_failure(self, attempt: int) -> timedelta | None:
        """Delay before retry number ``attempt`` (1 for the first retry); ``None`` when
        ``attempt`` exceeds ``max_retries`` and the row must give up."""
        if attempt > self.max_retries:
            return None
        return min(self.backoff_base * 2 ** (attempt - 1), self.backoff_max)


@dataclass(frozen=True, slots=True)
class PayoutsConfig:
    platform_fee_bps: int
    reversal: RetryPolicy
    transfer_retry: RetryPolicy


def _duration(env: environ.Env, name: str, default: str) -> timedelta:
    raw = env.str(name, default=default)
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None


def _integer(env: environ.Env, name: str, default: int, *, low: int, high: int) -> int:
    raw = env.str(name, default=str(default)).strip()
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: {raw!r} is not an integer") from None
    if not low <= value <= high:
        raise ImproperlyConfigured(f"{name}: {value} is outside {low}..{high}")
    return value


def _boolean(env: environ.Env, name: str, default: bool) -> bool:
    raw = env.str(name, default=str(default)).strip().lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}: {raw!r} is not a boolean (true/false)")


def _retry_policy(env: environ.Env, prefix: str, *, switch: str) -> RetryPolicy:
    policy = RetryPolicy(
        enabled=_boolean(env, switch, True),
        max_retries=_integer(env, f"{prefix}_MAX_RETRIES", 5, low=0, high=100),
        check_interval=_duration(env, f"{prefix}_CHECK_INTERVAL", "1m"),
        backoff_base=_duration(env, f"{prefix}_BACKOFF_BASE", "1m"),
        backoff_max=_duration(env, f"{prefix}_BACKOFF_MAX", "1h"),
    )
    if policy.backoff_max < policy.backoff_base:
        raise ImproperlyConfigured(
            f"{prefix}_BACKOFF_MAX must not be shorter than {prefix}_BACKOFF_BASE"
        )
    return policy


def load_payouts_config(env: environ.Env) -> PayoutsConfig:
    return PayoutsConfig(
        platform_fee_bps=_integer(env, "PLATFORM_FEE_BPS", 1000, low=0, high=10_000),
        reversal=_retry_policy(env, "REVERSAL", switch="REVERSAL_WORKER_ENABLED"),
        transfer_retry=_retry_policy(env, "TRANSFER_RETRY", switch="TRANSFER_RETRY_WORKER_ENABLED"),
    )
