"""Check that Postgres and Redis answer before ``make run`` starts the service.

The first step of ``make run``: is Postgres answering, is Redis? Say which is not and how to
start it, before anything else starts (and fails with a traceback instead)."""

from pathlib import Path

import psycopg
import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

CONNECT_TIMEOUT_SECONDS = 3


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _postgres_version() -> str:
    # Debian's clusters are named by version: /etc/postgresql/<version>/main.
    found = sorted(p.name for p in Path("/etc/postgresql").glob("*") if p.is_dir())
    return found[-1] if found else "<version>"


def postgres_problem(database: dict) -> str | None:
    """Why the Postgres server of ``database`` cannot be used, if it cannot.

    ``None`` when the server of ``database`` (a ``DATABASES`` entry) answers; otherwise
    what is wrong and how to start it."""
    host, port = database.get("HOST") or "127.0.0.1", database.get("PORT") or 5432
    try:
        with psycopg.connect(
            host=host,
            port=port,
            user=database.get("USER") or None,
            password=database.get("PASSWORD") or None,
            dbname="postgres",
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
        ):
            return None
    except psycopg.Error as error:
        return (
            f"Postgres is not answering at {host}:{port} ({_first_line(error)}).\n"
            f"  Start it: sudo pg_ctlcluster {_postgres_version()} main start (Debian, Ubuntu)"
            " | brew services start postgresql@15 (macOS)\n"
            "  | docker run -d --name payouts-postgres -p 5432:5432 "
            "-e POSTGRES_HOST_AUTH_METHOD=trust postgres:15\n"
            "  Or point DATABASE_URL at a server that runs (in .env, see .env.template)."
        )


def redis_problem(url: str) -> str | None:
    """Why Redis at ``url`` cannot be used, if it cannot.

    ``None`` when Redis at ``url`` answers a ping; otherwise what is wrong and how to start
    it."""
    client = redis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=CONNECT_TIMEOUT_SECONDS,
    )
    try:
        client.ping()
        return None
    except redis.RedisError as error:
        return (
            f"Redis is not answering at {url} ({_first_line(error)}).\n"
            "  Start it: redis-server --daemonize yes | sudo service redis-server start"
            " | brew services start redis\n"
            "  | docker run -d --name payouts-redis -p 6379:6379 redis:7\n"
            "  Or point CELERY_BROKER_URL at a server that runs (in .env, see .env.template)."
        )
    finally:
        client.close()


class Command(BaseCommand):
    help = "Check that Postgres and Redis answer; say which does not and how to start it."

    def handle(self, *args, **options):
        problems = [
            problem
            for problem in (
                postgres_problem(settings.DATABASES["default"]),
                redis_problem(settings.CELERY_BROKER_URL),
            )
            if problem
        ]
        for problem in problems:
            self.stderr.write(problem)
        if problems:
            raise CommandError("start what is down, then `make run` again")
        self.stdout.write("postgres and redis answer")
