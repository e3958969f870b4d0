"""The project's one error vocabulary.

Services raise a ``DomainError`` subclass; each carries a stable ``code`` and the HTTP status an
interface should answer with. DRF's ``EXCEPTION_HANDLER`` (``exception_handler`` below) renders
them, and every DRF ``APIException``, in one shape, ``{"detail": …, "code": …}``, plus the row
concerned under its own name when the error carries one (a transfer that stayed ``failed``, the
refund Stripe refused); the admin's actions turn them into one message each
(``admin_message``). Apps raise them; this module imports no app: an app says how its rows are
shown with an error through ``show_with_errors``.
"""

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from django.contrib import messages
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class DomainError(Exception):
    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 400

    def __init__(self, message: str, *, subject: Any = None):
        super().__init__(message)
        self.message = message
        # The row the error is about (a transfer, a refund), shown with the error when useful.
        self.subject = subject


class InvalidInput(DomainError):
    code = "invalid"
    http_status = 400


class NotFound(DomainError):
    code = "not_found"
    http_status = 404


class Conflict(DomainError):
    """The request is well-formed but the row's state does not allow it."""

    code = "conflict"
    http_status = 409


class StripeRefused(DomainError):
    """Stripe answered with an error (or not at all); what it said is recorded on the row."""

    code = "stripe_error"
    http_status = 502


def admin_message(error: DomainError, *, about: str) -> tuple[int, str]:
    """The admin message level and text for ``error`` raised while acting on ``about``."""
    level = messages.ERROR if error.http_status >= 500 else messages.WARNING
    return level, f"{about}: {error.message}"


# How a row carried by an error is shown: its model -> (the key in the body, its serializer).
_SUBJECTS: dict[type, tuple[str, Callable[[Any], Any]]] = {}


def show_with_errors(model: type, *, name: str, serializer: Callable[[Any], Any]) -> None:
    """Show a ``model`` row carried by an error under ``name``, as ``serializer`` renders it."""
    _SUBJECTS[model] = (name, serializer)


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        body = {"detail": exc.message, "code": exc.code}
        if type(exc.subject) in _SUBJECTS:
            name, serializer = _SUBJECTS[type(exc.subject)]
            body[name] = serializer(exc.subject).data
        return Response(body, status=exc.http_status)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, APIException) and isinstance(response.data, dict):
        codes = exc.get_codes()
        response.data.setdefault("code", codes if isinstance(codes, str) else "invalid")
    return response


def unexpected_message(error: Exception, *, about: str) -> tuple[int, str]:
    """The admin message for an unexpected error, with the traceback logged.

    An error no service meant to raise (a bug, a setting missing): the operator is told what failed
    instead of getting the server's error page; the traceback goes to the log."""
    logger.exception("admin action failed", extra={"about": about})
    return messages.ERROR, (
        f"{about}: failed unexpectedly ({type(error).__name__}: {error}); nothing more was "
        "tried. The log has the details; what Stripe answered, if it was reached, is on the row."
    )
