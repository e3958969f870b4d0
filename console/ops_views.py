"""Health and metrics endpoints for probes and Prometheus.

Operations endpoints, outside the API: ``GET /healthz`` for probes (public: it says only
"ok", "unavailable" or "unknown" per dependency) and ``GET /metrics`` for Prometheus (staff, or a
scraper with ``Authorization: Bearer <METRICS_TOKEN>``). Nothing here writes."""

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from rest_framework import status

from console.health import dependency_health, serving_dependencies_up
from console.metrics import metrics_exposition


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """Health probe: the state of each dependency the service needs.

    200 when Postgres and Redis both answer, else 503; the body names the state of each,
    and of the Celery workers and beat (alert on those from the body)."""
    checks = dependency_health()
    healthy = serving_dependencies_up(checks)
    code = status.HTTP_200_OK if healthy else status.HTTP_503_SERVICE_UNAVAILABLE
    response = JsonResponse(checks, status=code)
    # The checks logged one warning per dependency down; Django's own error line for a 503
    # would repeat it on every probe.
    response._has_been_logged = True
    return response


def _may_scrape(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    scheme, _, credentials = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if token and scheme.lower() == "bearer":
        return hmac.compare_digest(credentials.strip().encode(), token.encode())
    user = getattr(request, "user", None)
    return bool(user and user.is_authenticated and user.is_staff)


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    if not _may_scrape(request):
        response = JsonResponse(
            {
                "detail": "Metrics need a staff login or `Authorization: Bearer <METRICS_TOKEN>`.",
                "code": "not_authenticated",
            },
            status=status.HTTP_401_UNAUTHORIZED,
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = metrics_exposition()
    return HttpResponse(body, content_type=content_type)
