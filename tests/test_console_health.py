"""/healthz knows the web app's dependencies (Postgres, Redis: 503 when either is down) and
reports the Celery workers (do they answer a ping?) and beat (is its heartbeat fresh?) by state
only; a dependency that is down costs one warning line per probe, never a traceback."""

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection

from console import health
from console import tasks as console_tasks
from console.health import HEARTBEAT_INTERVAL, HEARTBEAT_KEY, State

ROOT = Path(__file__).resolve().parent.parent
# A Redis database no other test, benchmark or `make run` uses: no other worker answers there.
BROKER_URL = "redis://127.0.0.1:6379/8"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def own_broker(celery_queueing, settings):
    redis.Redis.from_url(BROKER_URL).flushdb()
    celery_queueing(BROKER_URL)
    yield redis.Redis.from_url(BROKER_URL)
    redis.Redis.from_url(BROKER_URL).flushdb()


def stamp_seconds_ago(client: redis.Redis, seconds: float) -> None:
    client.set(HEARTBEAT_KEY, int(time.time() - seconds))


def test_beat_is_ok_while_a_worker_has_run_its_heartbeat_lately(own_broker):
    stamp_seconds_ago(own_broker, 5)

    assert health.beat_state(workers=State.OK) == State.OK


def test_beat_is_unavailable_when_its_heartbeat_is_stale_though_workers_answer(own_broker, caplog):
    stamp_seconds_ago(own_broker, health.HEARTBEAT_STALE_AFTER.total_seconds() + 30)

    assert health.beat_state(workers=State.OK) == State.UNAVAILABLE
    [record] = [r for r in caplog.records if r.name == "console.health"]
    assert "beat unavailable" in record.getMessage()


def test_beat_cannot_be_told_when_no_worker_runs_its_heartbeat(own_broker):
    assert health.beat_state(workers=State.UNAVAILABLE) == State.UNKNOWN


def test_the_heartbeat_task_stamps_the_time_for_healthz(own_broker):
    console_tasks.heartbeat_stamp.apply()

    age = health.heartbeat_age()
    assert age is not None and age.total_seconds() < 5


@pytest.mark.django_db
def test_healthz_stays_200_and_says_so_when_no_worker_answers(client, own_broker):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {
        "database": "ok",
        "redis": "ok",
        "workers": "unavailable",
        "beat": "unknown",
    }


@pytest.mark.django_db
def test_a_dependency_down_is_one_warning_line_per_probe_without_a_traceback(
    client, settings, caplog
):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{closed_port()}/0"
    caplog.set_level(logging.INFO)

    assert client.get("/healthz").status_code == 503

    logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.levelname) for r in logged] == [("console.health", "WARNING")]
    assert "redis unavailable" in logged[0].getMessage()
    assert logged[0].exc_info is None


def test_beat_sends_the_heartbeat_every_interval_and_never_piles_it_up():
    entry = django_settings.CELERY_BEAT_SCHEDULE["heartbeat"]

    assert entry["task"] == "console.tasks.heartbeat_stamp"
    assert entry["schedule"] == HEARTBEAT_INTERVAL.total_seconds()
    assert entry["options"]["expires"] == HEARTBEAT_INTERVAL.total_seconds()


@pytest.mark.slow  # starts a Celery worker process
@pytest.mark.django_db
def test_healthz_sees_a_real_worker_answer_and_run_beats_heartbeat(client, own_broker):
    db = connection.settings_dict
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": BROKER_URL,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "LOG_LEVEL": "WARNING",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while client.get("/healthz").json()["workers"] != "ok":
            assert time.monotonic() < deadline, "the worker never answered a ping"
        assert client.get("/healthz").json()["beat"] == "unavailable"  # no heartbeat yet

        console_tasks.heartbeat_stamp.delay()  # what beat sends every interval

        while client.get("/healthz").json()["beat"] != "ok":
            assert time.monotonic() < deadline, "the worker never ran the heartbeat"
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
