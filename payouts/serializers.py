from rest_framework import serializers

from marketplace.models import Refund
from payouts.models import SellerTransfer

# What staff see of a seller transfer, in the API and on the order's admin page.
TRANSFER_FIELDS = (
    "id",
    "order",
    "seller",
    "status",
    "amount",
    "platform_fee",
    "currency",
    "amount_reversed",
    "amount_netted",
    "amount_owed",
    "stripe_transfer_id",
    "stripe_reversal_id",
    "retry_count",
    "next_retry_at",
    "error_message",
    "end_reason",
    "created_at",
    "updated_at",
)


class SellerTransferSerializer(serializers.ModelSerializer):
    class Meta:
        model = SellerTransfer
        fields = TRANSFER_FIELDS
        read_only_fields = fields


class RefundRequestSerializer(serializers.Serializer):
    amount = serializers.IntegerField(
        required=False, min_value=1, help_text="Minor units; everything left when omitted."
    )
    reason = serializers.CharField(
        max_length=1000,
        required=False,
        allow_blank=True,
        default="",
        help_text="Why; shown to the second person when the refund waits for approval.",
    )


class ReleaseRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(
        max_length=1000,
        required=False,
        allow_blank=True,
        default="",
        help_text="Why; shown to the second person when the release waits for approval.",
    )


class RequeueRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(
        max_length=500, help_text="Why the transfer is re-queued; kept in its audit trail."
    )


class RefundSerializer(serializers.ModelSerializer):
    class Meta:
        model = Refund
        fields = [
            "id",
            "order",
            "stripe_refund_id",
            "amount",
            "currency",
            "status",
            "settlement_amount",
            "settlement_currency",
            "exchange_rate",
            "error_message",
            "created_at",
        ]
        read_only_fields = fields
