"""OpenAPI descriptions of the HTTP interfaces in ``payouts.views`` (served at /api/schema/).

Kept beside the views rather than on them: each extension hands drf-spectacular an annotated
subclass of a view for schema generation only, so the request handling code stays as it is.
Imported by ``PayoutsConfig.ready``.
"""

from drf_spectacular.extensions import OpenApiViewExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers

from payouts.models import WebhookOutcome
from payouts.serializers import RefundRequestSerializer, RefundSerializer, SellerTransferSerializer

ERROR = inline_serializer(
    "Error", fields={"detail": serializers.CharField(help_text="What went wrong.")}
)


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ERROR, description=description)


def _stripe_refused(name: str, field: str, serializer: serializers.Serializer):
    return OpenApiResponse(
        inline_serializer(
            name,
            fields={
                "detail": serializers.CharField(help_text="Stripe's error, as recorded."),
                "code": serializers.CharField(help_text="Always `stripe_error`."),
                field: serializer,
            },
        ),
        description="Stripe refused the request; the error is recorded on the row.",
    )


STAFF_ERRORS = {
    401: _error("No credentials."),
    403: _error("Not staff, or missing the permission."),
    404: _error("No such row."),
}


class StripeWebhookSchema(OpenApiViewExtension):
    target_class = "payouts.views.StripeWebhookView"

    def view_replacement(self):
        @extend_schema_view(
            post=extend_schema(
                operation_id="stripe_webhook_receive",
                summary="Receive a Stripe event",
                description=(
                    "Called by Stripe, authenticated by the `Stripe-Signature` header over the "
                    "raw body (300 s tolerance). The event is stored in the inbox once per id; "
                    "a duplicate delivery answers 200 with no second effect, and an unknown "
                    "type is stored as `ignored`."
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
                    400: _error("Bad or missing signature, or not a Stripe event."),
                    413: _error("Body over 256 KiB."),
                    422: _error("Stored, but it cannot be applied (kept for a replay)."),
                },
            )
        )
        class AnnotatedStripeWebhookView(self.target_class):
            pass

        return AnnotatedStripeWebhookView


class TransferRetrySchema(OpenApiViewExtension):
    target_class = "payouts.views.TransferRetryView"

    def view_replacement(self):
        @extend_schema_view(
            post=extend_schema(
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
                    409: _error("The transfer is not `failed`, or another actor moved it."),
                    502: _stripe_refused(
                        "TransferRetryRefused", "transfer", SellerTransferSerializer()
                    ),
                },
            )
        )
        class AnnotatedTransferRetryView(self.target_class):
            pass

        return AnnotatedTransferRetryView


class OrderRefundSchema(OpenApiViewExtension):
    target_class = "payouts.views.OrderRefundView"

    def view_replacement(self):
        @extend_schema_view(
            post=extend_schema(
                operation_id="order_refund",
                summary="Refund an order (in full, or part of it)",
                description=(
                    "Creates the refund at Stripe; its webhook completes it and schedules the "
                    "seller reversals. Needs staff status and the `marketplace.refund_order` "
                    "permission."
                ),
                tags=["staff"],
                request=RefundRequestSerializer,
                responses={
                    202: OpenApiResponse(
                        RefundSerializer, description="Created at Stripe; completes by webhook."
                    ),
                    400: _error("The amount is invalid or exceeds what is left to refund."),
                    **STAFF_ERRORS,
                    502: _stripe_refused("OrderRefundRefused", "refund", RefundSerializer()),
                },
            )
        )
        class AnnotatedOrderRefundView(self.target_class):
            pass

        return AnnotatedOrderRefundView
