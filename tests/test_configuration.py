"""Configuration is parsed at start-up: a bad value stops the process and names the variable."""

import os
from datetime import timedelta
from pathlib import Path

import environ
import pytest
from django.core.exceptions import ImproperlyConfigured

from config.durations import parse_duration
from payouts.conf import load_payouts_config
from tests.builders import start_django

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("30s", timedelta(seconds=30)),
        ("1m", timedelta(minutes=1)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2m15s", timedelta(minutes=2, seconds=15)),
        (" 10S ", timedelta(seconds=10)),
    ],
)
def test_a_duration_parses_to_its_timedelta(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["soon", "", "30", "1w", "m", "1m1h", "-1s", "0s", "1.5s"])
def test_malformed_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.fixture
def config_from(monkeypatch):
    """Parse the payouts knobs from an environment holding only the given variables."""

    def parse(**variables: str):
        for name in list(os.environ):
            if name.startswith(("REVERSAL_", "TRANSFER_RETRY_", "PLATFORM_FEE_", "STRIPE_")):
                monkeypatch.delenv(name)
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        return load_payouts_config(environ.Env())

    return parse


def test_the_fee_and_the_retry_policies_default_to_the_documented_values(config_from):
    config = config_from()

    assert config.platform_fee_bps == 1000
    for policy in (config.reversal, config.transfer_retry):
        assert policy.enabled is True
        assert policy.max_retries == 5
        assert policy.check_interval == timedelta(minutes=1)
        assert policy.backoff_base == timedelta(minutes=1)
        assert policy.backoff_max == timedelta(hours=1)


def test_the_backoff_rule_is_pinned_and_capped(config_from):
    policy = config_from(
        REVERSAL_BACKOFF_BASE="1s", REVERSAL_BACKOFF_MAX="10s", REVERSAL_MAX_RETRIES="5"
    ).reversal

    delays = [policy.delay_after_failure(n) for n in range(1, 7)]

    assert delays == [timedelta(seconds=s) for s in (1, 2, 4, 8, 10)] + [None]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REVERSAL_BACKOFF_BASE", "soon"),
        ("REVERSAL_BACKOFF_MAX", "forever"),
        ("REVERSAL_CHECK_INTERVAL", "60"),
        ("REVERSAL_MAX_RETRIES", "five"),
        ("REVERSAL_MAX_RETRIES", "-1"),
        ("REVERSAL_WORKER_ENABLED", "maybe"),
        ("TRANSFER_RETRY_BACKOFF_BASE", "1x"),
        ("TRANSFER_RETRY_WORKER_ENABLED", "nope"),
        ("PLATFORM_FEE_BPS", "10001"),
    ],
)
def test_a_bad_value_names_its_variable(config_from, variable, value):
    with pytest.raises(ImproperlyConfigured, match=variable):
        config_from(**{variable: value})


@pytest.mark.slow  # starts manage.py in a process
def test_a_bad_backoff_base_stops_startup_naming_the_variable():
    result = start_django("config.settings.local", REVERSAL_BACKOFF_BASE="soon")

    assert result.returncode != 0
    assert "REVERSAL_BACKOFF_BASE" in result.stderr
    assert "soon" in result.stderr


@pytest.mark.slow  # starts manage.py in a process
def test_startup_succeeds_with_good_values():
    result = start_django("config.settings.local", REVERSAL_BACKOFF_BASE="30s")

    assert result.returncode == 0, result.stderr


@pytest.mark.slow  # starts manage.py in a process
@pytest.mark.parametrize(
    "missing", ["DJANGO_SECRET_KEY", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"]
)
def test_production_refuses_to_start_without_a_secret(missing):
    secrets = {
        "DJANGO_SECRET_KEY": "x" * 60,
        "STRIPE_SECRET_KEY": "sk_live_example",
        "STRIPE_WEBHOOK_SECRET": "whsec_example",
        "DJANGO_DEBUG": "false",
    }
    secrets[missing] = ""

    result = start_django("config.settings.production", **secrets)

    assert result.returncode != 0
    assert f"{missing} must be set in production" in result.stderr


def test_stripe_budgets_default_to_live_limits_with_a_live_key(config_from):
    budgets = config_from(STRIPE_SECRET_KEY="sk_live_example").stripe.budgets

    assert (budgets.global_per_second, budgets.default_per_second) == (100, 25)
    assert budgets.for_operation("transfers.create") == 25
    assert budgets.checks_per_second < budgets.default_per_second


@pytest.mark.parametrize("key", ["sk_test_example", "rk_test_example", ""])
def test_stripe_budgets_default_to_the_sandbox_25_in_all_with_a_test_key(config_from, key):
    budgets = config_from(STRIPE_SECRET_KEY=key).stripe.budgets

    assert budgets.global_per_second == 25
    assert budgets.checks_per_second < budgets.default_per_second


def test_stripe_rate_limits_name_the_global_default_checks_and_operations(config_from):
    budgets = config_from(
        STRIPE_SECRET_KEY="sk_test_example",
        STRIPE_RATE_LIMITS="global=100/s, default=20/s,checks=4/s,transfers.create=24/s",
    ).stripe.budgets

    assert (budgets.global_per_second, budgets.default_per_second) == (100, 20)
    assert budgets.checks_per_second == 4
    assert budgets.for_operation("transfers.create") == 24
    assert budgets.for_operation("reversals.create") == 20


def test_stripe_rate_limits_off_turns_the_limiter_off(config_from):
    assert config_from(STRIPE_RATE_LIMITS="off").stripe.budgets is None


@pytest.mark.parametrize(
    "value",
    [
        "global=100",
        "global=100/m",
        "global=0/s",
        "default=-1/s",
        "transfers.craete=25/s",
        "global=100/s,global=90/s",
        "everything",
        "global=100000/s",
    ],
)
def test_a_malformed_stripe_rate_limits_names_the_variable(config_from, value):
    with pytest.raises(ImproperlyConfigured, match="STRIPE_RATE_LIMITS"):
        config_from(STRIPE_RATE_LIMITS=value)


def test_the_retired_single_rate_stops_start_up_pointing_at_its_replacement(config_from):
    with pytest.raises(ImproperlyConfigured, match="STRIPE_RATE_LIMITS"):
        config_from(STRIPE_MAX_REQUESTS_PER_SECOND="90")


@pytest.mark.slow  # starts manage.py in a process
def test_a_malformed_stripe_rate_limits_stops_start_up_naming_the_variable():
    result = start_django("config.settings.local", STRIPE_RATE_LIMITS="transfers=25")

    assert result.returncode != 0
    assert "STRIPE_RATE_LIMITS" in result.stderr
    assert "transfers=25" in result.stderr
