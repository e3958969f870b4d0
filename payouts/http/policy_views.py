"""The staff API of sellers' payout policies and risk holds.

``GET``/``PUT /api/admin/sellers/<id>/policy/`` and ``POST …/risk-release/``: parse, call one
service (through the approvals app for changes), answer. Errors are rendered by
``config.errors.exception_handler`` (400 naming the field, 404 for an unknown seller)."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import BasePermission, IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from approvals.services import Outcome, staff_action_request
from approvals.views import WAITING, waiting_response
from config.api import STAFF_AUTHENTICATION, STAFF_ERRORS, JSONBodyOnly, error_response
from marketplace.models import Seller
from payouts.http.serializers import ReleaseRequestSerializer, SellerTransferSerializer
from payouts.http.views import release_response
from payouts.services.policies import (
    InvalidPolicy,
    UnknownSeller,
    effective_as_json,
    policy_as_json,
    policy_effective,
    seller_policy,
)


def _policy_body(seller_id: int) -> dict:
    if not Seller.objects.filter(pk=seller_id).exists():
        raise UnknownSeller(f"No seller {seller_id}.")
    policy = seller_policy(seller_id)
    return {
        "seller_id": seller_id,
        **policy_as_json(policy),
        "effective": effective_as_json(policy_effective(policy)),
    }


def _changes(data) -> tuple[dict, str]:
    """The policy fields asked (every key but ``reason``), and the reason."""
    if not isinstance(data, dict):
        raise InvalidPolicy("body", "must be a JSON object of policy fields")
    changes = {name: value for name, value in data.items() if name != "reason"}
    reason = data.get("reason") or ""
    if not isinstance(reason, str):
        raise InvalidPolicy("reason", "must be text")
    return changes, reason


POLICY_EXAMPLE = {
    "hold": "7d",
    "reserve_bps": 1000,
    "reserve_days": 30,
    "fee_bps": 1200,
    "debits_allowed": True,
    "debit_consent_at": "2026-12-01T10:00:00Z",
}


class SellerPolicyView(APIView):
    """``GET``/``PUT /api/admin/sellers/<id>/policy/``: a seller's payout terms."""

    authentication_classes = STAFF_AUTHENTICATION

    def get_permissions(self):
        if self.request.method == "PUT":
            return [IsAdminUser(), _ChangePolicy(), JSONBodyOnly()]
        return [IsAdminUser()]

    @extend_schema(
        operation_id="seller_policy",
        summary="A seller's payout policy: the stored fields (null: the default) and the effective",
        tags=["staff"],
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT), **STAFF_ERRORS},
    )
    def get(self, request, pk: int):
        return Response(_policy_body(pk))

    @extend_schema(
        operation_id="seller_policy_set",
        summary="Change some fields of a seller's payout policy (null: back to the default)",
        description=(
            "Fields optional: `hold` (a duration, `0` for none), `reserve_bps` (0..10000), "
            "`reserve_days` (0..180), `fee_bps` (0..10000), `debits_allowed` (needs "
            f"`debit_consent_at`), `debit_consent_at`; `reason`. Example: {POLICY_EXAMPLE}. "
            "Audited; goes through the approvals rule `policy_change`. Needs the "
            "`payouts.change_sellerpolicy` permission."
        ),
        tags=["staff"],
        request=OpenApiTypes.OBJECT,
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="The policy as it now is."),
            202: WAITING,
            400: error_response("A field out of range or of the wrong type (named)."),
            **STAFF_ERRORS,
        },
    )
    def put(self, request, pk: int):
        changes, reason = _changes(request.data)
        done = staff_action_request(
            kind="policy_change",
            params={"seller_id": pk, "changes": changes},
            reason=reason,
            user=request.user,
        )
        if done.outcome == Outcome.WAITING:
            return waiting_response(done.request)
        return Response(_policy_body(pk))


class _ChangePolicy(BasePermission):
    message = "This needs the payouts.change_sellerpolicy permission."

    def has_permission(self, request, view):
        return request.user.has_perm("payouts.change_sellerpolicy")


class SellerRiskReleaseView(APIView):
    """``POST /api/admin/sellers/<id>/risk-release/``: send a seller's risk-held transfers."""

    authentication_classes = STAFF_AUTHENTICATION
    permission_classes = [IsAdminUser, _ChangePolicy, JSONBodyOnly]

    @extend_schema(
        operation_id="seller_risk_release",
        summary="Release a seller's transfers held for their disputes (reason `risk`)",
        description=(
            "Each is sent at once; the dispute count starts again now. Audited; goes through "
            "the approvals rule `risk_release`. Needs `payouts.change_sellerpolicy`."
        ),
        tags=["staff"],
        request=ReleaseRequestSerializer,
        responses={
            200: OpenApiResponse(SellerTransferSerializer(many=True), description="Released."),
            202: WAITING,
            **STAFF_ERRORS,
            409: error_response("Nothing held for risk."),
        },
    )
    def post(self, request, pk: int):
        return release_response(request, kind="risk_release", params={"seller_id": pk})
