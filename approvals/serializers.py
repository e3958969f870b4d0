from rest_framework import serializers

from approvals.models import ApprovalRequest
from approvals.selectors import approval_label, approval_subject


class ApprovalRequestSerializer(serializers.ModelSerializer):
    label = serializers.SerializerMethodField(help_text="What the action is.")
    subject = serializers.SerializerMethodField(help_text='What it acts on ("order 12").')
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ApprovalRequest
        fields = [
            "id",
            "kind",
            "label",
            "subject",
            "params",
            "amount",
            "currency",
            "reason",
            "requested_by",
            "status",
            "decided_by",
            "decision_reason",
            "result",
            "error",
            "created_at",
            "expires_at",
            "decided_at",
            "executed_at",
        ]
        read_only_fields = fields

    def get_label(self, request: ApprovalRequest) -> str:
        return approval_label(request)

    def get_subject(self, request: ApprovalRequest) -> str:
        return approval_subject(request)


class DecisionSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")


class RejectionSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=1000)
