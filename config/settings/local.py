"""Settings for running the service on a developer's machine.

Development: DEBUG on, and with no Stripe key the service talks to the local Stripe sandbox
that ships with the project (``python -m stripe_sandbox``)."""

from config.settings.base import *  # noqa: F403
from config.settings.base import env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
# `make run`'s own commands (ensure_database, ensure_dev_staff, run_service).
INSTALLED_APPS = [*INSTALLED_APPS, "devtools"]  # noqa: F405
if not DEBUG:  # the sandbox image: no runserver to serve the admin's static files
    MIDDLEWARE = [MIDDLEWARE[0], WHITENOISE_MIDDLEWARE, *MIDDLEWARE[1:]]  # noqa: F405
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="local-development-only-not-a-secret")

SANDBOX_URL = env.str("STRIPE_SANDBOX_URL", default="http://127.0.0.1:12111")
# True when no real key is configured: `make run` then starts the sandbox at SANDBOX_URL and
# `make demo` drives it. The sandbox signs its webhooks with the first webhook secret below.
STRIPE_USES_LOCAL_SANDBOX = not STRIPE_SECRET_KEY  # noqa: F405
if STRIPE_USES_LOCAL_SANDBOX:
    STRIPE_SECRET_KEY = "sk_test_local_sandbox"  # one of PUBLIC_SANDBOX_SECRETS
    STRIPE_API_BASE = env.str("STRIPE_API_BASE", default=SANDBOX_URL)
if not STRIPE_PLATFORM_ACCOUNT_ID:  # noqa: F405
    STRIPE_PLATFORM_ACCOUNT_ID = "acct_sandboxplatform"  # the sandbox's platform account
if not STRIPE_WEBHOOK_SECRETS:  # noqa: F405
    STRIPE_WEBHOOK_SECRETS = ["whsec_local_sandbox"]
if not STRIPE_CONNECT_WEBHOOK_SECRETS:  # noqa: F405
    STRIPE_CONNECT_WEBHOOK_SECRETS = ["whsec_local_sandbox_connect"]
