"""JSON log lines for the service and for gunicorn.

The one JSON log line format, shared by Django's ``LOGGING`` and gunicorn's own logs, so
that one log pipeline parses every line the service prints."""

import logging
import re

from pythonjsonlogger.core import RESERVED_ATTRS

JSON_FORMATTER = {
    "()": "pythonjsonlogger.json.JsonFormatter",
    "fmt": "%(levelname)s %(name)s %(process)d %(message)s",
    "rename_fields": {"levelname": "level", "name": "logger"},
    "timestamp": "time",  # ISO 8601, UTC
    # Django's request logs carry the request (or its socket) itself: noise in a line.
    "reserved_attrs": [*RESERVED_ATTRS, "request", "server_time"],
}


# Any count other than zero in a task's printed result ("{'claimed': 0, 'reversed': 2}").
_NONZERO = re.compile(r"[1-9]")


class QuietTicks(logging.Filter):
    """Log beat's routine ticks at DEBUG, so an idle service stays quiet.

    The routine ticks are beat sending a scheduled task, a worker receiving one, and its success
    when it found nothing to do (every count in its result 0; the heartbeat always). Idle, every
    sweep printed three INFO lines, 130 a minute under ``make run``; a sweep that did something
    still says so at INFO, and any failure is a warning or an error as before. ``tasks``: the
    scheduled tasks' names (the beat schedule)."""

    def __init__(self, tasks=(), routine=()):
        super().__init__()
        self.tasks = frozenset(tasks)
        self.routine = frozenset(routine)  # tasks whose every run is a tick (the heartbeat)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not self._is_tick(record):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)

    def _is_tick(self, record: logging.LogRecord) -> bool:
        if record.name == "celery.beat":
            return record.getMessage().startswith("Scheduler: Sending due task")
        data = getattr(record, "data", None)
        if not isinstance(data, dict) or data.get("name") not in self.tasks:
            return False
        if record.name == "celery.worker.strategy":
            return True  # "Received task": whether it does anything shows when it ends
        if record.name == "celery.app.trace" and "return_value" in data:
            if data["name"] in self.routine:
                return True
            return not _NONZERO.search(str(data["return_value"]))
        return False
