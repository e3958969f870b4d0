"""Reads of approval requests: what waits for a second person, and the rules."""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import QuerySet

from approvals.models import ApprovalRequest, ApprovalStatus
from approvals.registry import action_for, actions


def approvals_waiting(*, now: datetime) -> QuerySet[ApprovalRequest]:
    """The approval requests still open to a decision, oldest first.

    Served by the partial index on ``expires_at`` where pending."""
    return (
        ApprovalRequest.objects.filter(status=ApprovalStatus.PENDING, expires_at__gt=now)
        .select_related("requested_by")
        .order_by("created_at", "pk")
    )


def approval_subject(request: ApprovalRequest) -> str:
    return action_for(request.kind).subject(request.params)


def approval_label(request: ApprovalRequest) -> str:
    return action_for(request.kind).label


@dataclass(frozen=True, slots=True)
class RuleShown:
    kind: str
    label: str
    rule: str


def approval_rules() -> list[RuleShown]:
    """Each registered action with its rule, as the console shows them."""
    rules = settings.PAYOUTS.approvals.rules
    return [
        RuleShown(action.kind, action.label, rules[action.kind].describe())
        for action in actions()
        if action.kind in rules
    ]
