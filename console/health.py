"""Health checks of Postgres, Redis, the Celery workers and Celery beat.

Liveness of what the service needs: Postgres and Redis (the web app cannot work without
them), Celery workers (nothing moves money without one) and Celery beat (the sweeps: retries,
reconciliation, the ledger check).

Beat is seen through a heartbeat: it sends ``console.tasks.heartbeat_stamp`` every
``HEARTBEAT_INTERVAL``, a worker runs it, and the task stamps the time in Redis. A stamp older
than ``HEARTBEAT_STALE_AFTER`` means beat is not sending, or no worker is running its tasks;
when no worker answers a ping either, beat's state cannot be told and is ``unknown``.

A probe runs every few seconds: a dependency that is down costs one warning line per probe,
naming it and why, never a traceback.
"""

import logging
import time
from datetime import timedelta
from enum import StrEnum

import redis
from django.conf import settings
from django.db import connection

from config.celery import app as celery_app

logger = logging.getLogger(__name__)

# A probe must answer quickly even when a dependency hangs rather than refuses.
REDIS_TIMEOUT_SECONDS = 2.0
WORKER_PING_TIMEOUT_SECONDS = 1.0
HEARTBEAT_KEY = "payouts:heartbeat"
HEARTBEAT_INTERVAL = timedelta(seconds=15)
HEARTBEAT_STALE_AFTER = timedelta(seconds=60)


class State(StrEnum):
    OK = "ok"
    UNAVAILABLE = "unavailable"
    UNKNOWN = "unknown"


def _redis_client() -> redis.Redis:
    return redis.Redis.from_url(
        settings.CELERY_BROKER_URL,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
    )


def database_is_up() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception as error:  # noqa: BLE001 - any failure means "not up"; the log says which
        logger.warning("health check: database unavailable: %s", _one_line(error))
        return False


def broker_is_up() -> bool:
    client = _redis_client()
    try:
        return bool(client.ping())
    except Exception as error:  # noqa: BLE001
        logger.warning("health check: redis unavailable: %s", _one_line(error))
        return False
    finally:
        client.close()


def workers_answer() -> bool:
    """Whether at least one Celery worker answers a ping on the broker."""
    try:
        replies = celery_app.control.ping(timeout=WORKER_PING_TIMEOUT_SECONDS, limit=1)
    except Exception as error:  # noqa: BLE001
        logger.warning("health check: could not ping Celery workers: %s", _one_line(error))
        return False
    if not replies:
        logger.warning(
            "health check: no Celery worker answered a ping within %.1f s",
            WORKER_PING_TIMEOUT_SECONDS,
        )
    return bool(replies)


def heartbeat_stamp() -> dict[str, int]:
    """Record that beat's heartbeat reached a worker now (the heartbeat task's body)."""
    now = int(time.time())
    client = _redis_client()
    try:
        # Kept a day: long enough to say how long beat has been gone.
        client.set(HEARTBEAT_KEY, now, ex=int(timedelta(days=1).total_seconds()))
    finally:
        client.close()
    return {"stamped_at": now}


def heartbeat_age() -> timedelta | None:
    """How long ago a worker last ran beat's heartbeat; ``None`` if never (or not known)."""
    client = _redis_client()
    try:
        stamp = client.get(HEARTBEAT_KEY)
    except Exception as error:  # noqa: BLE001
        logger.warning("health check: cannot read beat's heartbeat: %s", _one_line(error))
        return None
    finally:
        client.close()
    if stamp is None:
        return None
    return timedelta(seconds=max(time.time() - int(stamp), 0))


def beat_state(*, workers: State) -> State:
    age = heartbeat_age()
    if age is not None and age <= HEARTBEAT_STALE_AFTER:
        return State.OK
    if workers != State.OK:
        return State.UNKNOWN  # the heartbeat needs a worker: beat may be fine
    seen = "never" if age is None else f"{int(age.total_seconds())} s ago"
    logger.warning("health check: beat unavailable: its last heartbeat ran %s", seen)
    return State.UNAVAILABLE


def dependency_health() -> dict[str, str]:
    """The state of each dependency the service needs.

    ``{"database", "redis", "workers", "beat"}``, each ``ok``, ``unavailable`` or
    ``unknown`` (workers and beat cannot be asked while Redis is down)."""
    database = State.OK if database_is_up() else State.UNAVAILABLE
    if not broker_is_up():
        return {
            "database": database,
            "redis": State.UNAVAILABLE,
            "workers": State.UNKNOWN,
            "beat": State.UNKNOWN,
        }
    workers = State.OK if workers_answer() else State.UNAVAILABLE
    return {
        "database": database,
        "redis": State.OK,
        "workers": workers,
        "beat": beat_state(workers=workers),
    }


def serving_dependencies_up(checks: dict[str, str]) -> bool:
    """Whether the web app's own dependencies answer.

    Whether the web app can serve: Postgres and Redis answer. Workers and beat are reported,
    not required: a probe restarting the web app for them would also cut off Stripe's
    webhooks."""
    return checks["database"] == State.OK and checks["redis"] == State.OK


def _one_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
