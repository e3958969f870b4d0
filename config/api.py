"""What every staff API view shares: its authentication, permission classes, and the OpenAPI
descriptions of its errors. Errors themselves are rendered by ``payouts.api.exception_handler``
in one shape, ``{"detail", "code"}``."""

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers
from rest_framework.authentication import BasicAuthentication, SessionAuthentication
from rest_framework.permissions import BasePermission


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
