"""What every HTTP interface shares: the error rendering and the staff policies.

``exception_handler`` is DRF's ``EXCEPTION_HANDLER``: it renders every ``DomainError`` (see
``config/errors.py``) and every DRF ``APIException`` in one shape, ``{"detail", "code"}``, plus
the row concerned under its own name when the error carries one (a transfer that stayed
``failed``, the refund Stripe refused).
"""

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers
from rest_framework.authentication import BasicAuthentication, SessionAuthentication
from rest_framework.exceptions import APIException
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from config.errors import DomainError
from marketplace.models import Refund
from payouts.models import SellerTransfer
from payouts.serializers import RefundSerializer, SellerTransferSerializer

# How a row carried by an error is shown: under which key, with which serializer.
_SUBJECTS = {
    SellerTransfer: ("transfer", SellerTransferSerializer),
    Refund: ("refund", RefundSerializer),
}


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


def staff_permission(codename: str) -> type[BasePermission]:
    """A permission class that needs the Django permission ``codename`` ("app.codename")."""

    class HasPermission(BasePermission):
        message = f"This needs the {codename} permission."

        def has_permission(self, request, view):
            return request.user.has_perm(codename)

    HasPermission.__name__ = f"Has_{codename.replace('.', '_')}"
    return HasPermission


# The staff API authenticates with Basic first (its WWW-Authenticate challenge turns a missing
# login into a 401, not a 403), then the admin's session.
STAFF_AUTHENTICATION = [BasicAuthentication, SessionAuthentication]


ERROR = inline_serializer(
    "Error",
    fields={
        "detail": serializers.CharField(help_text="What went wrong."),
        "code": serializers.CharField(help_text="A stable code for the kind of error."),
    },
)


def error_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(ERROR, description=description)


def error_with(name: str, field: str, serializer: serializers.Serializer, description: str):
    """An error response that also carries the row concerned (``field``)."""
    return OpenApiResponse(
        inline_serializer(
            name,
            fields={
                "detail": serializers.CharField(help_text="What went wrong, as recorded."),
                "code": serializers.CharField(help_text="A stable code for the kind of error."),
                field: serializer,
            },
        ),
        description=description,
    )


STAFF_ERRORS = {
    401: error_response("No credentials."),
    403: error_response("Not staff, or missing the permission."),
    404: error_response("No such row."),
}
