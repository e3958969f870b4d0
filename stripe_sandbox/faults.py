"""Fault injection: scripted responses, seeded random faults and Stripe's rate limits (a global
token bucket, and one per named operation).

Like ``Store``, a ``FaultPlan`` relies on the Sandbox lock; it never sleeps, it
only decides. The Sandbox carries out the decision (sleeping, holding or
dropping a connection) after releasing the lock.
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .errors import api_error_500, rate_limited
from .state import OPERATIONS

RATE_KNOBS = ("error_500_rate", "error_429_rate", "timeout_rate", "drop_after_perform_rate")
KNOBS = ("latency_ms", "timeout_seconds", *RATE_KNOBS)
ACTIONS = ("timeout", "drop_after_perform", "error_500", "rate_limit")
DEFAULT_TIMEOUT_SECONDS = 30.0


class FaultConfigError(ValueError):
    """Invalid fault configuration sent to the control API."""


@dataclass(frozen=True)
class Fault:
    """What should happen to one request.

    ``kind`` is ``none`` (perform normally), ``respond`` (answer with ``status``
    and ``body`` without performing), ``timeout`` (hold, then close without a
    response) or ``drop_after_perform`` (perform, then close without a response).
    """

    kind: str
    status: int | None = None
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    outcome: str = "performed"
    hold_seconds: float = DEFAULT_TIMEOUT_SECONDS

    @property
    def stored(self) -> bool:
        """Whether Stripe would keep this result under the idempotency key."""
        if self.kind == "respond":
            return self.status is not None and self.status >= 500
        return self.kind in ("none", "drop_after_perform")


NO_FAULT = Fault("none")


def _error_fault(error, outcome: str) -> Fault:
    return Fault("respond", status=error.status, body=error.to_body(), outcome=outcome)


class TokenBucket:
    def __init__(self, per_second: float, burst: float, clock=time.monotonic) -> None:
        self.per_second = per_second
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.per_second)
        self._last = now

    def has_token(self) -> bool:
        self._refill()
        return self._tokens >= 1

    def take(self) -> bool:
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class FaultPlan:
    def __init__(self, seed: int | None = 0) -> None:
        self.reset(seed)

    def reset(self, seed: int | None) -> None:
        self.seed = seed
        self._rng = random.Random(seed)
        self._knobs: dict[str, dict[str, float]] = {}
        self._scripts: dict[str, deque[Fault]] = {}
        self._script_sources: dict[str, deque[dict[str, Any]]] = {}
        self._bucket: TokenBucket | None = None
        # Stripe's per-operation limit: each named operation has a bucket of its own, at
        # ``operations[name]`` a second if given, else ``per_operation`` (None: no such limit).
        self._per_operation: float | None = None
        self._operation_rates: dict[str, float] = {}
        self._operation_buckets: dict[str, TokenBucket] = {}

    def reseed(self, seed: int | None) -> None:
        self.seed = seed
        self._rng = random.Random(seed)

    # -- configuration --------------------------------------------------------

    @staticmethod
    def _check_operation(operation: Any) -> str:
        if operation != "*" and operation not in OPERATIONS:
            known = ", ".join(sorted(OPERATIONS))
            raise FaultConfigError(f"unknown operation {operation!r}; use '*' or one of {known}")
        return operation

    def set_knobs(self, operation: str, knobs: dict[str, Any]) -> dict[str, float]:
        self._check_operation(operation)
        cleaned: dict[str, float] = {}
        for name, value in knobs.items():
            if name not in KNOBS:
                raise FaultConfigError(f"unknown knob {name!r}; known: {', '.join(KNOBS)}")
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise FaultConfigError(f"{name} must be a number")
            if name in RATE_KNOBS and not 0 <= value <= 1:
                raise FaultConfigError(f"{name} must be between 0 and 1")
            if value < 0:
                raise FaultConfigError(f"{name} must not be negative")
            cleaned[name] = float(value)
        if sum(cleaned.get(name, 0.0) for name in RATE_KNOBS) > 1:
            raise FaultConfigError("the *_rate knobs of one operation must add up to at most 1")
        if cleaned:
            self._knobs[operation] = cleaned
        else:
            self._knobs.pop(operation, None)
        return cleaned

    def add_script(self, operation: str, responses: Any, *, replace: bool = False) -> int:
        self._check_operation(operation)
        if not isinstance(responses, list):
            raise FaultConfigError("responses must be a list")
        parsed = [self._parse_entry(entry) for entry in responses]
        if replace or not responses:
            self._scripts.pop(operation, None)
            self._script_sources.pop(operation, None)
        if parsed:
            self._scripts.setdefault(operation, deque()).extend(parsed)
            self._script_sources.setdefault(operation, deque()).extend(responses)
        return len(self._scripts.get(operation, ()))

    @staticmethod
    def _parse_entry(entry: Any) -> Fault:
        if not isinstance(entry, dict):
            raise FaultConfigError(f"script entries must be objects, got {entry!r}")
        headers = entry.get("headers") or {}
        if not isinstance(headers, dict):
            raise FaultConfigError("headers must be an object")
        headers = {str(k): str(v) for k, v in headers.items()}
        if "action" in entry:
            action = entry["action"]
            if action == "timeout":
                seconds = entry.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
                return Fault("timeout", outcome="timeout", hold_seconds=float(seconds))
            if action == "drop_after_perform":
                return Fault("drop_after_perform", outcome="dropped_after_perform")
            if action == "error_500":
                return _error_fault(api_error_500(), "injected_500")
            if action == "rate_limit":
                return _error_fault(rate_limited(), "rate_limited")
            raise FaultConfigError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
        status = entry.get("status")
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise FaultConfigError("scripted responses need an integer 'status' (100-599)")
        if isinstance(entry.get("error"), dict):
            body = {"error": entry["error"]}
        elif isinstance(entry.get("body"), dict):
            body = entry["body"]
        else:
            raise FaultConfigError("scripted responses need an 'error' (or 'body') object")
        return Fault("respond", status=status, body=body, headers=headers, outcome="injected")

    def set_rate_limit(
        self,
        per_second: Any,
        burst: Any = None,
        *,
        per_operation: Any = None,
        operations: Any = None,
    ) -> None:
        """The global bucket (``per_second``, ``burst``; None: none) and the per-operation ones
        (``per_operation`` for every operation, ``operations`` naming some; each bucket holds a
        second of its rate). Stripe live: 100 and 25; a sandbox: 25 in all."""
        operations = operations or {}
        if not isinstance(operations, dict):
            raise FaultConfigError("operations must be an object of operation -> per second")
        named = [(f"operations[{op}]", rate) for op, rate in operations.items()]
        checked = [("per_second", per_second), ("burst", burst), ("per_operation", per_operation)]
        for name, value in checked + named:
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
            ):
                raise FaultConfigError(f"{name} must be a positive number")
        for operation in operations:
            if operation not in OPERATIONS:
                raise FaultConfigError(f"unknown operation {operation!r} in operations")
        if per_second is None:
            self._bucket = None
        else:
            capacity = float(burst) if burst is not None else max(1.0, float(per_second))
            self._bucket = TokenBucket(float(per_second), capacity)
        self._per_operation = None if per_operation is None else float(per_operation)
        self._operation_rates = {op: float(rate) for op, rate in operations.items()}
        self._operation_buckets = {}

    # -- decisions ------------------------------------------------------------

    def _operation_bucket(self, operation: str) -> TokenBucket | None:
        rate = self._operation_rates.get(operation, self._per_operation)
        if rate is None:
            return None
        bucket = self._operation_buckets.get(operation)
        if bucket is None:
            bucket = self._operation_buckets[operation] = TokenBucket(rate, max(1.0, rate))
        return bucket

    def admit(self, operation: str) -> str | None:
        """Take a token from the global bucket and from the operation's; ``None`` when admitted,
        else which limit refused (``global-rate``, ``endpoint-rate``): answer 429. A request
        refused by one bucket takes nothing from the other."""
        own = self._operation_bucket(operation)
        if own is not None and not own.has_token():
            return "endpoint-rate"
        if self._bucket is not None and not self._bucket.take():
            return "global-rate"
        if own is not None:
            own.take()
        return None

    def _effective(self, operation: str) -> dict[str, float]:
        return {**self._knobs.get("*", {}), **self._knobs.get(operation, {})}

    def latency_seconds(self, operation: str) -> float:
        return self._effective(operation).get("latency_ms", 0.0) / 1000.0

    def draw(self, operation: str) -> Fault:
        for name in (operation, "*"):
            queue = self._scripts.get(name)
            if queue:
                self._script_sources[name].popleft()
                return queue.popleft()
        knobs = self._effective(operation)
        # One draw per request, partitioned by the rates, so a given seed and
        # request sequence always produce the same faults.
        roll = self._rng.random()
        threshold = 0.0
        for name in RATE_KNOBS:
            threshold += knobs.get(name, 0.0)
            if roll < threshold:
                return self._random_fault(name, knobs)
        return NO_FAULT

    @staticmethod
    def _random_fault(name: str, knobs: dict[str, float]) -> Fault:
        if name == "error_500_rate":
            return _error_fault(api_error_500(), "injected_500")
        if name == "error_429_rate":
            return _error_fault(rate_limited(), "rate_limited")
        if name == "timeout_rate":
            seconds = knobs.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
            return Fault("timeout", outcome="timeout", hold_seconds=seconds)
        return Fault("drop_after_perform", outcome="dropped_after_perform")

    def describe(self) -> dict[str, Any]:
        bucket = self._bucket
        return {
            "seed": self.seed,
            "knobs": {op: dict(knobs) for op, knobs in self._knobs.items()},
            "scripts": {op: list(q) for op, q in self._script_sources.items() if q},
            "rate_limit": (
                {"per_second": bucket.per_second, "burst": bucket.burst} if bucket else None
            ),
            "per_operation": self._per_operation,
            "operations": dict(self._operation_rates),
        }
