"""Shared fixtures. The suite runs against the real Postgres (pytest-django creates the test
database), Redis, and the project's own Stripe sandbox spoken to over HTTP by the real
stripe-python client."""

from dataclasses import replace
from datetime import timedelta

import pytest
import stripe

from stripe_sandbox.testing import RunningSandbox
from tests.stripe_events import WEBHOOK_SECRET


@pytest.fixture(scope="session")
def sandbox_server():
    with RunningSandbox(seed=0) as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server, settings):
    """A clean sandbox, with the service's Stripe settings pointing at it.

    stripe-python's own retries are off so tests count exactly the calls our code makes; the
    short timeout keeps injected timeouts quick.
    """
    sandbox_server.control.reset()
    settings.STRIPE_API_BASE = sandbox_server.url
    settings.STRIPE_SECRET_KEY = "sk_test_suite"
    settings.PAYOUTS = replace(
        settings.PAYOUTS,
        stripe=replace(
            settings.PAYOUTS.stripe, max_network_retries=0, timeout=timedelta(seconds=2)
        ),
    )
    settings.STRIPE_WEBHOOK_SECRETS = [WEBHOOK_SECRET]
    yield sandbox_server.control
    sandbox_server.control.reset()


@pytest.fixture
def stripe_client(sandbox_server):
    """A stripe-python client acting as "someone else" at Stripe (the Dashboard, a test setup)."""
    return stripe.StripeClient(
        "sk_test_suite", base_addresses={"api": sandbox_server.url}, max_network_retries=0
    )


@pytest.fixture
def webhook_secret(settings):
    settings.STRIPE_WEBHOOK_SECRETS = [WEBHOOK_SECRET]
    return WEBHOOK_SECRET
