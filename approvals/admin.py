"""The admin's read-only list of approval requests, decided or not.

Approval requests change only through the approvals service (the console's "Waiting for approval"
page and the staff API decide them)."""

from django.contrib import admin

from approvals.models import ApprovalRequest, ApprovalStatus
from approvals.selectors import approval_label, approval_subject
from console.display import Tone, badge, money
from marketplace.admin import ReadOnlyAdmin

APPROVAL_TONES = {
    ApprovalStatus.PENDING: Tone.WAITING,
    ApprovalStatus.APPROVED: Tone.WAITING,
    ApprovalStatus.EXECUTED: Tone.OK,
    ApprovalStatus.REJECTED: Tone.NEUTRAL,
    ApprovalStatus.EXPIRED: Tone.NEUTRAL,
    ApprovalStatus.FAILED: Tone.DANGER,
}


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "action",
        "subject",
        "amount_money",
        "requested_by",
        "reason",
        "status_badge",
        "decided_by",
        "decision_reason",
        "created_at",
        "decided_at",
    )
    list_filter = ("status", "kind")
    list_select_related = ("requested_by", "decided_by")
    ordering = ("-id",)
    show_full_result_count = False
    shown_as = {"status": "status_badge", "amount": "amount_money", "currency": "amount_money"}

    @admin.display(description="action", ordering="kind")
    def action(self, request):
        return approval_label(request)

    @admin.display(description="on")
    def subject(self, request):
        return approval_subject(request)

    @admin.display(description="amount", ordering="amount")
    def amount_money(self, request):
        return money(request.amount, request.currency)

    @admin.display(description="status", ordering="status")
    def status_badge(self, request):
        return badge(request.status, APPROVAL_TONES.get(request.status, Tone.NEUTRAL))
