from django.conf import settings
from django.db import models
from django.db.models import F, Q


class ApprovalStatus(models.TextChoices):
    PENDING = "pending"  # waits for a second person
    APPROVED = "approved"  # claimed by its approver; the action is running (or its answer lost)
    EXECUTED = "executed"  # the action ran, once
    REJECTED = "rejected"
    EXPIRED = "expired"  # nobody decided within APPROVAL_EXPIRES_AFTER
    FAILED = "failed"  # approved, but the action refused (the order was refunded meanwhile…)


# Statuses in which nothing more happens to a request.
DECIDED = [
    ApprovalStatus.EXECUTED,
    ApprovalStatus.REJECTED,
    ApprovalStatus.EXPIRED,
    ApprovalStatus.FAILED,
]


class ApprovalRequest(models.Model):
    """A staff money action waiting for, or decided by, a second person.

    The action is above its approval rule's threshold. ``status`` changes only through guarded
    ``UPDATE … WHERE status = …`` in ``approvals.services``: the one that updates the row is the one
    that acts."""

    Status = ApprovalStatus

    kind = models.CharField(max_length=32, help_text="The action (approvals.registry).")
    params = models.JSONField(help_text="The action's parameters, as it will run.")
    amount = models.BigIntegerField(help_text="Minor units.")
    currency = models.CharField(max_length=3)
    reason = models.TextField(blank=True, default="")
    # PROTECT: the audit trail keeps its people; staff with history are deactivated.
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    decision_reason = models.TextField(blank=True, default="")
    # What the action did or reserved (a refund row's id, say): how a resumed run finds it.
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    # When the running action was last claimed: the sweep resumes an approved request whose
    # claim is older than the longest Stripe call (its process died mid-action).
    claimed_at = models.DateTimeField(null=True, blank=True)
    executed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        permissions = [
            ("approve_approvalrequest", "Can approve or reject another person's money action"),
            # Beside four eyes: who may take away every staff action and money move.
            ("export_audit", "Can export the audit trail (staff actions and money moves)"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ApprovalStatus.values), name="chk_approval_status"
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="chk_approval_amount"),
            # Four eyes in the database too: whatever the code path, nobody decides their own.
            models.CheckConstraint(
                condition=Q(decided_by__isnull=True) | ~Q(decided_by=F("requested_by")),
                name="chk_approval_not_own",
            ),
        ]
        indexes = [
            models.Index(
                fields=["expires_at"],
                condition=Q(status="pending"),
                name="idx_approval_pending",
            ),
            models.Index(fields=["created_at"], name="idx_approval_created"),
            models.Index(
                fields=["decided_at"],
                condition=Q(decided_at__isnull=False),
                name="idx_approval_decided",
            ),
        ]

    def __str__(self) -> str:
        return f"approval request {self.pk} ({self.kind}, {self.status})"
