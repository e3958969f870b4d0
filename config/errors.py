"""The project's one error vocabulary.

Services raise a ``DomainError`` subclass; each carries a stable ``code`` and the HTTP status an
interface should answer with. The DRF exception handler (``payouts.api.exception_handler``)
renders them as ``{"detail": …, "code": …}`` (plus the row concerned, when there is one) and the
admin's actions turn them into one message each (``admin_message``). Both apps raise them;
neither imports the other's interfaces to do so.
"""

import logging
from typing import Any, ClassVar

from django.contrib import messages

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


def unexpected_message(error: Exception, *, about: str) -> tuple[int, str]:
    """The admin message for an error no service meant to raise (a bug, a setting missing):
    the operator is told what failed instead of getting the server's error page; the traceback
    goes to the log."""
    logger.exception("admin action failed", extra={"about": about})
    return messages.ERROR, (
        f"{about}: failed unexpectedly ({type(error).__name__}: {error}); nothing more was "
        "tried. The log has the details; what Stripe answered, if it was reached, is on the row."
    )
