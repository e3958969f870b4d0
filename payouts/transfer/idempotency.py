"""Deterministic Stripe idempotency keys, stored on the seller transfer row.

A key is built from the row's id and creation time (so a rebuilt database never collides with
keys Stripe still remembers) plus a generation number. Stripe replays the first response for a
key for 24 hours, errors included, and stores nothing for 429s or requests it never saw. Hence
(``next_attempt``):

* an outcome we did not see (timeout, dropped connection, 409 in flight) keeps the key, so the
  next attempt replays whatever really happened;
* a 429 keeps the key too (nothing was stored);
* any other definite response (4xx, 5xx) takes the next generation, because Stripe would replay
  that error forever. After a 5xx the next attempt first reads Stripe's state
  (``read_stripe_first``) before it sends with the new key.

``docs/idempotency.md`` tells the whole story.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from payouts.stripe_api.gateway import GatewayError, StripeTransfer

# Stripe keeps a key for 24 hours; an hour of margin for clocks and slow calls.
KEY_MEMORY = timedelta(hours=23)

_GENERATION = re.compile(r"^(?P<stem>.+)-g(?P<generation>\d+)$")


def _key(kind: str, transfer, generation: int) -> str:
    created = int(transfer.created_at.timestamp() * 1_000_000)
    return f"payouts-{kind}-{transfer.pk}-{created}-g{generation}"


def transfer_key(transfer) -> str:
    """The key of the transfer's creation, or the first one if none is stored yet."""
    return transfer.transfer_idempotency_key or _key("transfer", transfer, 0)


def reversal_key(transfer) -> str:
    """The idempotency key of a transfer's next reversal.

    Each reversal of a transfer gets its own key: partial reversals are told apart by how much
    was already reversed when they were sent."""
    if transfer.reversal_idempotency_key:
        return transfer.reversal_idempotency_key
    return _key(f"reversal-r{transfer.amount_reversed}", transfer, 0)


def is_reversal_key(key: str) -> bool:
    """True when ``key`` is the key of a reversal (not of a transfer giving money back)."""
    return key.startswith("payouts-reversal-")


def return_key(transfer) -> str:
    """The idempotency key of a step giving money back in a new transfer.

    The key of a step giving money back to the seller in a new transfer, told apart from the
    earlier ones by how much was given back already."""
    if transfer.reversal_idempotency_key:
        return transfer.reversal_idempotency_key
    return _key(f"return-r{transfer.amount_returned}", transfer, 0)


@dataclass(frozen=True, slots=True)
class NextAttempt:
    """How the attempt after a failure must call Stripe.

    What the attempt after a failure must do: which key to send with, and whether to read
    Stripe's state before sending anything."""

    key: str
    read_stripe_first: bool
    # True when ``key`` is a new generation (its first use is still to come).
    renewed: bool = False


def next_attempt(key: str, error: GatewayError | None, *, read_stripe_first: bool) -> NextAttempt:
    """Decide how the next attempt calls Stripe after a failure.

    The next attempt after ``error`` (``None``: Stripe was not called). Once set, the
    read-first flag stays until an attempt succeeds."""
    if error is None or not error.response_seen or error.rate_limited:
        return NextAttempt(key, read_stripe_first)
    following = renewed_key(key)
    return NextAttempt(following, read_stripe_first or error.may_have_executed, renewed=True)


def renewed_key(key: str) -> str:
    """The key's next generation (``…-g1`` after ``…-g0``): a key Stripe has never seen."""
    match = _GENERATION.match(key)
    if match is None:
        raise ValueError(f"not one of our idempotency keys: {key!r}")
    return f"{match['stem']}-g{int(match['generation']) + 1}"


def key_may_be_forgotten(transfer, *, now: datetime) -> bool:
    """Whether Stripe may have forgotten the row's idempotency key.

    True when the row's kept key may be older than Stripe's memory of it: sending it again
    could execute a second time, so Stripe's state must be read first."""
    first_sent = transfer.key_first_sent_at
    return first_sent is not None and now - first_sent > KEY_MEMORY


def transfer_made_by(
    candidates: Iterable[StripeTransfer], *, id_field: str, row_id: int, amount: int, currency: str
) -> StripeTransfer | None:
    """The transfer an earlier attempt of a row made, among ``candidates``, if any.

    Ours by its metadata (``id_field`` names the row) and the row's amount and currency:
    anything else is someone else's, and adopting it would record money that never moved."""
    for candidate in candidates:
        if (
            candidate.metadata.get(id_field) == str(row_id)
            and candidate.amount == amount
            and candidate.currency.lower() == currency
        ):
            return candidate
    return None
