"""Deterministic Stripe idempotency keys (SPEC §5), stored on the seller transfer row.

A key is built from the row's id and creation time (so a rebuilt database never collides with
keys Stripe still remembers) plus a generation number. Stripe replays the first response for a
key for 24 hours, errors included, and stores nothing for 429s or requests it never saw. Hence:

* an outcome we did not see (timeout, dropped connection, 409 in flight) keeps the key, so the
  next attempt replays whatever really happened;
* a 429 keeps the key too (nothing was stored);
* any other definite response (4xx, 5xx) takes the next generation, because Stripe would replay
  that error forever. After a 5xx the caller must first read Stripe's state
  (``StripeTransientError.may_have_executed``) before it sends with the new key.
"""

import re

from payouts.gateway import StripeTransientError

_GENERATION = re.compile(r"^(?P<stem>.+)-g(?P<generation>\d+)$")


def _key(kind: str, transfer, generation: int) -> str:
    created = int(transfer.created_at.timestamp() * 1_000_000)
    return f"payouts-{kind}-{transfer.pk}-{created}-g{generation}"


def transfer_key(transfer) -> str:
    """The key of the transfer's creation, or the first one if none is stored yet."""
    return transfer.transfer_idempotency_key or _key("transfer", transfer, 0)


def reversal_key(transfer) -> str:
    """Each reversal of a transfer gets its own key: partial reversals are told apart by how much
    was already reversed when they were sent."""
    if transfer.reversal_idempotency_key:
        return transfer.reversal_idempotency_key
    return _key(f"reversal-r{transfer.amount_reversed}", transfer, 0)


def key_after_failure(key: str, error: StripeTransientError) -> str:
    """The key the next attempt must use after ``error``."""
    if not error.response_seen or error.rate_limited:
        return key
    match = _GENERATION.match(key)
    if match is None:
        raise ValueError(f"not one of our idempotency keys: {key!r}")
    return f"{match['stem']}-g{int(match['generation']) + 1}"
