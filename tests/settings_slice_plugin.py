"""A pytest plugin for running part of the suite under a settings module other than the tests'
own (``config.settings.local``, ``config.settings.production``): see
``tests/test_settings_modules.py``, which loads it with ``-p``.

It gives the run what the test harness needs without defining any Django setting the module
under test lacks, so code that reads a setting only ``config.settings.test`` defines fails here
as it would in a real process:

- Celery runs tasks in the test's thread: set on the Celery app itself, not through a
  ``CELERY_*`` Django setting the code could read;
- a fast password hasher, so each authenticated request does not spend a second hashing;
- static files served as they lie in the apps: production's manifest storage needs the
  ``collectstatic`` its image build runs, which a test run does not.

Both are Django's own settings, defined for every module whatever it sets.
"""

import pytest
from django.conf import settings
from django.test import override_settings


@pytest.fixture(scope="session", autouse=True)
def harness_without_test_settings(django_db_setup):
    from config.celery import app

    # Set, never read first: reading would load Celery's configuration now, and a loaded
    # configuration lets the environment's CELERY_BROKER_URL win over the broker that
    # ``celery_queueing`` points a test at.
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    assert hasattr(settings, "PASSWORD_HASHERS") and hasattr(settings, "STORAGES")
    harness = override_settings(
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        STORAGES={
            **settings.STORAGES,
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        },
    )
    harness.enable()
    yield
    harness.disable()
