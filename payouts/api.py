"""DRF's ``EXCEPTION_HANDLER``: every ``DomainError`` (see ``config/errors.py``) and every DRF
``APIException`` rendered in one shape, ``{"detail", "code"}``, plus the row concerned under its
own name when the error carries one (a transfer that stayed ``failed``, the refund Stripe
refused)."""

from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from config.errors import DomainError
from marketplace.models import Refund
from payouts.http.serializers import RefundSerializer, SellerTransferSerializer
from payouts.models import SellerTransfer

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
