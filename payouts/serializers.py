from rest_framework import serializers

from payouts.models import SellerTransfer


class SellerTransferSerializer(serializers.ModelSerializer):
    class Meta:
        model = SellerTransfer
        fields = [
            "id",
            "order",
            "seller",
            "status",
            "amount",
            "platform_fee",
            "currency",
            "amount_reversed",
            "stripe_transfer_id",
            "stripe_reversal_id",
            "retry_count",
            "next_retry_at",
            "error_message",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
