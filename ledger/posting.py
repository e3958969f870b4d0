"""Posting one balanced entry, once. The only code that writes to the book.

``entry_post`` runs inside the caller's transaction (the one that moved the money, or decided
to), so a movement and its entry commit together or not at all. Posting the same (kind, external
id) again posts nothing: replayed events and retried workers cannot count twice.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Q

from config.errors import DomainError
from ledger.models import Account, AccountKind, Line


class UnbalancedEntry(DomainError):
    """Raised when a posting rule builds lines that do not balance.

    An entry whose lines do not sum to zero: a bug in the posting rules, refused before the
    database would refuse it at commit."""

    code = "unbalanced_entry"
    http_status = 500


@dataclass(frozen=True, slots=True)
class Leg:
    """One line of an entry, before it is posted.

    One line to post: an account (by kind, and seller for the seller accounts) and a signed
    amount (debit positive)."""

    kind: AccountKind
    amount: int
    seller_id: int | None = None


def account_ids(keys: Iterable[tuple[str, int | None]]) -> dict[tuple[str, int | None], int]:
    """The ids of the accounts named by (kind, seller id), created on first use."""
    wanted = set(keys)
    found = _existing_accounts(wanted)
    missing = wanted - set(found)
    if missing:
        Account.objects.bulk_create(
            [Account(kind=kind, seller_id=seller_id) for kind, seller_id in missing],
            ignore_conflicts=True,
        )
        found.update(_existing_accounts(missing))
    return found


def _existing_accounts(keys: set[tuple[str, int | None]]) -> dict[tuple[str, int | None], int]:
    named = Q()
    for kind, seller_id in keys:
        named |= Q(kind=kind, seller_id=seller_id) if seller_id else Q(kind=kind, seller=None)
    rows = Account.objects.filter(named).values_list("kind", "seller_id", "pk")
    return {(kind, seller_id): pk for kind, seller_id, pk in rows}


_INSERT_ENTRY = """
    INSERT INTO ledger_entry
        (kind, external_id, posted_at, order_id, seller_id, transfer_id, stripe_id, memo,
         posted_by_id)
    VALUES (%s, %s, now(), %s, %s, %s, %s, %s, %s)
    ON CONFLICT (kind, external_id) DO NOTHING
    RETURNING id
"""


def entry_post(
    *,
    kind: str,
    external_id: str,
    currency: str,
    legs: Iterable[Leg],
    order_id: int | None = None,
    seller_id: int | None = None,
    transfer_id: int | None = None,
    stripe_id: str = "",
    memo: str = "",
    user=None,
) -> int | None:
    """Post one balanced entry to the book, once.

    Post one entry in ``currency``; returns its id, or ``None`` when there is nothing to post
    (every leg zero) or it was posted before. Raises ``UnbalancedEntry`` when the legs do not
    sum to zero."""
    legs = [leg for leg in legs if leg.amount]
    if not legs:
        return None
    if sum(leg.amount for leg in legs) != 0:
        raise UnbalancedEntry(
            f"{kind} {external_id}: legs sum to {sum(leg.amount for leg in legs)}"
        )
    ids = account_ids((leg.kind, leg.seller_id) for leg in legs)
    # Entry and lines commit together (no savepoint: callers are in their own transaction).
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute(
            _INSERT_ENTRY,
            [kind, external_id, order_id, seller_id, transfer_id, stripe_id, memo,
             getattr(user, "pk", None)],
        )  # fmt: skip
        inserted = cursor.fetchone()
        if inserted is None:
            return None
        Line.objects.bulk_create(
            Line(
                entry_id=inserted[0],
                account_id=ids[(leg.kind, leg.seller_id)],
                currency=currency,
                amount=leg.amount,
            )
            for leg in legs
        )
    return inserted[0]
