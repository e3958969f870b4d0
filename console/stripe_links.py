"""Where a person can look at a Stripe object we hold the id of.

With a real key, the Stripe Dashboard: its test-mode pages for a test key (``sk_test_…`` or
``rk_test_…``), the live ones otherwise, so that a link never opens the other mode's empty page.
When the service talks to the local sandbox (development), the sandbox's own read-only page of
the object (``GET /_sandbox/objects/<id>``), since the Dashboard has never heard of its ids.
"""

import re
from urllib.parse import quote

from django.conf import settings

DASHBOARD = "https://dashboard.stripe.com"
TEST_KEY_PREFIXES = ("sk_test_", "rk_test_")

# The Dashboard page of each kind of id, by its prefix.
_DASHBOARD_PAGES = {
    "acct": "connect/accounts/{id}",
    "tr": "connect/transfers/{id}",
    # A transfer reversal has no page of its own; the Dashboard's search finds it.
    "trr": "search?query={id}",
    "pi": "payments/{id}",
    "ch": "payments/{id}",
    "re": "refunds/{id}",
    "dp": "disputes/{id}",
    "evt": "events/{id}",
}
_STRIPE_ID = re.compile(r"(?P<prefix>[a-z]+)_[A-Za-z0-9_]+")


def stripe_url(stripe_id: str) -> str | None:
    """The page showing ``stripe_id``, or ``None`` for an empty or unknown kind of id."""
    found = _STRIPE_ID.fullmatch(stripe_id or "")
    if found is None or found["prefix"] not in _DASHBOARD_PAGES:
        return None
    if getattr(settings, "STRIPE_USES_LOCAL_SANDBOX", False):
        return f"{settings.SANDBOX_URL.rstrip('/')}/_sandbox/objects/{quote(stripe_id)}"
    page = _DASHBOARD_PAGES[found["prefix"]].format(id=quote(stripe_id))
    return f"{_dashboard_root()}/{page}"


def _dashboard_root() -> str:
    if settings.STRIPE_SECRET_KEY.startswith(TEST_KEY_PREFIXES):
        return f"{DASHBOARD}/test"
    return DASHBOARD
