"""The Stripe webhook endpoints and the staff API of the payouts app.

HTTP interfaces: the Stripe webhook endpoint and the staff API. Each is parse → call one
service → serialize; errors are rendered by ``config.errors.exception_handler``."""

import csv
import io
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from datetime import time as day_start

from django.conf import settings
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from approvals.services import Outcome, staff_action_request
from approvals.views import WAITING, waiting_response
from config.api import (
    STAFF_AUTHENTICATION,
    STAFF_ERRORS,
    JSONBodyOnly,
    error_response,
    error_with,
    staff_permission,
)
from config.errors import InvalidInput
from marketplace.models import Refund
from payouts.audit import COLUMNS, AuditRecord, audit_records
from payouts.http.serializers import (
    RefundRequestSerializer,
    RefundSerializer,
    ReleaseRequestSerializer,
    RequeueRequestSerializer,
    ResendRequestSerializer,
    ReserveReleaseSerializer,
    SellerTransferSerializer,
)
from payouts.models import ReserveRelease, SellerTransfer, WebhookOutcome
from payouts.services.transfers import transfer_retry_by_staff
from payouts.services.webhooks import webhook_event_ingest
from payouts.stripe_api.webhook_signature import signature_is_valid

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


class StripeWebhookView(APIView):
    """``POST /webhooks/stripe/``: the platform's own Stripe events, into the webhook inbox.

    No auth (the signature is the auth), CSRF-exempt (APIView without session authentication),
    never inside a request-wide transaction."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes: list = []

    @extend_schema(
        operation_id="stripe_webhook_receive",
        summary="Receive a Stripe event",
        description=(
            "Called by Stripe, authenticated by the `Stripe-Signature` header over the raw body "
            "(300 s tolerance). The event is stored in the inbox once per id; a duplicate "
            "delivery answers 200 with no second effect, and an unknown type is stored as "
            "`ignored`."
        ),
        tags=["webhooks"],
        auth=[],
        parameters=[
            OpenApiParameter(
                "Stripe-Signature",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=True,
                description="`t=<unix time>,v1=<HMAC-SHA256 of t.body>`.",
            )
        ],
        request={"application/json": OpenApiTypes.OBJECT},
        responses={
            200: inline_serializer(
                "WebhookAccepted",
                fields={
                    "id": serializers.CharField(help_text="The Stripe event id."),
                    "outcome": serializers.ChoiceField(choices=WebhookOutcome.choices),
                },
            ),
            400: error_response("Bad or missing signature, or not a Stripe event."),
            413: error_response("Body over 256 KiB."),
            422: error_response("Stored, but it cannot be applied (kept for a replay)."),
        },
    )
    def post(self, request):
        return _receive(request, connect=False)


class ConnectWebhookView(APIView):
    """``POST /webhooks/stripe/connect/``: the connected accounts' events, into the inbox.

    Those are ``account.updated``, ``account.application.deauthorized`` and ``payout.*``,
    signed with the Connect endpoint's own secret."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes: list = []

    @extend_schema(
        operation_id="stripe_connect_webhook_receive",
        summary="Receive a Stripe Connect event (connected accounts)",
        description=(
            "Signed with `STRIPE_CONNECT_WEBHOOK_SECRET`; a platform-signed event is refused. "
            "Stored in the same inbox as the platform's events, with the event's `account`."
        ),
        tags=["webhooks"],
        auth=[],
        request={"application/json": OpenApiTypes.OBJECT},
        responses={
            200: OpenApiTypes.OBJECT,
            400: error_response("Bad or missing signature, or not a Stripe event."),
            413: error_response("Body over 256 KiB."),
            422: error_response("Stored, but it cannot be applied (kept for a replay)."),
        },
    )
    def post(self, request):
        return _receive(request, connect=True)


def _receive(request, *, connect: bool) -> Response:
    secrets = (
        settings.STRIPE_CONNECT_WEBHOOK_SECRETS if connect else settings.STRIPE_WEBHOOK_SECRETS
    )
    payload = _verified_event(request, secrets, connect=connect)
    event = webhook_event_ingest(payload=payload, connect=connect)
    if event.outcome == WebhookOutcome.FAILED:
        raise EventNotApplicable(event.error)
    return Response({"id": event.stripe_event_id, "outcome": event.outcome})


def _verified_event(request, secrets: list[str], *, connect: bool) -> dict:
    """The event in the body, once its size, signature and shape are checked."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > MAX_WEBHOOK_BODY:
        raise PayloadTooLarge()
    raw = request.body  # raw bytes, read before anything parses them
    if len(raw) > MAX_WEBHOOK_BODY:
        raise PayloadTooLarge()
    header = request.META.get("HTTP_STRIPE_SIGNATURE")
    if not signature_is_valid(raw, header, secrets):
        logger.warning("webhook refused: bad or missing Stripe-Signature")
        raise BadWebhook("Missing or invalid Stripe-Signature.")
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadWebhook("Body is not JSON.") from None
    problem = storable_json_problem(payload)
    if problem:
        raise BadWebhook(f"Body cannot be stored: {problem}.")
    if not _is_stripe_event(payload):
        raise BadWebhook("Body is not a Stripe event (id, type, data.object).")
    if bool(payload.get("account")) != connect:
        where = "the Connect endpoint" if connect else "the platform endpoint"
        raise BadWebhook(
            f"Not an event for {where} (a connected account's events carry `account`)."
        )
    if not _created_is_plausible(payload.get("created")):
        raise BadWebhook("The event's `created` is not a Unix time up to now.")
    return payload


# Stripe's events are a few levels deep; thousands of levels are an attack on the parser.
MAX_JSON_DEPTH = 64
# Clocks disagree a little; an event "created" far in the future was not made by Stripe.
CLOCK_SKEW_SECONDS = 600


def storable_json_problem(value: object) -> str | None:
    """Why a parsed JSON value cannot be stored in ``jsonb``, if it cannot.

    Why a parsed JSON value cannot be stored as PostgreSQL ``jsonb`` (which refuses NUL
    characters and text that is not UTF-8, such as lone surrogates), or is nested too deep;
    ``None`` when it can be. Iterative, so depth cannot exhaust the stack."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            return f"nested deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(item, dict):
            pending.extend((key, depth) for key in item)
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, str) and ("\0" in item or not _is_utf8(item)):
            return "a string holds a NUL character or is not valid UTF-8"
    return None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _created_is_plausible(created: object) -> bool:
    if created is None:
        return True
    if isinstance(created, bool) or not isinstance(created, int):
        return False
    return 0 < created <= time.time() + CLOCK_SKEW_SECONDS


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


class TransferRetryView(APIView):
    """``POST /api/admin/transfers/<id>/retry/``: retry one ``failed`` transfer now."""

    authentication_classes = STAFF_AUTHENTICATION
    permission_classes = [
        IsAdminUser,
        staff_permission("payouts.retry_sellertransfer"),
        JSONBodyOnly,
    ]

    @extend_schema(
        operation_id="transfer_retry",
        summary="Retry a failed seller transfer now",
        description=(
            "Only for `failed` transfers; needs staff status and the "
            "`payouts.retry_sellertransfer` permission."
        ),
        tags=["staff"],
        request=None,
        responses={
            200: OpenApiResponse(
                SellerTransferSerializer, description="The transfer, now completed."
            ),
            **STAFF_ERRORS,
            409: error_response(
                "The transfer is not `failed`, another actor moved it, or (`order_refunded`) "
                "its order was refunded in full and the transfer was cancelled."
            ),
            502: error_with(
                "TransferRetryRefused",
                "transfer",
                SellerTransferSerializer(),
                "Stripe refused the transfer; the error is recorded on the row, still `failed`.",
            ),
        },
    )
    def post(self, request, pk: int):
        transfer = transfer_retry_by_staff(transfer_id=pk, user=request.user)
        return Response(SellerTransferSerializer(transfer).data)


class TransferRequeueView(APIView):
    """``POST /api/admin/transfers/<id>/requeue/``: put a transfer that gave up back to work.

    The body is ``{"reason": "…"}``; the transfer gave up after its retries."""

    authentication_classes = STAFF_AUTHENTICATION
    permission_classes = [
        IsAdminUser,
        staff_permission("payouts.requeue_sellertransfer"),
        JSONBodyOnly,
    ]

    @extend_schema(
        operation_id="transfer_requeue",
        summary="Re-queue a permanently failed seller transfer",
        description=(
            "Only for `permanently_failed` transfers that ran out of retries: an unpaid one goes "
            "back to `failed`, an unfinished reversal back to `reversal_pending`, due now with "
            "a fresh retry budget; the worker is woken. Needs staff status and the "
            "`payouts.requeue_sellertransfer` permission. The reason is kept in the audit trail."
        ),
        tags=["staff"],
        request=RequeueRequestSerializer,
        responses={
            200: OpenApiResponse(
                SellerTransferSerializer, description="The transfer, re-queued and due now."
            ),
            202: WAITING,
            **STAFF_ERRORS,
            409: error_response(
                "`not_requeueable`: not `permanently_failed`, or it ended for a final reason "
                "(transfer missing at Stripe, no Stripe transfer, order refunded before payment); "
                "the message says which."
            ),
        },
    )
    def post(self, request, pk: int):
        body = RequeueRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        done = staff_action_request(
            kind="requeue",
            params={"transfer_id": pk},
            reason=body.validated_data["reason"],
            user=request.user,
        )
        if done.outcome == Outcome.WAITING:
            return waiting_response(done.request)
        transfer = SellerTransfer.objects.get(pk=done.result["transfer_id"])
        return Response(SellerTransferSerializer(transfer).data)


class ReserveReleaseResendView(APIView):
    """``POST /api/admin/reserve-releases/<id>/resend/``: send a release that gave up again.

    The body is ``{"reason": "…"}``; the release is ``failed`` after its retries."""

    authentication_classes = STAFF_AUTHENTICATION
    permission_classes = [
        IsAdminUser,
        staff_permission("payouts.resend_reserverelease"),
        JSONBodyOnly,
    ]

    @extend_schema(
        operation_id="reserve_release_resend",
        summary="Send a reserve release that gave up again",
        description=(
            "Only for `failed` reserve releases. Stripe is read first: a transfer of this "
            "release found there is adopted (`sent`); else it is sent under a new idempotency "
            "key (`sent`, or `pending` with Stripe's error and a retry scheduled). Goes through "
            "the four-eyes rule `reserve_resend`. Needs staff status and the "
            "`payouts.resend_reserverelease` permission. Who, when and why are kept on the row."
        ),
        tags=["staff"],
        request=ResendRequestSerializer,
        responses={
            200: OpenApiResponse(
                ReserveReleaseSerializer, description="The release, sent or pending again."
            ),
            202: WAITING,
            **STAFF_ERRORS,
            409: error_response(
                "`release_not_resendable`: the release is not `failed` (the message says what "
                "it is); nothing changed."
            ),
        },
    )
    def post(self, request, pk: int):
        body = ResendRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        done = staff_action_request(
            kind="reserve_resend",
            params={"release_id": pk},
            reason=body.validated_data["reason"],
            user=request.user,
        )
        if done.outcome == Outcome.WAITING:
            return waiting_response(done.request)
        release = ReserveRelease.objects.get(pk=done.result["release_id"])
        return Response(ReserveReleaseSerializer(release).data)


class OrderRefundView(APIView):
    """``POST /api/admin/orders/<id>/refund/``: refund an order's buyer, in full or in part.

    The body is an optional ``{"amount": minor units}`` (all that is left when omitted): creates
    the refund at Stripe; its webhook completes it (202)."""

    authentication_classes = STAFF_AUTHENTICATION
    permission_classes = [IsAdminUser, staff_permission("marketplace.refund_order"), JSONBodyOnly]

    @extend_schema(
        operation_id="order_refund",
        summary="Refund an order (in full, or part of it)",
        description=(
            "Creates the refund at Stripe; its webhook completes it and schedules the seller "
            "reversals. Needs staff status and the `marketplace.refund_order` permission."
        ),
        tags=["staff"],
        request=RefundRequestSerializer,
        responses={
            202: OpenApiResponse(
                RefundSerializer,
                description="Created at Stripe; completes by webhook. Above the staff refund "
                "approval rule, nothing is created: the body is an approval request "
                "(`code`: `approval_required`) waiting for a second person.",
            ),
            400: error_response("The amount is invalid or exceeds what is left to refund."),
            **STAFF_ERRORS,
            502: error_with(
                "OrderRefundRefused",
                "refund",
                RefundSerializer(),
                "Stripe refused the refund (or did not answer); the refund row says which.",
            ),
        },
    )
    def post(self, request, pk: int):
        body = RefundRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        done = staff_action_request(
            kind="staff_refund",
            params={"order_id": pk, "amount": body.validated_data.get("amount")},
            reason=body.validated_data["reason"],
            user=request.user,
        )
        if done.outcome == Outcome.WAITING:
            return waiting_response(done.request)
        refund = Refund.objects.get(pk=done.result["refund_id"])
        return Response(RefundSerializer(refund).data, status=status.HTTP_202_ACCEPTED)


class OrderReleaseView(APIView):
    """``POST /api/admin/orders/<id>/release/``: send an order's held seller transfers now."""

    authentication_classes = STAFF_AUTHENTICATION
    permission_classes = [
        IsAdminUser,
        staff_permission("payouts.release_sellertransfer"),
        JSONBodyOnly,
    ]

    @extend_schema(
        operation_id="order_release",
        summary="Release an order's held seller transfers now (fulfilled, say)",
        description=(
            "Ends the order's hold (`TRANSFER_HOLD`): each seller is paid what is left of their "
            "share after any refunds during the hold. Needs staff status and the "
            "`payouts.release_sellertransfer` permission."
        ),
        tags=["staff"],
        request=ReleaseRequestSerializer,
        responses={
            200: OpenApiResponse(SellerTransferSerializer(many=True), description="Released."),
            202: WAITING,
            **STAFF_ERRORS,
            409: error_response("Not paid, refunded in full, or released already."),
        },
    )
    def post(self, request, pk: int):
        return release_response(request, kind="release", params={"order_id": pk})


class BadAuditRange(InvalidInput):
    code = "bad_range"


def _audit_moment(name: str, raw: str | None, *, end: bool) -> datetime | None:
    """Parse the audit export's ``from`` or ``to`` into a moment.

    ``from``/``to``: a date (the day's start; for ``to`` the next day's, so the day is in) or an ISO
    date-time (UTC when it names no zone). ``None`` when absent."""
    if raw is None or raw == "":
        return None
    try:
        day = parse_date(raw) if len(raw) == 10 else None
        moment = None if day else parse_datetime(raw)
    except ValueError:
        day = moment = None
    if day is not None:
        day = date.fromordinal(day.toordinal() + 1) if end else day
        return datetime.combine(day, day_start.min, tzinfo=UTC)
    if moment is None:
        raise BadAuditRange(f"`{name}` is not a date (YYYY-MM-DD) or an ISO date-time: {raw!r}")
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


# Records written per chunk of the response: few, large writes instead of one per row.
AUDIT_BATCH = 500


def _record_fields(record: AuditRecord) -> dict:
    # Not dataclasses.asdict: it deep-copies every detail, and the export is millions of rows.
    return {column: getattr(record, column) for column in COLUMNS}


def _csv_lines(records: Iterator[AuditRecord]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for count, record in enumerate(records, 1):
        row = _record_fields(record)
        row["at"] = record.at.isoformat()
        row["stripe_ids"] = " ".join(record.stripe_ids)
        row["detail"] = json.dumps(record.detail, default=str, sort_keys=True)
        writer.writerow(["" if row[column] is None else row[column] for column in COLUMNS])
        if count % AUDIT_BATCH == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _jsonl_lines(records: Iterator[AuditRecord]) -> Iterator[str]:
    batch = []
    for record in records:
        row = _record_fields(record)
        row["stripe_ids"] = list(record.stripe_ids)
        batch.append(json.dumps(row, default=str) + "\n")
        if len(batch) == AUDIT_BATCH:
            yield "".join(batch)
            batch = []
    yield "".join(batch)


AUDIT_FORMATS = {"csv": ("text/csv", _csv_lines), "jsonl": ("application/x-ndjson", _jsonl_lines)}


class AuditExportView(APIView):
    """Stream every staff action and money move in a time range, as CSV or JSON lines.

    ``GET /api/admin/audit/?from=&to=&format=csv|jsonl``, in time order."""

    authentication_classes = STAFF_AUTHENTICATION
    permission_classes = [IsAdminUser, staff_permission("approvals.export_audit")]

    @extend_schema(
        operation_id="audit_export",
        summary="Export every staff action and money move in a time range (CSV or JSON lines)",
        description=(
            "Seller transfer transitions, book entries with their lines, approval requests and "
            "their decisions, connected-account changes and staff refunds, merged in time order "
            "(`from` included, `to` excluded; a date alone means that whole day, UTC), with "
            "who, why, amounts and Stripe ids. Streamed from server-side cursors over one "
            "snapshot: the memory it takes does not grow with the range. Needs staff status and "
            "the `approvals.export_audit` permission."
        ),
        tags=["staff"],
        parameters=[
            OpenApiParameter("from", OpenApiTypes.STR, description="YYYY-MM-DD or date-time"),
            OpenApiParameter(
                "to", OpenApiTypes.STR, description="YYYY-MM-DD (included) or date-time"
            ),
            OpenApiParameter("format", OpenApiTypes.STR, enum=list(AUDIT_FORMATS)),
        ],
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/x-ndjson"): OpenApiTypes.STR,
            400: error_response("`from` or `to` malformed, or reversed; an unknown `format`."),
            401: STAFF_ERRORS[401],
            403: STAFF_ERRORS[403],
        },
    )
    def get(self, request):
        start = _audit_moment("from", request.query_params.get("from"), end=False)
        end = _audit_moment("to", request.query_params.get("to"), end=True)
        if start and end and start >= end:
            raise BadAuditRange("`to` must come after `from`")
        output = request.query_params.get("format", "csv")
        if output not in AUDIT_FORMATS:
            raise BadAuditRange(f"`format` is csv or jsonl, not {output!r}")
        content_type, lines = AUDIT_FORMATS[output]
        response = StreamingHttpResponse(
            lines(audit_records(start=start, end=end)), content_type=content_type
        )
        response["Content-Disposition"] = f'attachment; filename="audit.{output}"'
        return response


def release_response(request, *, kind: str, params: dict) -> Response:
    """Ask for a release of held transfers (at once, or waiting for a second person).

    Answers 202 with the waiting request, or 200 with the transfers released."""
    body = ReleaseRequestSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    done = staff_action_request(
        kind=kind, params=params, reason=body.validated_data["reason"], user=request.user
    )
    if done.outcome == Outcome.WAITING:
        return waiting_response(done.request)
    released = SellerTransfer.objects.filter(pk__in=done.result["released"]).order_by("pk")
    return Response(SellerTransferSerializer(released, many=True).data)
