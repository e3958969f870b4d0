"""Shared fixtures. The suite runs against the real Postgres (pytest-django creates the test
database), Redis, and the project's own Stripe sandbox spoken to over HTTP by the real
stripe-python client.

Database tests run inside a transaction that is rolled back (``django_db``), so
``transaction.on_commit`` work (the Celery wake-ups, run eagerly in tests) runs only where a test
wraps the code that commits in ``django_capture_on_commit_callbacks(execute=True)``; elsewhere it
is dropped with the transaction, as if the broker had lost it. Only tests whose other threads or
processes must see the rows (``live_server``, threads with their own connections, worker
processes) use ``django_db(transaction=True)``.
"""

from dataclasses import replace
from datetime import timedelta

import environ
import pytest
import stripe
from hypothesis import HealthCheck, settings

from payouts.conf import load_payouts_config
from stripe_sandbox.testing import RunningSandbox
from tests.builders import CONNECT_WEBHOOK_SECRET, WEBHOOK_SECRET, paid_order, post_event

# Property tests draw the same examples on every run and every machine (CI never meets an
# example a developer did not), and stay within a few seconds.
settings.register_profile(
    "suite",
    derandomize=True,
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("suite")


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
    settings.STRIPE_CONNECT_WEBHOOK_SECRETS = [CONNECT_WEBHOOK_SECRET]
    yield sandbox_server.control
    sandbox_server.control.reset()


@pytest.fixture
def approval_rules(settings):
    """Set the four-eyes rules as ``APPROVAL_RULES`` would (``"write_off=never; …"``), parsed
    by the settings' own parser."""

    def set_rules(text: str) -> None:
        policy = load_payouts_config(environ.Env(), APPROVAL_RULES=text).approvals
        settings.PAYOUTS = replace(settings.PAYOUTS, approvals=policy)

    return set_rules


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


@pytest.fixture
def three_seller_order(client, sandbox, stripe_client):
    """Items of 1,000 / 2,000 / 3,333 cents from three sellers, paid through the webhook:
    transfers of 900 / 1,800 / 3,000, completed."""
    order, transfers = paid_order(stripe_client, [1000, 2000, 3333], webhook=client)
    assert sorted(t.amount for t in transfers) == [900, 1800, 3000]
    return order


@pytest.fixture
def deliver(client, sandbox, django_capture_on_commit_callbacks):
    """Post the sandbox's events of the given types (all of them, since the last call), signed,
    as Stripe would deliver them, running what they start after commit."""
    delivered = set()

    def run(*types: str, events=None) -> None:
        for event in events or [e for e in sandbox.events() if e["type"] in types]:
            if events is None and event["id"] in delivered:
                continue
            delivered.add(event["id"])
            with django_capture_on_commit_callbacks(execute=True):
                response = post_event(client, event)
            assert response.status_code == 200, response.content

    return run


@pytest.fixture
def celery_queueing(settings, monkeypatch):
    """Celery really queueing to the broker at ``url`` (not running tasks eagerly), for the test
    that calls ``celery_queueing(url)``; the wake-ups' coalescing marks go to the same Redis."""
    from config.celery import app

    conf = app.conf
    saved = conf.task_always_eager, conf.broker_url

    def queue_to(url: str) -> None:
        conf.task_always_eager = False
        conf.broker_url = url
        # Celery prefers a CELERY_BROKER_URL in the environment to its configuration.
        monkeypatch.setenv("CELERY_BROKER_URL", url)
        settings.CELERY_BROKER_URL = url
        app._after_fork()  # forget connections to the broker used so far

    yield queue_to
    conf.task_always_eager, conf.broker_url = saved
    app._after_fork()


@pytest.fixture
def broker_down(celery_queueing):
    """Celery queueing to a broker nobody listens on."""
    celery_queueing("redis://127.0.0.1:1/0")


@pytest.fixture
def short_stripe_timeout(sandbox, settings):
    """Stripe calls give up after 0.3 s, so a test of a timeout does not wait the usual 2 s."""
    settings.PAYOUTS = replace(
        settings.PAYOUTS,
        stripe=replace(settings.PAYOUTS.stripe, timeout=timedelta(milliseconds=300)),
    )


@pytest.fixture(autouse=True)
def book_balanced_before_rollback(request):
    """The book's balance checks run when a transaction commits; a test whose transaction is
    rolled back never commits, so they are run at its end instead: an unbalanced entry fails
    the test that posted it."""
    yield
    marker = request.node.get_closest_marker("django_db")
    if marker is None or marker.kwargs.get("transaction"):
        return
    from django.db import connection

    if connection.in_atomic_block and not connection.needs_rollback:
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
