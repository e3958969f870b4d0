"""The staff API's read-only views of seller transfers and "needs attention".

Seller transfers, filtered as the console filters them, and "needs attention" as the console shows
it, for teams building their own alerts and reports. Read-only; parse → one selector → serialize.
Errors are rendered by ``config.errors.exception_handler``."""

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import STAFF_AUTHENTICATION, STAFF_ERRORS, error_response, staff_permission
from config.errors import InvalidInput
from console import dashboard
from console.admin_site import ATTENTION_ADVICE, attention_label
from payouts import selectors
from payouts.http.serializers import TRANSFER_FIELDS
from payouts.models import SellerTransfer
from payouts.selectors import Attention
from payouts.transfer.transitions import TransferStatus

VIEW_TRANSFERS = "payouts.view_sellertransfer"
PAGE_DEFAULT, PAGE_MAX = 100, 500


class AttentionTransferSerializer(serializers.ModelSerializer):
    attention = serializers.CharField(
        read_only=True,
        help_text="The row's first reason to need a person (see needs-attention), or empty.",
    )

    class Meta:
        model = SellerTransfer
        fields = (
            *TRANSFER_FIELDS,
            "held_reason",
            "amount_withheld",
            "dispute_target",
            "amount_returned",
            "amount_to_give_back",
            "reversal_target",
            "attention",
        )
        read_only_fields = fields


class TransferPageSerializer(serializers.Serializer):
    results = AttentionTransferSerializer(many=True)
    next_before = serializers.IntegerField(
        allow_null=True, help_text="Pass as `before` for the next page; null on the last one."
    )


def _positive_int(params, name: str) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    if not value.isdigit() or int(value) < 1 or len(value) > 18:
        raise InvalidInput(f"{name} must be a positive whole number, not {value!r}")
    return int(value)


class TransferListView(APIView):
    """``GET /api/admin/transfers/``: seller transfers, newest first, filtered."""

    authentication_classes = STAFF_AUTHENTICATION
    permission_classes = [IsAdminUser, staff_permission(VIEW_TRANSFERS)]

    @extend_schema(
        operation_id="transfer_list",
        summary="List seller transfers (read-only)",
        description=(
            "Newest first, in pages: pass the answer's `next_before` as `before` for the next "
            "one. Amounts in minor units. Needs staff status and `payouts.view_sellertransfer`."
        ),
        tags=["staff"],
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=TransferStatus.values),
            OpenApiParameter("seller", OpenApiTypes.INT, description="A seller id."),
            OpenApiParameter("order", OpenApiTypes.INT, description="An order id."),
            OpenApiParameter(
                "attention",
                OpenApiTypes.STR,
                enum=["any", *Attention],
                description="Only rows needing a person: for any reason, or for one.",
            ),
            OpenApiParameter("before", OpenApiTypes.INT, description="Rows with a smaller id."),
            OpenApiParameter("limit", OpenApiTypes.INT, description=f"1 to {PAGE_MAX}."),
        ],
        responses={
            200: TransferPageSerializer,
            **STAFF_ERRORS,
            400: error_response("An unknown status or attention reason, or a bad number."),
        },
    )
    def get(self, request):
        params = request.query_params
        now = timezone.now()
        rows = _filtered(SellerTransfer.objects.all(), params, now=now)
        limit = min(_positive_int(params, "limit") or PAGE_DEFAULT, PAGE_MAX)
        rows = selectors.transfers_with_attention(now=now, queryset=rows)
        page = list(rows.order_by("-id")[: limit + 1])
        more = len(page) > limit
        page = page[:limit]
        return Response(
            {
                "results": AttentionTransferSerializer(page, many=True).data,
                "next_before": page[-1].pk if more else None,
            }
        )


def _filtered(rows, params, *, now):
    """The transfers ``params`` select: by status, seller, order, attention reason, id."""
    status = params.get("status")
    if status:
        if status not in TransferStatus.values:
            raise InvalidInput(f"status must be one of {', '.join(TransferStatus.values)}")
        rows = rows.filter(status=status)
    for name in ("seller", "order"):
        value = _positive_int(params, name)
        if value is not None:
            rows = rows.filter(**{f"{name}_id": value})
    attention = params.get("attention")
    if attention:
        if attention != "any" and attention not in {reason.value for reason in Attention}:
            raise InvalidInput(f"attention must be any or one of {', '.join(Attention)}")
        reason = None if attention == "any" else attention
        rows = selectors.transfers_needing_attention(now=now, reason=reason, queryset=rows)
    before = _positive_int(params, "before")
    return rows if before is None else rows.filter(id__lt=before)


class NeedsAttentionView(APIView):
    """``GET /api/admin/needs-attention/``: what the console's "needs attention" page shows."""

    authentication_classes = STAFF_AUTHENTICATION
    permission_classes = [IsAdminUser, staff_permission(VIEW_TRANSFERS)]

    @extend_schema(
        operation_id="needs_attention",
        summary="Everything a person must act on (read-only)",
        description=(
            "Per reason: how many transfers, what to do, and the most urgent ten (all of them: "
            "`/api/admin/transfers/?attention=<reason>`); the sellers in debt; the open "
            "disputes; the Stripe events whose handling failed; the reserve releases that gave "
            "up; the latest ledger check's "
            "breaks. Amounts in minor units. Build alerts on `counts`."
        ),
        tags=["staff"],
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT), **STAFF_ERRORS},
    )
    def get(self, request):
        report = dashboard.needs_attention(now=timezone.now())
        return Response(
            {
                "as_of": report.now,
                "counts": {group.reason.value: group.count for group in report.groups},
                "groups": [_group_body(group) for group in report.groups],
                "sellers_in_debt": [_debt_body(debt) for debt in report.debts],
                "disputes_open": [_dispute_body(dispute) for dispute in report.disputes],
                "failed_webhook_events": {
                    "count": report.failed_webhooks,
                    "replay": "manage.py replay_webhook_events [evt_…], or the admin's "
                    '"Replay selected events"',
                    "events": [_event_body(event) for event in report.webhooks],
                },
                "failed_reserve_releases": {
                    "count": report.failed_releases,
                    "resend": "POST /api/admin/reserve-releases/<id>/resend/, or the admin's "
                    '"Send selected reserve releases that gave up again"',
                    "releases": [_release_body(release) for release in report.releases],
                },
                "ledger_breaks": {
                    "checked_at": report.check.finished_at if report.check else None,
                    "count": report.check.breaks_found if report.check else None,
                },
            }
        )


def _group_body(group) -> dict:
    return {
        "reason": group.reason.value,
        "label": attention_label(group.reason),
        "advice": ATTENTION_ADVICE[group.reason],
        "count": group.count,
        "transfers": AttentionTransferSerializer(group.rows, many=True).data,
    }


def _debt_body(debt) -> dict:
    return {
        "seller": debt.seller_id,
        "name": debt.seller_name,
        "currency": debt.currency,
        "amount": debt.amount,
    }


def _dispute_body(dispute) -> dict:
    return {
        "stripe_dispute_id": dispute.stripe_dispute_id,
        "order": dispute.order_id,
        "status": dispute.status,
        "amount": dispute.amount,
        "currency": dispute.currency,
        "evidence_due_by": dispute.evidence_due_by,
    }


def _release_body(release) -> dict:
    return {
        "id": release.pk,
        "seller": release.seller_id,
        "amount": release.amount,
        "currency": release.currency,
        "release_on": release.release_on,
        "given_back_for": release.given_back_for_id,
        "attempts": release.retry_count,
        "error": release.error_message,
    }


def _event_body(event) -> dict:
    return {
        "stripe_event_id": event.stripe_event_id,
        "type": event.type,
        "attempts": event.attempts,
        "received_at": event.received_at,
        "error": event.error,
    }
