"""Four eyes: staff money actions that a second person approves or rejects.

A staff money action above its approval rule waits for a second person, who approves it (and it
runs, once) or rejects it.

Running once rests on two things. The decision is a guarded ``UPDATE … SET status='approved'
WHERE status='pending'`` (and not expired, and not by the person who asked): of two approvers at
the same moment, or a retried approve, exactly one updates the row; the others get a 409. The
action's database effects commit in that same transaction (``Action.prepare``), so a crash
leaves either nothing or all of them. An action that then calls Stripe does so with no
transaction open and the idempotency key of what ``prepare`` reserved; if its process dies or
the answer is lost, the request stays ``approved`` and the sweep resumes it (reading Stripe
first), never runs it afresh.
"""

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from approvals.models import ApprovalRequest, ApprovalStatus
from approvals.registry import Action, ActionOutcomeUnknown, Ask, action_for
from config.errors import Conflict, DomainError, InvalidInput, NotFound

logger = logging.getLogger(__name__)

A = ApprovalStatus


class UnknownApprovalRequest(NotFound):
    code = "unknown_approval_request"


class OwnApprovalRequest(DomainError):
    """Four eyes: the person who asked can never decide, whatever their rights."""

    code = "own_request"
    http_status = 403


class ApprovalRequestDecided(Conflict):
    code = "approval_decided"


class ApprovalReasonMissing(InvalidInput):
    code = "reason_required"


class Outcome(StrEnum):
    RAN = "ran"  # under the threshold: the action ran at once
    WAITING = "waiting"  # above it: a request waits for a second person


@dataclass(frozen=True, slots=True)
class StaffActionOutcome:
    outcome: Outcome
    # What the action did (``Outcome.RAN``): the ids its interface shows.
    result: dict
    request: ApprovalRequest | None = None


def staff_action_request(
    *, kind: str, params: dict[str, Any], reason: str, user
) -> StaffActionOutcome:
    """Run a staff money action now, or record it for a second person's approval.

    The request is recorded when the action's approval rule says so. Raises the action's own errors
    (bad parameters, unknown rows, Stripe's refusal when it runs now); nothing is recorded then."""
    action = action_for(kind)
    reason = (reason or "").strip()
    if action.reason_required and not reason:
        raise ApprovalReasonMissing(f"a reason is required for a {action.label.lower()}")
    measured = action.measure(params)
    rules = settings.PAYOUTS.approvals
    if not rules.needs_approval(kind=kind, amount=measured.amount, currency=measured.currency):
        ask = Ask(params=measured.params, reason=reason, user=user)
        with transaction.atomic():
            result = action.prepare(ask)
        if action.send is not None:
            result = {**result, **action.send(result)}
        return StaffActionOutcome(Outcome.RAN, result)
    request = ApprovalRequest.objects.create(
        kind=kind,
        params=dict(measured.params),
        amount=measured.amount,
        currency=measured.currency,
        reason=reason,
        requested_by=user,
        expires_at=timezone.now() + rules.expires_after,
    )
    logger.info(
        "staff action waits for approval",
        extra={"approval_request_id": request.pk, "kind": kind, "user": user.get_username()},
    )
    return StaffActionOutcome(Outcome.WAITING, {}, request)


def approval_approve(*, request_id: int, user, reason: str = "") -> ApprovalRequest:
    """Approve the request as ``user``: its action runs, once.

    Returns the request: ``executed``, ``failed`` (the action refused; its error recorded, nothing
    changed), or ``approved`` while Stripe's answer is unknown (the sweep finishes it).

    Raises ``UnknownApprovalRequest``, ``OwnApprovalRequest`` or ``ApprovalRequestDecided``
    (decided, expired, or another approver was first); nothing changes then."""
    now = timezone.now()
    with transaction.atomic():
        claimed = _claim(
            request_id,
            user,
            now,
            status=A.APPROVED,
            decided_by=user,
            decided_at=now,
            decision_reason=(reason or "").strip(),
            claimed_at=now,
        )
        if claimed:
            request = ApprovalRequest.objects.select_related("requested_by").get(pk=request_id)
            action = action_for(request.kind)
            _prepare(request, action, approver=user)
    if not claimed:
        raise _why_not(request_id, user, now)
    if request.status == A.APPROVED:
        _send(request, action, action.send)
    request.refresh_from_db()
    return request


def approval_reject(*, request_id: int, user, reason: str) -> ApprovalRequest:
    """Reject the request as ``user``, with a reason: its action never runs.

    Raises as ``approval_approve`` does, and ``ApprovalReasonMissing``."""
    reason = (reason or "").strip()
    if not reason:
        raise ApprovalReasonMissing("a rejection needs a reason")
    now = timezone.now()
    claimed = _claim(
        request_id,
        user,
        now,
        status=A.REJECTED,
        decided_by=user,
        decided_at=now,
        decision_reason=reason,
    )
    if not claimed:
        raise _why_not(request_id, user, now)
    return ApprovalRequest.objects.get(pk=request_id)


def approvals_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Beat's sweep of approval requests: expire the undecided, finish the interrupted.

    It expires requests nobody decided in time and finishes approved actions whose process died (or
    whose Stripe answer was lost) mid-run. Returns counts."""
    now = now or timezone.now()
    expired = ApprovalRequest.objects.filter(status=A.PENDING, expires_at__lte=now).update(
        status=A.EXPIRED, updated_at=now
    )
    resumed = 0
    stale = now - settings.PAYOUTS.claim_lease
    waiting = ApprovalRequest.objects.filter(status=A.APPROVED, claimed_at__lt=stale)
    for request_id in waiting.order_by("pk").values_list("pk", flat=True):
        # Claimed again, guarded: of two sweeps, one resumes it.
        if ApprovalRequest.objects.filter(
            pk=request_id, status=A.APPROVED, claimed_at__lt=stale
        ).update(claimed_at=now, updated_at=now):
            request = ApprovalRequest.objects.get(pk=request_id)
            action = action_for(request.kind)
            _send(request, action, action.resume)
            resumed += 1
    return {"expired": expired, "resumed": resumed}


def _claim(request_id: int, user, now: datetime, **fields) -> int:
    """The guarded decision: one row updated means this person decided, now."""
    return (
        ApprovalRequest.objects.filter(pk=request_id, status=A.PENDING, expires_at__gt=now)
        .exclude(requested_by=user)
        .update(updated_at=now, **fields)
    )


def _why_not(request_id: int, user, now: datetime) -> DomainError:
    """The error for a decision that updated no row.

    Unknown, own, or decided already (an expired request that nobody has swept yet is marked so
    first)."""
    request = ApprovalRequest.objects.filter(pk=request_id).select_related("decided_by").first()
    if request is None:
        return UnknownApprovalRequest(f"No approval request {request_id}.")
    if request.requested_by_id == user.pk:
        return OwnApprovalRequest(
            f"approval request {request_id} is your own: another person must decide it"
        )
    if request.status == A.PENDING and request.expires_at <= now:
        ApprovalRequest.objects.filter(pk=request_id, status=A.PENDING).update(
            status=A.EXPIRED, updated_at=now
        )
        return ApprovalRequestDecided(
            f"approval request {request_id} expired at {request.expires_at:%Y-%m-%d %H:%M %Z}"
        )
    by = f" by {request.decided_by.get_username()}" if request.decided_by else ""
    return ApprovalRequestDecided(f"approval request {request_id} is {request.status}{by} already")


def _prepare(request: ApprovalRequest, action: Action, *, approver) -> None:
    """Apply an approved action's database effects in the claim's transaction.

    Or mark the request failed with the action's error when it refuses (its effects rolled back, the
    decision kept). An action with nothing to send is executed here."""
    ask = Ask(
        params=request.params,
        reason=request.reason,
        user=request.requested_by,
        request_id=request.pk,
        approved_by=approver,
    )
    try:
        with transaction.atomic():
            result = action.prepare(ask)
    except DomainError as error:
        _record(request, A.FAILED, error=error.message)
        return
    if action.send is None:
        _record(request, A.EXECUTED, result=result)
    else:
        _record(request, A.APPROVED, result=result)


def _send(request: ApprovalRequest, action: Action, step) -> None:
    """After commit, no transaction open: the action's Stripe call (or its resumption)."""
    try:
        result = step(request.result)
    except ActionOutcomeUnknown as error:
        # Leave it approved: the sweep resumes it after the claim lease, reading Stripe first.
        _record(request, A.APPROVED, error=error.message)
        return
    except DomainError as error:
        _record(request, A.FAILED, error=error.message)
        return
    _record(request, A.EXECUTED, result={**request.result, **result})


def _record(request: ApprovalRequest, status: str, *, result=None, error: str = "") -> None:
    """Record the outcome of an approved request's action.

    From ``approved`` only: a row decided otherwise (a second sweep's run finishing late) is left as
    its first outcome made it."""
    now = timezone.now()
    fields: dict[str, Any] = {"status": status, "error": error, "updated_at": now}
    if result is not None:
        fields["result"] = result
    if status == A.EXECUTED:
        fields["executed_at"] = now
    updated = ApprovalRequest.objects.filter(pk=request.pk, status=A.APPROVED).update(**fields)
    if updated:
        for name, value in fields.items():
            setattr(request, name, value)
