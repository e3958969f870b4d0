"""HTTP interfaces: the Stripe webhook endpoint and the staff API. Thin: parse, call one service."""

import json
import logging

from django.conf import settings
from rest_framework import status
from rest_framework.authentication import BasicAuthentication, SessionAuthentication
from rest_framework.exceptions import APIException, NotFound
from rest_framework.permissions import AllowAny, BasePermission, IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace.models import Order
from marketplace.services import RefundRefused
from payouts.models import SellerTransfer, WebhookOutcome
from payouts.serializers import RefundRequestSerializer, RefundSerializer, SellerTransferSerializer
from payouts.services.refunds import StaffRefundFailed, order_refund_by_staff
from payouts.services.transfers import (
    StaffRetryFailed,
    TransferNotRetryable,
    transfer_retry_by_staff,
)
from payouts.services.webhooks import webhook_event_ingest
from payouts.webhook_signature import signature_is_valid

logger = logging.getLogger(__name__)

MAX_WEBHOOK_BODY = 256 * 1024


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Webhook body over 256 KiB."
    default_code = "payload_too_large"


class BadWebhook(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "Bad webhook."
    default_code = "bad_webhook"


class EventNotApplicable(APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "The event was stored but cannot be applied."
    default_code = "event_not_applicable"


class TransitionConflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The transfer is not in a state that allows this."
    default_code = "transition_conflict"


class StripeFailed(APIException):
    status_code = status.HTTP_502_BAD_GATEWAY
    default_detail = "Stripe refused the request."
    default_code = "stripe_error"


class StripeWebhookView(APIView):
    """``POST /webhooks/stripe/``: no auth (the signature is the auth), CSRF-exempt (APIView
    without session authentication), never inside a request-wide transaction."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes: list = []

    def post(self, request):
        declared = request.META.get("CONTENT_LENGTH") or "0"
        if declared.isdigit() and int(declared) > MAX_WEBHOOK_BODY:
            raise PayloadTooLarge()
        raw = request.body  # raw bytes, read before anything parses them
        if len(raw) > MAX_WEBHOOK_BODY:
            raise PayloadTooLarge()
        header = request.META.get("HTTP_STRIPE_SIGNATURE")
        if not signature_is_valid(raw, header, settings.STRIPE_WEBHOOK_SECRETS):
            logger.warning("webhook refused: bad or missing Stripe-Signature")
            raise BadWebhook("Missing or invalid Stripe-Signature.")
        try:
            payload = json.loads(raw)
        except ValueError:
            raise BadWebhook("Body is not JSON.") from None
        if not _is_stripe_event(payload):
            raise BadWebhook("Body is not a Stripe event (id, type, data.object).")
        event = webhook_event_ingest(payload=payload)
        if event.outcome == WebhookOutcome.FAILED:
            raise EventNotApplicable(event.error)
        return Response({"id": event.stripe_event_id, "outcome": event.outcome})


def _is_stripe_event(payload: object) -> bool:
    if not isinstance(payload, dict):
        return False
    event_id, event_type, data = payload.get("id"), payload.get("type"), payload.get("data")
    return (
        isinstance(event_id, str)
        and 0 < len(event_id) <= 255
        and isinstance(event_type, str)
        and 0 < len(event_type) <= 255
        and isinstance(data, dict)
        and isinstance(data.get("object"), dict)
    )


class CanRetryTransfers(BasePermission):
    message = "Retrying transfers needs the payouts.retry_sellertransfer permission."

    def has_permission(self, request, view):
        return request.user.has_perm("payouts.retry_sellertransfer")


class TransferRetryView(APIView):
    """``POST /api/admin/transfers/<id>/retry/``: retry one ``failed`` transfer now."""

    # Basic first: its WWW-Authenticate challenge turns a missing login into a 401, not a 403.
    authentication_classes = [BasicAuthentication, SessionAuthentication]
    permission_classes = [IsAdminUser, CanRetryTransfers]

    def post(self, request, pk: int):
        try:
            transfer = transfer_retry_by_staff(transfer_id=pk, user=request.user)
        except SellerTransfer.DoesNotExist:
            raise NotFound(f"No seller transfer {pk}.") from None
        except TransferNotRetryable as exc:
            raise TransitionConflict(str(exc)) from None
        except StaffRetryFailed as exc:
            return Response(
                {
                    "detail": exc.transfer.error_message,
                    "code": StripeFailed.default_code,
                    "transfer": SellerTransferSerializer(exc.transfer).data,
                },
                status=StripeFailed.status_code,
            )
        return Response(SellerTransferSerializer(transfer).data)


class CanRefundOrders(BasePermission):
    message = "Refunding orders needs the marketplace.refund_order permission."

    def has_permission(self, request, view):
        return request.user.has_perm("marketplace.refund_order")


class OrderRefundView(APIView):
    """``POST /api/admin/orders/<id>/refund/`` with optional ``{"amount": cents}`` (full when
    omitted): creates the refund at Stripe; its webhook completes it (202)."""

    authentication_classes = [BasicAuthentication, SessionAuthentication]
    permission_classes = [IsAdminUser, CanRefundOrders]

    def post(self, request, pk: int):
        body = RefundRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            refund = order_refund_by_staff(order_id=pk, amount=body.validated_data.get("amount"))
        except Order.DoesNotExist:
            raise NotFound(f"No order {pk}.") from None
        except RefundRefused as exc:
            raise BadRefund(str(exc)) from None
        except StaffRefundFailed as exc:
            return Response(
                {
                    "detail": exc.error.describe(),
                    "code": StripeFailed.default_code,
                    "refund": RefundSerializer(exc.refund).data,
                },
                status=StripeFailed.status_code,
            )
        return Response(RefundSerializer(refund).data, status=status.HTTP_202_ACCEPTED)


class BadRefund(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "This refund cannot be made."
    default_code = "bad_refund"
