"""Staff API of the book: a seller's balance, statement and debt write-off.

Each view is parse → call one service or selector → serialize."""

import csv
import io
from datetime import date, datetime, time

from django.http import HttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from approvals.services import Outcome, staff_action_request
from approvals.views import WAITING, waiting_response
from config.api import (
    STAFF_AUTHENTICATION,
    STAFF_ERRORS,
    JSONBodyOnly,
    error_response,
    staff_permission,
)
from config.errors import InvalidInput, NotFound
from ledger.selectors import seller_balances, seller_statement_lines
from marketplace.models import Seller


def balances_field() -> serializers.DictField:
    return serializers.DictField(
        child=serializers.DictField(child=serializers.IntegerField()),
        help_text='`{"<currency>": {"payable": owed to the seller, "debt": owed by the seller}}`, '
        'with `"reserve"` (the rolling reserve, owed to the seller once its days pass) in a '
        "currency the seller has had one in",
    )


BALANCES_RESPONSE = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description='The seller\'s balances per currency, as they see them: `{"usd": {"payable": '
    'owed to the seller, "debt": owed by the seller}}` (minor units), with `"reserve"` (their '
    "rolling reserve) in a currency they have had one in.",
)


class UnknownSeller(NotFound):
    code = "unknown_seller"


class BadPeriod(InvalidInput):
    code = "bad_period"


def _seller(pk: int) -> Seller:
    try:
        return Seller.objects.get(pk=pk)
    except Seller.DoesNotExist:
        raise UnknownSeller(f"No seller {pk}.") from None


def _moment(name: str, raw: str | None, *, end: bool) -> datetime | None:
    """Parse the ``from`` or ``to`` query parameter of a statement into a moment.

    ``from``/``to``: a date (the day's start; for ``to`` the next day's start, so the day is
    included) or an ISO date-time. ``None`` when absent."""
    if raw is None or raw == "":
        return None
    try:
        parsed_day = parse_date(raw) if len(raw) == 10 else None
        moment = None if parsed_day else parse_datetime(raw)
    except ValueError:
        parsed_day = moment = None
    if parsed_day is not None:
        day = date.fromordinal(parsed_day.toordinal() + 1) if end else parsed_day
        return timezone.make_aware(datetime.combine(day, time.min))
    if moment is None:
        raise BadPeriod(f"`{name}` is not a date (YYYY-MM-DD) or an ISO date-time: {raw!r}")
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


class SellerBalanceView(APIView):
    """``GET /api/admin/sellers/<id>/balance/``."""

    authentication_classes = STAFF_AUTHENTICATION
    permission_classes = [IsAdminUser]

    @extend_schema(
        operation_id="seller_balance",
        summary="What the platform owes a seller, and what the seller owes, per currency",
        tags=["ledger"],
        responses={200: BALANCES_RESPONSE, **STAFF_ERRORS},
    )
    def get(self, request, pk: int):
        return Response(seller_balances(seller_id=_seller(pk).pk))


class SellerStatementView(APIView):
    """``GET /api/admin/sellers/<id>/statement/?from=&to=&format=json|csv``."""

    authentication_classes = STAFF_AUTHENTICATION
    permission_classes = [IsAdminUser]

    @extend_schema(
        operation_id="seller_statement",
        summary="A seller's statement: opening balance, every line, closing balance",
        tags=["ledger"],
        parameters=[
            OpenApiParameter("from", OpenApiTypes.STR, description="YYYY-MM-DD or date-time"),
            OpenApiParameter("to", OpenApiTypes.STR, description="YYYY-MM-DD (included)"),
            OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"]),
        ],
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="JSON, or CSV with format=csv"),
            400: error_response("A malformed or reversed period, or an unknown format."),
            **STAFF_ERRORS,
        },
    )
    def get(self, request, pk: int):
        seller = _seller(pk)
        start = _moment("from", request.query_params.get("from"), end=False)
        end = _moment("to", request.query_params.get("to"), end=True)
        if start and end and start >= end:
            raise BadPeriod("`from` must be before `to`")
        output = request.query_params.get("format", "json")
        if output not in ("json", "csv"):
            raise BadPeriod(f"`format` is json or csv, not {output!r}")
        statement = {
            "seller": seller.pk,
            "from": start,
            "to": end,
            "opening": seller_balances(seller_id=seller.pk, before=start) if start else {},
            "lines": seller_statement_lines(seller_id=seller.pk, start=start, end=end),
            "closing": seller_balances(seller_id=seller.pk, before=end),
        }
        if output == "csv":
            return statement_csv(statement)
        return Response(StatementSerializer(statement).data)


class StatementLineSerializer(serializers.Serializer):
    posted_at = serializers.DateTimeField()
    kind = serializers.CharField()
    account = serializers.CharField()
    currency = serializers.CharField()
    amount = serializers.IntegerField()
    order_id = serializers.IntegerField(allow_null=True)
    transfer_id = serializers.IntegerField(allow_null=True)
    stripe_id = serializers.CharField()
    memo = serializers.CharField()


class StatementSerializer(serializers.Serializer):
    seller = serializers.IntegerField()
    opening = balances_field()
    lines = StatementLineSerializer(many=True)
    closing = balances_field()

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["from"], data["to"] = instance["from"], instance["to"]
        return data


CSV_COLUMNS = ["posted_at", "kind", "account", "currency", "amount", "order_id", "transfer_id"]
CSV_COLUMNS += ["stripe_id", "memo"]


def _balance_rows(edge: str, moment: datetime | None, balances: dict) -> list[list]:
    return [
        [moment or "", f"{edge}_balance", account, currency, amount, "", "", "", ""]
        for currency, amounts in balances.items()
        for account, amount in amounts.items()
    ]


def statement_csv(statement: dict) -> HttpResponse:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    writer.writerows(_balance_rows("opening", statement["from"], statement["opening"]))
    for line in statement["lines"]:
        writer.writerow([getattr(line, column) for column in CSV_COLUMNS])
    writer.writerows(_balance_rows("closing", statement["to"], statement["closing"]))
    response = HttpResponse(out.getvalue(), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="seller-{statement["seller"]}.csv"'
    return response


class WriteOffSerializer(serializers.Serializer):
    currency = serializers.RegexField(r"^[a-z]{3}$", help_text="Lowercase ISO code.")
    amount = serializers.IntegerField(min_value=1, help_text="Minor units.")
    reason = serializers.CharField(max_length=1000)


class SellerDebtWriteOffView(APIView):
    """``POST /api/admin/sellers/<id>/debt/write-off/`` with ``{currency, amount, reason}``."""

    authentication_classes = STAFF_AUTHENTICATION
    permission_classes = [IsAdminUser, staff_permission("ledger.write_off_debt"), JSONBodyOnly]

    @extend_schema(
        operation_id="seller_debt_write_off",
        summary="Write off part or all of a seller's debt, with a reason (audited)",
        tags=["ledger"],
        request=WriteOffSerializer,
        responses={
            200: BALANCES_RESPONSE,
            202: WAITING,
            400: error_response("More than the debt, or a bad amount, currency or reason."),
            **STAFF_ERRORS,
        },
    )
    def post(self, request, pk: int):
        seller = _seller(pk)
        body = WriteOffSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        params = {key: body.validated_data[key] for key in ("currency", "amount")}
        done = staff_action_request(
            kind="write_off",
            params={"seller_id": seller.pk, **params},
            reason=body.validated_data["reason"],
            user=request.user,
        )
        if done.outcome == Outcome.WAITING:
            return waiting_response(done.request)
        return Response(seller_balances(seller_id=seller.pk))
