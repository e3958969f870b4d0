"""Simulated time for the simulator: the services read the time through Django's
``timezone.now``, so moving that one function moves every backoff, lease, hold and key age the
services compute. The database's own clock (the book's posting time) and Stripe's stay real:
nothing the services decide reads them."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.utils import timezone


class SimulatedClock:
    def __init__(self, start: datetime):
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, by: timedelta) -> None:
        self._now += by


@contextmanager
def simulated_time() -> Iterator[SimulatedClock]:
    """``timezone.now`` answers the clock's time until the block ends."""
    clock = SimulatedClock(timezone.now())
    real = timezone.now
    timezone.now = clock.now
    try:
        yield clock
    finally:
        timezone.now = real
