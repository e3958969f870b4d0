"""The staff API of sellers' bank payouts and what each one carried.

Each seller's deposits, what each one carried (the orders, refunds and disputes inside, with
amounts), in JSON or CSV, and reading a payout again at Stripe. Each view is parse → call one
selector or service → serialize."""

import base64
import binascii
import csv
import io

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import STAFF_AUTHENTICATION, STAFF_ERRORS, error_response, staff_permission
from config.errors import InvalidInput, NotFound
from marketplace.models import Seller
from payouts.http.serializers import PayoutContentsSerializer, PayoutSerializer
from payouts.models import Payout
from payouts.selectors import PayoutContents, payout_contents, seller_payout, seller_payouts_page
from payouts.services.bank_payouts import UnknownPayout, payout_reconcile_by_staff

DEFAULT_PAGE = 25
MAX_PAGE = 100
_CURSOR_PREFIX = "before:"


class UnknownSeller(NotFound):
    code = "unknown_seller"


class BadPayoutQuery(InvalidInput):
    code = "bad_query"


def _seller(pk: int) -> Seller:
    seller = Seller.objects.filter(pk=pk).first()
    if seller is None:
        raise UnknownSeller(f"No seller {pk}.")
    return seller


def _payout(seller: Seller, stripe_payout_id: str) -> Payout:
    payout = seller_payout(seller_id=seller.pk, stripe_payout_id=stripe_payout_id)
    if payout is None:
        raise UnknownPayout(f"Seller {seller.pk} has no payout {stripe_payout_id!r}.")
    return payout


def encode_cursor(before_id: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{before_id}".encode()).decode()


def _decode_cursor(raw: str | None) -> int | None:
    """The id the page continues before; a cursor we did not make is a 400."""
    if raw is None:
        return None
    try:
        text = base64.urlsafe_b64decode(raw.encode("ascii")).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        text = ""
    number = text.removeprefix(_CURSOR_PREFIX)
    if not text.startswith(_CURSOR_PREFIX) or not number.isdigit() or int(number) < 1:
        raise BadPayoutQuery(f"`cursor` is not a cursor this API gave: {raw!r}")
    return int(number)


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise BadPayoutQuery(f"`limit` is a whole number from 1 to {MAX_PAGE}, not {raw!r}")
    return int(raw)


def _format(request) -> str:
    output = request.query_params.get("format", "json")
    if output not in ("json", "csv"):
        raise BadPayoutQuery(f"`format` is json or csv, not {output!r}")
    return output


FORMAT_PARAMETER = OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"])


class SellerPayoutListView(APIView):
    """``GET /api/admin/sellers/<id>/payouts/?cursor=&limit=&format=json|csv``."""

    authentication_classes = STAFF_AUTHENTICATION
    permission_classes = [IsAdminUser]

    @extend_schema(
        operation_id="seller_payouts",
        summary="A seller's bank payouts, newest first",
        description=(
            "Each deposit Stripe made from the seller's connected account: amount, status, "
            "arrival date, Stripe's failure reason, and whether its lines add up. Paged: "
            "`next_cursor` (null on the last page) goes back as `cursor`."
        ),
        tags=["payouts"],
        parameters=[
            OpenApiParameter("cursor", OpenApiTypes.STR, description="From `next_cursor`."),
            OpenApiParameter("limit", OpenApiTypes.INT, description=f"1 to {MAX_PAGE}"),
            FORMAT_PARAMETER,
        ],
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="JSON, or CSV with format=csv"),
            400: error_response("A malformed cursor or limit, or an unknown format."),
            **STAFF_ERRORS,
        },
    )
    def get(self, request, pk: int):
        seller = _seller(pk)
        before = _decode_cursor(request.query_params.get("cursor"))
        limit = _limit(request.query_params.get("limit"))
        output = _format(request)
        payouts, next_before = seller_payouts_page(
            seller_id=seller.pk, before_id=before, limit=limit
        )
        if output == "csv":
            return _payouts_csv(seller, payouts)
        return Response(
            {
                "seller": seller.pk,
                "payouts": PayoutSerializer(payouts, many=True).data,
                "next_cursor": encode_cursor(next_before) if next_before else None,
            }
        )


class SellerPayoutDetailView(APIView):
    """``GET /api/admin/sellers/<id>/payouts/<po_id>/?format=json|csv``."""

    authentication_classes = STAFF_AUTHENTICATION
    permission_classes = [IsAdminUser]

    @extend_schema(
        operation_id="seller_payout",
        summary="What one bank payout carried: the orders, refunds and disputes inside",
        description=(
            "Every balance transaction of the payout as last read at Stripe, tied to our "
            "transfers (a payment) and reversals (a payment refund); per order, what was paid "
            "and taken back, with its refunds and disputes; and what we cannot place "
            "(`unmatched`, with why). The items' `net` add up to the payout's amount when "
            "`balanced`."
        ),
        tags=["payouts"],
        parameters=[FORMAT_PARAMETER],
        responses={
            200: OpenApiResponse(PayoutContentsSerializer, description="CSV with format=csv"),
            400: error_response("An unknown format."),
            **STAFF_ERRORS,
        },
    )
    def get(self, request, pk: int, stripe_payout_id: str):
        payout = _payout(_seller(pk), stripe_payout_id)
        output = _format(request)
        contents = payout_contents(payout=payout)
        if output == "csv":
            return _contents_csv(contents)
        return Response(PayoutContentsSerializer(contents).data)


class SellerPayoutReconcileView(APIView):
    """``POST /api/admin/sellers/<id>/payouts/<po_id>/reconcile/``: read it again at Stripe."""

    authentication_classes = STAFF_AUTHENTICATION
    permission_classes = [IsAdminUser, staff_permission("payouts.reconcile_payout")]

    @extend_schema(
        operation_id="seller_payout_reconcile",
        summary="Read a bank payout's contents at Stripe again",
        description=(
            "Lists the payout's balance transactions at Stripe in pages of 100 and ties them to "
            "our transfers and reversals again. Needs staff status and the "
            "`payouts.reconcile_payout` permission."
        ),
        tags=["payouts"],
        request=None,
        responses={
            200: OpenApiResponse(PayoutContentsSerializer, description="What it carried."),
            **STAFF_ERRORS,
            409: error_response("A manual payout: Stripe lists automatic payouts only."),
            502: error_response("Stripe did not list it; the error is recorded on the payout."),
        },
    )
    def post(self, request, pk: int, stripe_payout_id: str):
        payout = _payout(_seller(pk), stripe_payout_id)
        result = payout_reconcile_by_staff(payout=payout)
        return Response(PayoutContentsSerializer(payout_contents(payout=result.payout)).data)


PAYOUT_CSV_COLUMNS = [
    "stripe_payout_id",
    "status",
    "amount",
    "currency",
    "arrival_date",
    "failure_code",
    "failure_message",
    "items_total",
    "unmatched_count",
]


def _csv_response(rows: list[list], filename: str) -> HttpResponse:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    response = HttpResponse(out.getvalue(), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _payouts_csv(seller: Seller, payouts: list[Payout]) -> HttpResponse:
    rows = [PAYOUT_CSV_COLUMNS]
    rows += [[getattr(p, column) for column in PAYOUT_CSV_COLUMNS] for p in payouts]
    return _csv_response(rows, f"seller-{seller.pk}-payouts.csv")


ITEM_CSV_COLUMNS = [
    "kind",
    "stripe_balance_transaction_id",
    "stripe_type",
    "stripe_source_id",
    "amount",
    "fee",
    "net",
    "currency",
    "order_id",
    "transfer_id",
    "stripe_transfer_id",
    "refunds",
    "disputes",
    "note",
]


def _contents_csv(contents: PayoutContents) -> HttpResponse:
    """The payout's contents as a CSV download.

    One row per line of the payout; an order's refunds and disputes as ``id:amount:status`` joined
    by spaces."""
    by_order = {entry.order_id: entry for entry in contents.orders}
    rows = [ITEM_CSV_COLUMNS]
    for item in contents.items:
        entry = by_order.get(item.order_id)
        refunds = " ".join(
            f"{r.stripe_refund_id}:{r.amount}:{r.status}" for r in (entry.refunds if entry else [])
        )
        disputes = " ".join(
            f"{d.stripe_dispute_id}:{d.amount}:{d.status}"
            for d in (entry.disputes if entry else [])
        )
        rows.append(
            [
                item.kind,
                item.stripe_balance_transaction_id,
                item.stripe_type,
                item.stripe_source_id,
                item.amount,
                item.fee,
                item.net,
                item.currency,
                item.order_id or "",
                item.transfer_id or "",
                item.transfer.stripe_transfer_id if item.transfer else "",
                refunds,
                disputes,
                item.note,
            ]
        )
    return _csv_response(rows, f"{contents.payout.stripe_payout_id}.csv")
