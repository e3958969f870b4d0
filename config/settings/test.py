"""pytest: the same settings as development, pointed at whatever the test fixtures start."""

from config.settings.local import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Test connections are closed per test; persistent connections only hide leaks here.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
