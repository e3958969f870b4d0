"""The staff API of four eyes: approval requests and their decisions.

What waits for a second person, and their decision. Each view is parse → call one service →
serialize."""

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from approvals.models import ApprovalRequest, ApprovalStatus
from approvals.selectors import approvals_waiting
from approvals.serializers import (
    ApprovalRequestSerializer,
    DecisionSerializer,
    RejectionSerializer,
)
from approvals.services import approval_approve, approval_reject
from config.api import (
    STAFF_AUTHENTICATION,
    STAFF_ERRORS,
    JSONBodyOnly,
    error_response,
    staff_permission,
)
from config.errors import InvalidInput

APPROVE_PERMISSION = "approvals.approve_approvalrequest"
# How many requests one list answer holds, newest first when listing a decided status.
LIST_LIMIT = 500

WAITING = OpenApiResponse(
    inline_serializer(
        "ApprovalRequired",
        fields={
            "detail": serializers.CharField(),
            "code": serializers.CharField(help_text="`approval_required`"),
            "approval_request": ApprovalRequestSerializer(),
        },
    ),
    description="Above its approval rule: nothing ran; a request waits for a second person.",
)


def waiting_response(request: ApprovalRequest) -> Response:
    """The 202 of an action that waits for a second person instead of running."""
    return Response(
        {
            "detail": f"Waits for a second person's approval (approval request {request.pk}).",
            "code": "approval_required",
            "approval_request": ApprovalRequestSerializer(request).data,
        },
        status=status.HTTP_202_ACCEPTED,
    )


class BadStatusFilter(InvalidInput):
    code = "bad_status"


class ApprovalListView(APIView):
    """``GET /api/admin/approvals/?status=pending``."""

    authentication_classes = STAFF_AUTHENTICATION
    permission_classes = [IsAdminUser]

    @extend_schema(
        operation_id="approvals_list",
        summary="Staff money actions waiting for a second person (or decided)",
        description=(
            "Without `status`: the requests that can still be decided, oldest first. With a "
            f"status: the latest {LIST_LIMIT} in it."
        ),
        tags=["approvals"],
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=ApprovalStatus.values),
        ],
        responses={
            200: ApprovalRequestSerializer(many=True),
            400: error_response("An unknown status."),
            **STAFF_ERRORS,
        },
    )
    def get(self, request):
        wanted = request.query_params.get("status")
        if wanted is None:
            rows = approvals_waiting(now=timezone.now())[:LIST_LIMIT]
        elif wanted in ApprovalStatus.values:
            rows = ApprovalRequest.objects.filter(status=wanted).select_related(
                "requested_by", "decided_by"
            )
            rows = rows.order_by("-pk")[:LIST_LIMIT]
        else:
            raise BadStatusFilter(f"`status` is one of {', '.join(ApprovalStatus.values)}")
        return Response(ApprovalRequestSerializer(rows, many=True).data)


DECISION_ERRORS = {
    **STAFF_ERRORS,
    403: error_response(
        "Not staff, without the `approvals.approve_approvalrequest` permission, or "
        "(`own_request`) the request is your own: another person must decide it."
    ),
    409: error_response("Decided already, or expired (`approval_decided`)."),
}


class ApprovalApproveView(APIView):
    """``POST /api/admin/approvals/<id>/approve/`` with an optional ``{"reason": "…"}``."""

    authentication_classes = STAFF_AUTHENTICATION
    permission_classes = [IsAdminUser, staff_permission(APPROVE_PERMISSION), JSONBodyOnly]

    @extend_schema(
        operation_id="approval_approve",
        summary="Approve another person's staff money action: it runs, once",
        description=(
            "The action runs now, once however often or by how many people this is sent. The "
            "answer is the request: `executed`; `failed` when the action refused (its error "
            "recorded, nothing changed); `approved` while Stripe's answer is unknown (finished "
            "by the sweep, reading Stripe first)."
        ),
        tags=["approvals"],
        request=DecisionSerializer,
        responses={200: ApprovalRequestSerializer, **DECISION_ERRORS},
    )
    def post(self, request, pk: int):
        body = DecisionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        decided = approval_approve(
            request_id=pk, user=request.user, reason=body.validated_data["reason"]
        )
        return Response(ApprovalRequestSerializer(decided).data)


class ApprovalRejectView(APIView):
    """``POST /api/admin/approvals/<id>/reject/`` with ``{"reason": "…"}``."""

    authentication_classes = STAFF_AUTHENTICATION
    permission_classes = [IsAdminUser, staff_permission(APPROVE_PERMISSION), JSONBodyOnly]

    @extend_schema(
        operation_id="approval_reject",
        summary="Reject another person's staff money action, with a reason: nothing runs",
        tags=["approvals"],
        request=RejectionSerializer,
        responses={
            200: ApprovalRequestSerializer,
            400: error_response("No reason."),
            **DECISION_ERRORS,
        },
    )
    def post(self, request, pk: int):
        body = RejectionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        decided = approval_reject(
            request_id=pk, user=request.user, reason=body.validated_data["reason"]
        )
        return Response(ApprovalRequestSerializer(decided).data)
