from rest_framework import serializers

from marketplace.models import Dispute, Refund
from payouts.models import Payout, PayoutItem, ReserveRelease, SellerTransfer

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


class ResendRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(
        max_length=500,
        help_text="Why the release is sent again (the cause that is fixed); kept on the row.",
    )


class ReserveReleaseSerializer(serializers.ModelSerializer):
    resent_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ReserveRelease
        fields = [
            "id",
            "seller",
            "currency",
            "release_on",
            "amount",
            "state",
            "given_back_for",
            "stripe_transfer_id",
            "retry_count",
            "next_retry_at",
            "read_stripe_first",
            "error_message",
            "resent_by",
            "resent_at",
            "resend_reason",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


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


# --- Sellers' bank payouts -------------------------------------------------------------------


class PayoutSerializer(serializers.ModelSerializer):
    balanced = serializers.BooleanField(
        allow_null=True, help_text="Whether its lines add up to its amount (null until read)."
    )

    class Meta:
        model = Payout
        fields = (
            "id",
            "seller",
            "stripe_payout_id",
            "stripe_account_id",
            "amount",
            "currency",
            "status",
            "arrival_date",
            "stripe_created",
            "automatic",
            "failure_code",
            "failure_message",
            "reconciled_at",
            "reconcile_calls",
            "items_total",
            "unmatched_count",
            "reconcile_error",
            "balanced",
        )
        read_only_fields = fields


class PayoutItemSerializer(serializers.ModelSerializer):
    stripe_transfer_id = serializers.CharField(
        source="transfer.stripe_transfer_id", default="", read_only=True
    )

    class Meta:
        model = PayoutItem
        fields = (
            "kind",
            "stripe_balance_transaction_id",
            "stripe_type",
            "stripe_source_id",
            "amount",
            "fee",
            "net",
            "currency",
            "order",
            "transfer",
            "stripe_transfer_id",
            "note",
        )
        read_only_fields = fields


class PayoutRefundSerializer(serializers.ModelSerializer):
    class Meta:
        model = Refund
        fields = ("id", "stripe_refund_id", "amount", "currency", "status")
        read_only_fields = fields


class PayoutDisputeSerializer(serializers.ModelSerializer):
    class Meta:
        model = Dispute
        fields = ("id", "stripe_dispute_id", "amount", "currency", "status", "reason")
        read_only_fields = fields


class OrderInPayoutSerializer(serializers.Serializer):
    order_id = serializers.IntegerField()
    transfer_id = serializers.IntegerField()
    stripe_transfer_id = serializers.CharField()
    currency = serializers.CharField()
    transferred = serializers.IntegerField(help_text="Its transfer lines in this payout.")
    reversed = serializers.IntegerField(help_text="Its reversal lines (negative).")
    refunds = PayoutRefundSerializer(many=True)
    disputes = PayoutDisputeSerializer(many=True)


class PayoutContentsSerializer(serializers.Serializer):
    payout = PayoutSerializer()
    orders = OrderInPayoutSerializer(many=True)
    items = PayoutItemSerializer(many=True)
    unmatched = PayoutItemSerializer(many=True, help_text="Lines we cannot place, and why.")
    transfers_total = serializers.IntegerField()
    reversals_total = serializers.IntegerField()
    unmatched_total = serializers.IntegerField()
