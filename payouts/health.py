"""Liveness of what the service cannot work without: Postgres and the Celery broker (Redis)."""

import logging

import redis
from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)

# A probe must answer quickly even when a dependency hangs rather than refuses.
REDIS_TIMEOUT_SECONDS = 2.0


def database_is_up() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:  # noqa: BLE001 - any failure means "not up"; the log says which
        logger.exception("health check: database unavailable")
        return False


def broker_is_up() -> bool:
    client = redis.Redis.from_url(
        settings.CELERY_BROKER_URL,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
    )
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001
        logger.exception("health check: redis unavailable")
        return False
    finally:
        client.close()


def dependency_health() -> dict[str, str]:
    """``{"database": "ok"|"unavailable", "redis": "ok"|"unavailable"}``."""
    checks = {"database": database_is_up, "redis": broker_is_up}
    return {name: "ok" if check() else "unavailable" for name, check in checks.items()}
