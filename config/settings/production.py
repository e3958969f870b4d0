"""Production: every secret is required and a missing one stops start-up, naming it."""

from django.core.exceptions import ImproperlyConfigured

from config.settings.base import *  # noqa: F403


def _require(name: str, value: object) -> None:
    if not value:
        raise ImproperlyConfigured(f"{name} must be set in production")


def _refuse_public(name: str, values: list[str]) -> None:
    if PUBLIC_SANDBOX_SECRETS.intersection(values):  # noqa: F405
        raise ImproperlyConfigured(
            f"{name} is one of the sandbox's public values; set the real one in production"
        )


_require("DJANGO_SECRET_KEY", SECRET_KEY)  # noqa: F405
_require("STRIPE_SECRET_KEY", STRIPE_SECRET_KEY)  # noqa: F405
_require("STRIPE_WEBHOOK_SECRET", STRIPE_WEBHOOK_SECRETS)  # noqa: F405
_refuse_public("STRIPE_SECRET_KEY", [STRIPE_SECRET_KEY])  # noqa: F405
_refuse_public("STRIPE_WEBHOOK_SECRET", STRIPE_WEBHOOK_SECRETS)  # noqa: F405
_refuse_public("STRIPE_CONNECT_WEBHOOK_SECRET", STRIPE_CONNECT_WEBHOOK_SECRETS)  # noqa: F405
if DEBUG:  # noqa: F405
    raise ImproperlyConfigured("DJANGO_DEBUG must be false in production")
if METRICS_TOKEN and len(METRICS_TOKEN) < 32:  # noqa: F405
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 32 characters")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)  # noqa: F405
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)  # noqa: F405
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True

# The admin's static files, collected into STATIC_ROOT when the image is built, are served by
# whitenoise with far-future caching (hashed names).
MIDDLEWARE = [MIDDLEWARE[0], WHITENOISE_MIDDLEWARE, *MIDDLEWARE[1:]]  # noqa: F405
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
