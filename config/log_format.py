"""JSON log lines for the service and for gunicorn.

The one JSON log line format, shared by Django's ``LOGGING`` and gunicorn's own logs, so
that one log pipeline parses every line the service prints."""

from pythonjsonlogger.core import RESERVED_ATTRS

JSON_FORMATTER = {
    "()": "pythonjsonlogger.json.JsonFormatter",
    "fmt": "%(levelname)s %(name)s %(process)d %(message)s",
    "rename_fields": {"levelname": "level", "name": "logger"},
    "timestamp": "time",  # ISO 8601, UTC
    # Django's request logs carry the request (or its socket) itself: noise in a line.
    "reserved_attrs": [*RESERVED_ATTRS, "request", "server_time"],
}
