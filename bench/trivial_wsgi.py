"""The service's WSGI application plus two constant JSON answers, so that ``webhook_intake.py``
compares the webhook endpoint with trivial requests served by the same gunicorn workers.

* ``GET /bench/trivial`` is answered here, before Django: the floor of the server itself.
* ``GET /bench/trivial-django`` goes through Django's whole request path (every middleware of
  the settings) to a view that returns constant JSON: the floor of any Django view.
* Everything else is the application, unchanged.

The project's URLs stay untouched: the trivial view's route lives in this module, which is handed
to Django as the request's own URLconf.
"""

import os

from django.core.handlers.wsgi import WSGIHandler
from django.http import JsonResponse
from django.urls import path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

from config.wsgi import application as service_application  # noqa: E402 - after the env default

TRIVIAL_BODY = b'{"ok": true}'
TRIVIAL_HEADERS = [
    ("Content-Type", "application/json"),
    ("Content-Length", str(len(TRIVIAL_BODY))),
]


def trivial_view(request):
    return JsonResponse({"ok": True})


urlpatterns = [path("bench/trivial-django", trivial_view)]


class BenchHandler(WSGIHandler):
    def get_response(self, request):
        if request.path_info == "/bench/trivial-django":
            request.urlconf = __name__  # this module's urlpatterns, for this request only
        return super().get_response(request)


django_with_trivial_view = BenchHandler()


def application(environ, start_response):
    path_info = environ.get("PATH_INFO")
    if path_info == "/bench/trivial":
        start_response("200 OK", TRIVIAL_HEADERS)
        return [TRIVIAL_BODY]
    if path_info == "/bench/trivial-django":
        return django_with_trivial_view(environ, start_response)
    return service_application(environ, start_response)
