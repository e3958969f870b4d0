"""Defaults of the staff API views: authentication, permissions, error descriptions.

What every staff API view shares: its authentication, permission classes, and the OpenAPI
descriptions of its errors. Errors themselves are rendered by ``config.errors.exception_handler``
in one shape, ``{"detail", "code"}``."""

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import UnsupportedMediaType
from rest_framework.permissions import SAFE_METHODS, BasePermission


def staff_permission(codename: str) -> type[BasePermission]:
    """A permission class that needs the Django permission ``codename`` ("app.codename")."""

    class HasPermission(BasePermission):
        message = f"This needs the {codename} permission."

        def has_permission(self, request, view):
            return request.user.has_perm(codename)

    HasPermission.__name__ = f"Has_{codename.replace('.', '_')}"
    return HasPermission


class StaffTokenAuthentication(TokenAuthentication):
    """Bearer-token authentication for the staff API.

    Clients send ``Authorization: Bearer <token>``: a staff user's token, made on the admin's Tokens
    page or with ``manage.py drf_create_token <username>``. A browser never attaches it to a request
    on its own, so another site cannot make one send it."""

    keyword = "Bearer"


# The staff API takes a bearer token, or the admin's session (whose unsafe requests DRF checks
# for the CSRF token). Never Basic: its 401 challenge makes a browser ask for the password and
# then send it with every request to the site, another site's form posts included, where no
# CSRF check applies. The token comes first so a missing login is a 401 challenging for
# ``Bearer`` (no browser prompts for it), not a 403.
STAFF_AUTHENTICATION = [StaffTokenAuthentication, SessionAuthentication]


class JSONBodyOnly(BasePermission):
    """Refuse unsafe requests whose body is not JSON (415).

    Also on the endpoints that read no body: an HTML form, which another site can make a browser
    post, cannot send JSON."""

    def has_permission(self, request, view):
        if request.method in SAFE_METHODS or not _has_body(request):
            return True
        if request.content_type.split(";")[0].strip().lower() != "application/json":
            raise UnsupportedMediaType(request.content_type)
        return True


def _has_body(request) -> bool:
    length = request.META.get("CONTENT_LENGTH") or "0"
    return "HTTP_TRANSFER_ENCODING" in request.META or (length.isdigit() and int(length) > 0)


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
