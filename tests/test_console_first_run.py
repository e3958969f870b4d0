"""The first run, `make run`: Postgres and Redis are checked before anything starts (naming the
one that is down and how to start it), logs are text under honcho (JSON when asked), the
sandbox keeps its state in a file across restarts (or says it forgot), and the staff login is
printed last."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.management.commands.check_dependencies import postgres_problem, redis_problem
from devtools.management.commands.run_service import (
    PROCFILE,
    SANDBOX_STATE_FILE,
    plan_service,
    sandbox_paid_transfers_forgotten,
)
from tests.factories import SellerTransferFactory

ROOT = Path(__file__).resolve().parent.parent


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_postgres_that_does_not_answer_is_named_with_how_to_start_it():
    port = closed_port()

    problem = postgres_problem({"HOST": "127.0.0.1", "PORT": port, "USER": "postgres"})

    assert problem.startswith(f"Postgres is not answering at 127.0.0.1:{port}")
    assert "pg_ctlcluster" in problem and "docker run" in problem and "DATABASE_URL" in problem


def test_a_redis_that_does_not_answer_is_named_with_how_to_start_it():
    url = f"redis://127.0.0.1:{closed_port()}/0"

    problem = redis_problem(url)

    assert problem.startswith(f"Redis is not answering at {url}")
    assert "redis-server" in problem and "CELERY_BROKER_URL" in problem


def test_the_ones_that_answer_are_no_problem(settings):
    assert postgres_problem(settings.DATABASES["default"]) is None
    assert redis_problem("redis://127.0.0.1:6379/0") is None


@pytest.mark.slow  # starts manage.py in a process
def test_make_runs_first_step_stops_naming_both_when_both_are_down():
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{closed_port()}/payouts",
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{closed_port()}/0",
    }

    result = subprocess.run(
        [sys.executable, "manage.py", "check_dependencies"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert "Postgres is not answering" in result.stderr
    assert "Redis is not answering" in result.stderr
    assert "Traceback" not in result.stderr


def test_logs_under_honcho_are_text_unless_log_format_says_json(settings):
    # Honcho prefixes every line with its process, in a terminal or piped to a file alike: a
    # person reads them, and JSON behind the prefix is unreadable.
    def log_format(**kwargs) -> str:
        return plan_service(web_port=8000, **kwargs).environment["LOG_FORMAT"]

    assert log_format(environ={}) == "text"
    assert log_format(environ={"LOG_FORMAT": "json"}) == "json"


def test_the_sandbox_keeps_its_state_in_a_file_across_restarts(settings):
    settings.STRIPE_USES_LOCAL_SANDBOX = True

    plan = plan_service(web_port=8000, environ={})

    assert plan.environment["SANDBOX_STATE_FILE"] == str(SANDBOX_STATE_FILE)
    assert SANDBOX_STATE_FILE.parent.name == "var"  # ignored by git
    sandbox_line = next(
        line for line in PROCFILE.read_text().splitlines() if line.startswith("sandbox:")
    )
    assert '--state-file "$SANDBOX_STATE_FILE"' in sandbox_line


@pytest.mark.django_db
def test_a_sandbox_without_its_state_file_is_said_to_have_forgotten_paid_transfers(tmp_path):
    SellerTransferFactory(completed=True)
    SellerTransferFactory()  # never sent: nothing to forget
    state_file = tmp_path / "sandbox-state.json"

    assert sandbox_paid_transfers_forgotten(state_file) == 1
    state_file.write_text("{}")
    assert sandbox_paid_transfers_forgotten(state_file) == 0


def test_as_root_celerys_superuser_warning_is_silenced_in_development_only_then(settings):
    as_root = plan_service(web_port=8000, environ={}, as_root=True).environment
    as_user = plan_service(web_port=8000, environ={}).environment
    kept = plan_service(web_port=8000, environ={"PYTHONWARNINGS": "error"}, as_root=True)

    assert as_root["PYTHONWARNINGS"] == "ignore:You're running the worker with superuser privileges"
    assert "PYTHONWARNINGS" not in as_user
    assert kept.environment["PYTHONWARNINGS"].split(",")[0] == "error"
