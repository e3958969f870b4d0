"""The actor of a transfer move, recorded on its audit event.

Who or what made a move: a worker, a Stripe event, a staff member. Interfaces build one and
pass it down; the move records it on the audit event."""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Actor:
    """Who or what made a move; recorded on its audit event."""

    caused_by: str
    user: Any = None

    @classmethod
    def worker(cls, task: str) -> "Actor":
        return cls(f"worker:{task}")

    @classmethod
    def webhook(cls, stripe_event_id: str) -> "Actor":
        return cls(f"webhook:{stripe_event_id}")

    @classmethod
    def staff(cls, user: Any) -> "Actor":
        return cls(f"staff:{user.get_username()}", user)
