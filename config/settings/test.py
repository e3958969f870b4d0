"""pytest: the same settings as development, pointed at whatever the test fixtures start."""

from config.settings.local import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Test connections are closed per test; persistent connections only hide leaks here.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405

# Tasks enqueued after commit run in the calling thread, so a test sees their effect. Tests that
# need real queueing run a Celery worker process against Redis instead.
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
