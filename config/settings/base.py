"""Settings common to every environment, read from the environment.

Settings shared by every environment; everything that varies comes from the environment
(django-environ). See ``.env.template`` for every variable and its meaning."""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from config.log_format import JSON_FORMATTER
from console.health import HEARTBEAT_INTERVAL
from payouts.conf import load_payouts_config

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# A developer's .env fills in what the process environment does not set; it never overrides.
if (BASE_DIR / ".env").is_file():
    env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    # The operator's console first, so its templates override the admin's; then
    # django.contrib.admin, whose site is the console's.
    "console",
    "console.apps.ConsoleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    # The staff API's bearer tokens (config/api.py).
    "rest_framework.authtoken",
    "drf_spectacular",
    # Swagger UI's files for /api/docs/, served from here instead of a CDN.
    "drf_spectacular_sidecar",
    "marketplace",
    # Four eyes on staff money actions; the book and payouts register theirs in it.
    "approvals",
    "ledger",
    "payouts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/payouts")
}
# Views that call Stripe must never run inside a request-wide transaction: a request-wide
# transaction would hold row locks for the whole Stripe call.
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)

# --- A read replica (optional): /metrics and the operator console read from it; claims, locks
# and every write stay on the primary (config/db_router.py). Tests use the primary under the
# replica's alias.
DATABASE_REPLICA_URL = env.str("DATABASE_REPLICA_URL", default="")
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = env.db("DATABASE_REPLICA_URL")
    DATABASES["replica"]["CONN_MAX_AGE"] = DATABASES["default"]["CONN_MAX_AGE"]
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
DATABASE_ROUTERS = ["config.db_router.ReplicaRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Every date-time shown with its seconds and time zone (config/formats/en/formats.py).
FORMAT_MODULE_PATH = "config.formats"

STATIC_URL = "static/"
# `manage.py collectstatic` fills it (the Docker image does); whitenoise serves it in production.
STATIC_ROOT = BASE_DIR / "staticfiles"
# Without DEBUG (production, or the sandbox image), the app serves the collected admin static
# files itself, right after SecurityMiddleware.
WHITENOISE_MIDDLEWARE = "whitenoise.middleware.WhiteNoiseMiddleware"

# Probes and scrapers speak plain HTTP inside the network, behind the TLS-terminating proxy.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
# /metrics answers staff, or a scraper sending `Authorization: Bearer <METRICS_TOKEN>`.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

REST_FRAMEWORK = {
    # A bearer token or the admin's session (with its CSRF check); never Basic (config/api.py).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "config.api.StaffTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON only: an HTML form (form-encoded, multipart) is what another site can make a
    # browser post.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # One error shape for every interface: {"detail", "code"} (config/errors.py).
    "EXCEPTION_HANDLER": "config.errors.exception_handler",
    # `?format=` is a parameter of ours (the seller statement's csv|json), not DRF's renderer
    # override, so an unknown value is a 400 that says so rather than a 404.
    "URL_FORMAT_OVERRIDE": None,
}

# OpenAPI 3 at /api/schema/, from the `@extend_schema` annotations on the views.
SPECTACULAR_SETTINGS = {
    "TITLE": "Seller payouts",
    "DESCRIPTION": (
        "Stripe webhook intake and the staff API of the marketplace seller-payouts service."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # /api/docs/ serves Swagger UI from drf-spectacular-sidecar's static files: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "TransferStatusEnum": "payouts.transfer.transitions.TransferStatus",
        "WebhookOutcomeEnum": "payouts.models.WebhookOutcome",
        "PayoutStatusEnum": "payouts.models.PayoutStatus",
        "RefundStatusEnum": "marketplace.models.RefundStatus",
        "DisputeStatusEnum": "marketplace.models.DisputeStatus",
    },
}

# --- Celery -------------------------------------------------------------------------------
DEVELOPMENT_BROKER_URL = "redis://127.0.0.1:6379/0"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=DEVELOPMENT_BROKER_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# Celery logs through LOGGING below (one JSON line per record) instead of its own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Stripe -------------------------------------------------------------------------------
# The key and webhook secrets the project's own sandbox setups use. They are public (in this
# repository), so production refuses them.
PUBLIC_SANDBOX_SECRETS = frozenset(
    {
        "sk_test_local_sandbox",
        "whsec_local_sandbox",
        "whsec_local_sandbox_connect",
        "sk_test_compose_sandbox",
        "whsec_compose_sandbox",
        "whsec_compose_sandbox_connect",
    }
)
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="https://api.stripe.com")
# The platform's own Stripe account (acct_…): the destination of account debits, which take a
# seller's old debt from their connected account. Empty: no account debit is ever made.
STRIPE_PLATFORM_ACCOUNT_ID = env.str("STRIPE_PLATFORM_ACCOUNT_ID", default="")
# Several comma-separated secrets are accepted while an endpoint secret is being rotated.
STRIPE_WEBHOOK_SECRETS = [s for s in env.list("STRIPE_WEBHOOK_SECRET", default=[]) if s]
# The Connect endpoint's own secret(s): connected accounts' events are signed with it, never with
# the platform endpoint's. Unset: the Connect endpoint refuses everything.
STRIPE_CONNECT_WEBHOOK_SECRETS = [
    s for s in env.list("STRIPE_CONNECT_WEBHOOK_SECRET", default=[]) if s
]
STRIPE_RATE_LIMIT_REDIS_URL = env.str("STRIPE_RATE_LIMIT_REDIS_URL", default=CELERY_BROKER_URL)

# --- The payouts knobs: retry policies, fee, Stripe limits, worker concurrency. Parsed once,
# typed and range-checked, into one object (payouts/conf.py). ---------------------------------
PAYOUTS = load_payouts_config(env)

# Beat runs each worker every interval; `expires` ≈ the interval so a backlog of ticks (beat
# running while workers were down) never piles up into a burst.
CELERY_BEAT_SCHEDULE = {
    "process-reversals": {
        "task": "payouts.tasks.reversals_process_due",
        "schedule": PAYOUTS.reversal.check_interval.total_seconds(),
        "options": {"expires": PAYOUTS.reversal.check_interval.total_seconds()},
    },
    # Refund shares and Stripe against our rows: daily what changed in the last day, weekly every
    # refunded order's shares and the week at Stripe.
    "reconcile-transfers": {
        "task": "payouts.tasks.reconciliation_run_daily",
        "schedule": 24 * 60 * 60,
        "options": {"expires": 60 * 60},
    },
    "reconcile-transfers-full": {
        "task": "payouts.tasks.reconciliation_run_weekly",
        "schedule": 7 * 24 * 60 * 60,
        "options": {"expires": 6 * 60 * 60},
    },
    # Stored Stripe events whose processing never ran (the process died after storing).
    "process-stranded-webhook-events": {
        "task": "payouts.tasks.webhook_events_process_stranded",
        "schedule": 60,
        "options": {"expires": 60},
    },
    # The book against itself, the transfer rows and Stripe (breaks stored for the admin): daily
    # what changed since the last clean run, weekly everything.
    "check-ledger": {
        "task": "payouts.tasks.ledger_check_daily",
        "schedule": 24 * 60 * 60,
        "options": {"expires": 60 * 60},
    },
    "check-ledger-full": {
        "task": "payouts.tasks.ledger_check_weekly",
        "schedule": 7 * 24 * 60 * 60,
        "options": {"expires": 6 * 60 * 60},
    },
    # Sellers' debts old enough, taken from their connected accounts when their policy allows.
    "debit-debts": {
        "task": "payouts.tasks.debts_debit_due",
        "schedule": PAYOUTS.debt_debit_retry.check_interval.total_seconds(),
        "options": {"expires": PAYOUTS.debt_debit_retry.check_interval.total_seconds()},
    },
    # Sellers' rolling reserves whose days have passed: one transfer per seller, currency and day.
    "release-reserves": {
        "task": "payouts.tasks.reserves_release_due",
        "schedule": 15 * 60,
        "options": {"expires": 15 * 60},
    },
    # Sellers' bank payouts paid but never read at Stripe (their wake-up was lost).
    "reconcile-unread-payouts": {
        "task": "payouts.tasks.payouts_reconcile_unread",
        "schedule": 15 * 60,
        "options": {"expires": 15 * 60},
    },
    # Fold the /metrics counters' rows (docs/scale.md).
    "compact-transfer-counts": {
        "task": "payouts.tasks.transfer_counts_compact",
        "schedule": 60,
        "options": {"expires": 60},
    },
    # Processed webhook events older than WEBHOOK_RETENTION.
    "expire-webhook-events": {
        "task": "payouts.tasks.webhook_events_expire",
        "schedule": 24 * 60 * 60,
        "options": {"expires": 60 * 60},
    },
    # Orders whose hold (TRANSFER_HOLD) has ended: their sellers are paid.
    "release-held-transfers": {
        "task": "payouts.tasks.holds_release_due",
        "schedule": PAYOUTS.transfer_retry.check_interval.total_seconds(),
        "options": {"expires": PAYOUTS.transfer_retry.check_interval.total_seconds()},
    },
    # Approval requests nobody decided in time, and approved actions whose process died.
    "sweep-approvals": {
        "task": "approvals.tasks.approvals_sweep",
        "schedule": 60,
        "options": {"expires": 60},
    },
    "settle-staff-refunds": {
        "task": "payouts.tasks.staff_refunds_settle",
        "schedule": 10 * 60,
        "options": {"expires": 10 * 60},
    },
    "retry-failed-transfers": {
        "task": "payouts.tasks.transfers_send_due",
        "schedule": PAYOUTS.transfer_retry.check_interval.total_seconds(),
        "options": {"expires": PAYOUTS.transfer_retry.check_interval.total_seconds()},
    },
    # Beat's heartbeat: a worker stamps it in Redis and /healthz reads how old it is.
    "heartbeat": {
        "task": "console.tasks.heartbeat_stamp",
        "schedule": HEARTBEAT_INTERVAL.total_seconds(),
        "options": {"expires": HEARTBEAT_INTERVAL.total_seconds()},
    },
}

# --- Logging: one JSON object per line on stderr, with every `extra` field the code passes
# (transfer_id, order_id, stripe_operation, outcome, …). LOG_FORMAT=text for a human terminal.
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOG_FORMAT = env.str("LOG_FORMAT", default="json").strip().lower()
if LOG_FORMAT not in {"json", "text"}:
    raise ImproperlyConfigured(f"LOG_FORMAT: {LOG_FORMAT!r} is not one of json, text")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": JSON_FORMATTER,
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "filters": {
        "quiet_ticks": {
            "()": "config.log_format.QuietTicks",
            "tasks": [entry["task"] for entry in CELERY_BEAT_SCHEDULE.values()],
            "routine": ["console.tasks.heartbeat_stamp"],
        }
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["quiet_ticks"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # Django gives these loggers handlers of their own (plain text, DEBUG only); route them
    # through the one console handler so that no record is printed twice or in another format.
    "loggers": {
        **{
            name: {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False}
            for name in ("django", "django.server")
        },
        # stripe-python logs every request at INFO; the gateway logs each call itself, with
        # our fields (stripe_operation, outcome, duration_ms).
        "stripe": {"level": "WARNING"},
    },
}
