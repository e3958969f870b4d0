"""The counters the payouts code increments where the work happens (the gateway, the services).

They register in prometheus_client's default registry on import; the console's ``/metrics``
(``console.metrics``) exposes them with the figures it reads from the database.
"""

from prometheus_client import Counter

STRIPE_CALLS = Counter(
    "payouts_stripe_calls",
    "Stripe API calls made by this service, by operation and outcome "
    "(succeeded, or the gateway's error class).",
    ["operation", "outcome"],
)


def stripe_call_observed(*, operation: str, outcome: str) -> None:
    """Count one Stripe call; the gateway calls this once per API call it makes."""
    STRIPE_CALLS.labels(operation=operation, outcome=outcome).inc()


EVENTS_REFUSED = Counter(
    "payouts_events_refused",
    "Stripe events stored but refused because applying them would move money wrongly "
    "(e.g. a refund in another currency than its order). Alert on any increase.",
    ["reason"],
)


def event_refused(*, reason: str) -> None:
    EVENTS_REFUSED.labels(reason=reason).inc()


REFUNDS_WHILE_DISPUTED = Counter(
    "payouts_refunds_while_disputed",
    "Refunds Stripe reported for a charge its buyer's bank was disputing: applied (the "
    "sellers' shares never exceed what they received), flagged for staff.",
)
