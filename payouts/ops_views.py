"""Operations endpoints, outside the API: ``GET /healthz`` for probes and ``GET /metrics`` for
Prometheus. Plain Django views: no authentication, no session, nothing written."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from rest_framework import status

from payouts.health import dependency_health
from payouts.metrics import metrics_exposition


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when Postgres and Redis both answer, else 503; the body names each one's state."""
    checks = dependency_health()
    healthy = all(state == "ok" for state in checks.values())
    code = status.HTTP_200_OK if healthy else status.HTTP_503_SERVICE_UNAVAILABLE
    return JsonResponse(checks, status=code)


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    body, content_type = metrics_exposition()
    return HttpResponse(body, content_type=content_type)
