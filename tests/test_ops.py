"""Operations surface: /healthz, /metrics, /api/schema/, JSON logs, the process plan of
`make run`, and production settings that pass Django's deployment checks."""

import json
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from devtools.management.commands.run_service import PROCFILE, plan_service
from payouts.telemetry import stripe_call_observed
from payouts.transfer.transitions import TransferStatus
from tests.factories import SellerTransferEventFactory, SellerTransferFactory, UserFactory

ROOT = Path(__file__).resolve().parent.parent


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- /healthz -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_healthz_is_200_when_postgres_and_redis_answer(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert (body["database"], body["redis"]) == ("ok", "ok")
    assert set(body) == {"database", "redis", "workers", "beat"}


@pytest.mark.django_db
def test_healthz_is_503_naming_redis_when_the_broker_is_down(client, settings):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{closed_port()}/0"

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {
        "database": "ok",
        "redis": "unavailable",
        "workers": "unknown",
        "beat": "unknown",
    }


@pytest.mark.django_db
def test_healthz_needs_no_login_and_is_never_cached(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"]


# --- /metrics -----------------------------------------------------------------------------


def scrape(client) -> dict[str, dict[tuple, float]]:
    """``{sample name: {sorted label items: value}}`` from one scrape, as staff."""
    client.force_login(UserFactory(username="metrics-reader", is_staff=True))
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


@pytest.mark.django_db
def test_metrics_count_rows_per_status_including_empty_ones(client):
    SellerTransferFactory.create_batch(2, completed=True)
    SellerTransferFactory(status=TransferStatus.PERMANENTLY_FAILED)

    rows = scrape(client)["payouts_transfers"]

    assert rows[(("status", TransferStatus.COMPLETED),)] == 2
    assert rows[(("status", TransferStatus.PERMANENTLY_FAILED),)] == 1
    assert rows[(("status", TransferStatus.REVERSED),)] == 0
    assert {dict(labels)["status"] for labels in rows} == set(TransferStatus.values)


@pytest.mark.django_db
def test_metrics_count_due_rows_and_the_age_of_the_oldest_due_reversal(client):
    now = timezone.now()
    SellerTransferFactory(reversal_due=True, next_retry_at=now - timedelta(minutes=5))
    SellerTransferFactory(reversal_due=True, next_retry_at=now - timedelta(seconds=10))
    SellerTransferFactory(reversal_due=True, next_retry_at=now + timedelta(minutes=5))  # not due
    SellerTransferFactory(status=TransferStatus.FAILED, next_retry_at=now - timedelta(seconds=1))
    SellerTransferFactory(
        status=TransferStatus.FAILED, next_retry_at=now + timedelta(hours=1)
    )  # not due

    samples = scrape(client)

    due = samples["payouts_transfers_due"]
    assert due[(("status", TransferStatus.REVERSAL_PENDING),)] == 2
    assert due[(("status", TransferStatus.FAILED),)] == 1
    age = samples["payouts_oldest_due_reversal_age_seconds"][()]
    assert 300 <= age < 360


@pytest.mark.django_db
def test_the_oldest_due_reversal_age_is_zero_when_nothing_is_due(client):
    SellerTransferFactory(reversal_due=True, next_retry_at=timezone.now() + timedelta(minutes=1))

    assert scrape(client)["payouts_oldest_due_reversal_age_seconds"][()] == 0


@pytest.mark.django_db
def test_metrics_count_transitions_by_from_and_to_from_the_audit_trail(client):
    transfer = SellerTransferFactory(completed=True)
    SellerTransferEventFactory(
        transfer=transfer, from_status=TransferStatus.PENDING, to_status=TransferStatus.COMPLETED
    )
    for _ in range(3):
        SellerTransferEventFactory(
            transfer=transfer,
            from_status=TransferStatus.REVERSAL_PENDING,
            to_status=TransferStatus.REVERSAL_PENDING,
        )

    transitions = scrape(client)["payouts_transfer_transitions_total"]

    assert (
        transitions[
            (("from_status", TransferStatus.PENDING), ("to_status", TransferStatus.COMPLETED))
        ]
        == 1
    )
    key = (
        ("from_status", TransferStatus.REVERSAL_PENDING),
        ("to_status", TransferStatus.REVERSAL_PENDING),
    )
    assert transitions[key] == 3


@pytest.mark.django_db
def test_metrics_count_stripe_calls_by_operation_and_outcome(client):
    key = (("operation", "transfers.create"), ("outcome", "StripeTransientError"))
    before = scrape(client).get("payouts_stripe_calls_total", {}).get(key, 0)

    stripe_call_observed(operation="transfers.create", outcome="StripeTransientError")
    stripe_call_observed(operation="transfers.create", outcome="StripeTransientError")

    assert scrape(client)["payouts_stripe_calls_total"][key] == before + 2


# --- OpenAPI ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_openapi_schema_describes_the_webhook_and_the_staff_api(client):
    client.force_login(UserFactory(is_staff=True))
    response = client.get("/api/schema/")

    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    assert {"/webhooks/stripe/", "/api/admin/transfers/{id}/retry/"} <= set(schema["paths"])
    retry = schema["paths"]["/api/admin/transfers/{id}/retry/"]["post"]
    assert {"200", "401", "403", "404", "409", "502"} <= set(retry["responses"])


@pytest.mark.slow  # starts manage.py in a process
def test_the_schema_generates_without_a_single_warning():
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr


# --- Logs ---------------------------------------------------------------------------------


@pytest.mark.slow  # starts manage.py in a process
def test_every_log_record_is_one_json_line_with_its_extra_fields():
    code = (
        "import logging; logging.getLogger('payouts.stripe_api.gateway')"
        ".warning('stripe call failed', "
        "extra={'stripe_operation': 'reversals.create', 'outcome': 'StripeTransientError', "
        "'transfer_id': 42, 'order_id': 7})"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if k not in {"LOG_FORMAT", "LOG_LEVEL"}},
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "stripe call failed" in line]
    assert len(lines) == 1, result.stderr
    record = json.loads(lines[0])
    assert record["level"] == "WARNING"
    assert record["logger"] == "payouts.stripe_api.gateway"
    assert record["message"] == "stripe call failed"
    assert (record["stripe_operation"], record["outcome"]) == (
        "reversals.create",
        "StripeTransientError",
    )
    assert (record["transfer_id"], record["order_id"]) == (42, 7)
    assert record["time"].endswith("+00:00")


@pytest.mark.slow  # starts manage.py in a process
def test_an_unknown_log_format_stops_startup_naming_the_variable():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local", "LOG_FORMAT": "xml"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "LOG_FORMAT" in result.stderr


# --- `make run` ---------------------------------------------------------------------------


def procfile_commands() -> dict[str, str]:
    lines = PROCFILE.read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_without_a_stripe_key_make_run_adds_the_sandbox_signing_webhooks_to_the_web_app(
    settings,
):
    settings.STRIPE_USES_LOCAL_SANDBOX = True
    settings.SANDBOX_URL = "http://127.0.0.1:12999"
    settings.STRIPE_WEBHOOK_SECRETS = ["whsec_local_sandbox", "whsec_previous"]

    plan = plan_service(web_port=8123, environ={})

    assert plan.processes == ["web", "worker", "beat", "sandbox"]
    assert set(plan.processes) <= set(procfile_commands())
    assert plan.argv[-4:] == plan.processes
    assert plan.environment["SANDBOX_PORT"] == "12999"
    assert plan.environment["SANDBOX_WEBHOOK_URL"] == "http://127.0.0.1:8123/webhooks/stripe/"
    assert plan.environment["SANDBOX_WEBHOOK_SECRET"] == "whsec_local_sandbox"
    assert plan.environment["WEB_PORT"] == "8123"


def test_with_a_stripe_key_make_run_starts_no_sandbox(settings):
    settings.STRIPE_USES_LOCAL_SANDBOX = False

    plan = plan_service(web_port=8000, environ={"STRIPE_SECRET_KEY": "sk_test_real"})

    assert plan.processes == ["web", "worker", "beat"]
    assert "SANDBOX_WEBHOOK_URL" not in plan.environment


def test_make_run_beats_every_5s_unless_the_environment_says_otherwise(settings):
    quick = plan_service(web_port=8000, environ={}).environment
    chosen = plan_service(web_port=8000, environ={"REVERSAL_CHECK_INTERVAL": "30s"}).environment

    assert quick["REVERSAL_CHECK_INTERVAL"] == quick["TRANSFER_RETRY_CHECK_INTERVAL"] == "5s"
    assert chosen["REVERSAL_CHECK_INTERVAL"] == "30s"


def test_honcho_is_kept_from_reading_dotenv_over_the_environment(settings):
    argv = plan_service(web_port=8000, environ={}).argv

    assert argv[argv.index("--env") + 1] == os.devnull


# --- Production settings ------------------------------------------------------------------


@pytest.mark.slow  # starts manage.py in a process
def test_production_settings_pass_the_deployment_checks():
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": "dummy-" + "k3y" * 20,
        "STRIPE_SECRET_KEY": "sk_live_dummy",
        "STRIPE_WEBHOOK_SECRET": "whsec_dummy",
        "DJANGO_DEBUG": "false",
    }
    for inherited in ("DJANGO_SECURE_SSL_REDIRECT", "DJANGO_SECURE_HSTS_SECONDS"):
        environment.pop(inherited, None)

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
