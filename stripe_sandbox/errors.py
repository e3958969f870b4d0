"""Stripe-shaped API errors.

stripe-python picks its exception class from the HTTP status first and the
error ``type``/``code`` second (see ``_api_requestor.specific_v1_api_error``),
so every error here carries both, plus the message text clients match on.
"""

from __future__ import annotations

from typing import Any

DOCS_URL = "https://stripe.com/docs/error-codes/"


class StripeApiError(Exception):
    """An error response the sandbox returns in Stripe's ``{"error": {...}}`` shape."""

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    def to_body(self, request_id: str | None = None) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.error_type, "message": self.message}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = DOCS_URL + self.code.replace("_", "-")
        if self.param:
            error["param"] = self.param
        if request_id and self.error_type == "invalid_request_error":
            error["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        return {"error": error}


def invalid_request(
    message: str, *, param: str | None = None, code: str | None = None, status: int = 400
) -> StripeApiError:
    return StripeApiError(status, "invalid_request_error", message, code=code, param=param)


def resource_missing(noun: str, object_id: str, *, param: str = "id", status: int = 404):
    return invalid_request(
        f"No such {noun}: '{object_id}'", param=param, code="resource_missing", status=status
    )


def unrecognized_url(method: str, path: str) -> StripeApiError:
    return invalid_request(
        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
        "or we can help at https://support.stripe.com/.",
        status=404,
    )


def authentication_failed(api_key: str | None) -> StripeApiError:
    # Real Stripe answers 401 with type invalid_request_error; stripe-python turns
    # any 401 into AuthenticationError regardless of the type.
    if not api_key:
        message = (
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, "
            "or we can help at https://support.stripe.com/."
        )
    else:
        masked = api_key[:8] + "*" * 4 + api_key[-4:] if len(api_key) > 12 else "****"
        message = f"Invalid API Key provided: {masked}"
    return StripeApiError(401, "invalid_request_error", message)


def api_error_500() -> StripeApiError:
    return StripeApiError(500, "api_error", "An unknown error occurred")


def rate_limited(reason: str | None = None) -> StripeApiError:
    """Stripe's 429; ``reason`` (``global-rate``, ``endpoint-rate``) goes in the
    ``Stripe-Rate-Limited-Reason`` header, as Stripe says which limiter refused."""
    return StripeApiError(
        429,
        "invalid_request_error",
        "Request rate limit exceeded. You can learn more about rate limits here "
        "https://stripe.com/docs/rate-limits.",
        code="rate_limit",
        headers={"Stripe-Rate-Limited-Reason": reason} if reason else None,
    )


def idempotency_mismatch(key: str) -> StripeApiError:
    return StripeApiError(
        400,
        "idempotency_error",
        "Keys for idempotent requests can only be used with the same parameters they were "
        f"first used with. Try using a key other than '{key}' if you meant to execute a "
        "different request.",
    )


def idempotency_in_use(key: str) -> StripeApiError:
    return StripeApiError(
        409,
        "idempotency_error",
        "There is currently another in-progress request using this Idempotent Key (that "
        "probably means you submitted twice, and the other request is still going through): "
        f"{key}. Please try again later.",
        code="idempotency_key_in_use",
    )


class ControlError(Exception):
    """A control-API request the sandbox refuses; answered as a ``sandbox_error``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def mask_api_key(api_key: str | None) -> str:
    """Stripe's way of quoting a key back: prefix, asterisks, the last four characters."""
    if not api_key or len(api_key) <= 12:
        return "****"
    return api_key[:8] + "*" * (len(api_key) - 12) + api_key[-4:]


def account_access_denied(account_id: str, api_key: str | None) -> StripeApiError:
    """What Stripe answers (403, code ``account_invalid``) once an account is out of reach."""
    return StripeApiError(
        403,
        "invalid_request_error",
        f"The provided key '{mask_api_key(api_key)}' does not have access to account "
        f"'{account_id}' (or that account does not exist). Application access may have been "
        "revoked.",
        code="account_invalid",
    )
