"""URL routing for the Stripe API subset: (method, path) -> operation name and path ids."""

from __future__ import annotations

import re

_ID = r"([A-Za-z0-9_]+)"

ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(f"^{pattern.replace('{id}', _ID)}$"), operation)
    for method, pattern, operation in [
        ("POST", "/v1/accounts", "accounts.create"),
        ("GET", "/v1/accounts/{id}", "accounts.retrieve"),
        ("POST", "/v1/payment_intents", "payment_intents.create"),
        ("GET", "/v1/payment_intents/{id}", "payment_intents.retrieve"),
        ("POST", "/v1/payment_intents/{id}/confirm", "payment_intents.confirm"),
        ("GET", "/v1/charges/{id}", "charges.retrieve"),
        ("POST", "/v1/refunds", "refunds.create"),
        ("GET", "/v1/refunds", "refunds.list"),
        ("GET", "/v1/refunds/{id}", "refunds.retrieve"),
        ("POST", "/v1/transfers", "transfers.create"),
        ("GET", "/v1/transfers", "transfers.list"),
        ("GET", "/v1/transfers/{id}", "transfers.retrieve"),
        ("POST", "/v1/transfers/{id}/reversals", "reversals.create"),
        ("GET", "/v1/transfers/{id}/reversals", "reversals.list"),
        ("GET", "/v1/transfers/{id}/reversals/{id}", "reversals.retrieve"),
        ("GET", "/v1/events", "events.list"),
        ("GET", "/v1/events/{id}", "events.retrieve"),
        ("GET", "/v1/balance", "balance.retrieve"),
        ("GET", "/v1/balance_transactions", "balance_transactions.list"),
        ("GET", "/v1/balance_transactions/{id}", "balance_transactions.retrieve"),
        ("GET", "/v1/disputes", "disputes.list"),
        ("GET", "/v1/disputes/{id}", "disputes.retrieve"),
    ]
]

# Operations that change state: the ones a state file is saved after.
MUTATING = frozenset(operation for method, _, operation in ROUTES if method == "POST")


def match(method: str, path: str) -> tuple[str, tuple[str, ...]] | None:
    for route_method, pattern, operation in ROUTES:
        if route_method != method:
            continue
        found = pattern.match(path)
        if found:
            return operation, found.groups()
    return None
