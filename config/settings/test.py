"""pytest: the same settings as development, pointed at whatever the test fixtures start."""

import os

from config.settings.local import *  # noqa: F403
from config.settings.local import env
from payouts.conf import load_payouts_config

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Test connections are closed per test; persistent connections only hide leaks here.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405

# Tasks enqueued after commit run in the calling thread, so a test sees their effect. Tests that
# need real queueing run a Celery worker process against Redis instead (with this off).
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=True)
CELERY_TASK_EAGER_PROPAGATES = True
# `make test-fast` runs the suite in two pytest-xdist processes (gw0, gw1): each gets a Redis
# database of its own for the wake-ups' coalescing marks, so one process's mark never swallows
# the other's wake-up. A plain run keeps the broker it was given.
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _XDIST_WORKER and "CELERY_BROKER_URL" not in os.environ:
    CELERY_BROKER_URL = f"redis://127.0.0.1:6379/{4 + int(_XDIST_WORKER.removeprefix('gw'))}"

# The tests keep their Redis keys (beat's heartbeat, the wake-ups' marks) out of development's
# database: a heartbeat a test run stamped read, when `make run` started next, as beat gone
# stale ("last heartbeat 400 s ago"). The development default, db 0, becomes db 12 here; a
# broker chosen on purpose (another host or database) is kept.
if CELERY_BROKER_URL == DEVELOPMENT_BROKER_URL:  # noqa: F405
    CELERY_BROKER_URL = "redis://127.0.0.1:6379/12"

STRIPE_RATE_LIMIT_REDIS_URL = env.str(
    "STRIPE_RATE_LIMIT_REDIS_URL", default="redis://127.0.0.1:6379/15"
)
PAYOUTS = load_payouts_config(
    env,
    # The shared Stripe rate limiter is exercised by its own tests; elsewhere it must not pace
    # the suite (the sandbox fixture leaves it on at this generous rate).
    STRIPE_RATE_LIMITS="global=1000/s,default=1000/s,checks=1000/s",
    # Worker threads use their own database connections, which cannot see rows created inside
    # a test's transaction; tests that exercise in-run concurrency commit their rows and raise
    # this.
    REVERSAL_CONCURRENCY="1",
)
