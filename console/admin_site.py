"""The console's admin site: the dashboard, "needs attention", and shared labels.

The admin site of the operator's console: the dashboard as its first page, the "needs
attention" page, and how transfer statuses and attention reasons read everywhere in it.

``console.apps.ConsoleAdminConfig`` makes this the default admin site, so every app's
``admin.site.register`` lands here. The figures come from ``console.dashboard`` (reads only, from
the read replica when one is configured); docs/console.md explains them.
"""

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from approvals.selectors import approval_label, approval_rules, approval_subject, approvals_waiting
from approvals.services import approval_approve, approval_reject
from config.db_router import replica_reads
from config.errors import DomainError, admin_message
from console import charts, dashboard
from console.display import Tone, badge
from payouts import selectors
from payouts.selectors import Attention
from payouts.transfer.transitions import TransferStatus

# Who may see the console: its figures are the transfers' money.
CONSOLE_PERMISSION = "payouts.view_sellertransfer"
# Who may see what waits for a second person, and who may decide it.
APPROVALS_VIEW_PERMISSION = "approvals.view_approvalrequest"
APPROVE_PERMISSION = "approvals.approve_approvalrequest"

TRANSFER_TONES = {
    TransferStatus.PENDING: Tone.WAITING,
    TransferStatus.HELD: Tone.WAITING,
    TransferStatus.COMPLETED: Tone.OK,
    TransferStatus.FAILED: Tone.WARNING,
    TransferStatus.PERMANENTLY_FAILED: Tone.DANGER,
    TransferStatus.REVERSAL_PENDING: Tone.WAITING,
    TransferStatus.PARTIALLY_REVERSED: Tone.OK,
    TransferStatus.REVERSED: Tone.NEUTRAL,
    TransferStatus.REVERSAL_REFUSED: Tone.DANGER,
}


def transfer_badge(status: str):
    return badge(status, TRANSFER_TONES.get(status, Tone.NEUTRAL))


def _minutes(duration) -> int:
    return int(duration.total_seconds() // 60)


def attention_label(reason: str) -> str:
    """One line naming the reason, with its threshold."""
    unpaid = _minutes(selectors.UNPAID_AFTER)
    labels = {
        Attention.UNPAID_PENDING: f"Seller not paid: pending, due for over {unpaid} min",
        Attention.UNPAID_FAILED: f"Seller not paid: failed, made over {unpaid} min ago",
        Attention.HELD_ACCOUNT: "Seller not paid: their account cannot receive transfers",
        Attention.FAILING_REVERSAL: (
            f"Reversal failing: {selectors.FAILING_AFTER_ATTEMPTS}+ attempts failed in a row"
        ),
        Attention.STALE_REVERSAL: (
            f"Reversal pending, not updated for {_minutes(selectors.STALE_REVERSAL_AFTER)} min"
        ),
        Attention.REVERSAL_REFUSED: "Reversal refused: the seller's balance could not cover it",
        Attention.PERMANENTLY_FAILED: "Permanently failed",
    }
    return labels.get(reason, reason)


# What to do, in one sentence; docs/console.md has the runbook.
ATTENTION_ADVICE = {
    Attention.UNPAID_PENDING: (
        "No worker took it: check /healthz (workers, beat) and that the transfer retry worker "
        "is enabled."
    ),
    Attention.UNPAID_FAILED: (
        "Stripe keeps refusing it: read the error; fix the seller's account or the platform "
        "balance, then retry it from the transfer list."
    ),
    Attention.HELD_ACCOUNT: (
        "Ask the seller to finish their Stripe onboarding or reconnect; it is paid as soon as "
        "Stripe says the account can receive."
    ),
    Attention.FAILING_REVERSAL: (
        "Stripe answers 5xx or nothing for it: it is still retried with backoff; look at "
        "Stripe's status if many are failing."
    ),
    Attention.STALE_REVERSAL: (
        "Nothing touched it for a while: due in the past means no worker or beat is running; "
        "due in the future means a long backoff."
    ),
    Attention.REVERSAL_REFUSED: (
        "What was not taken back is the seller's debt, netted from their next transfers "
        "(or written off on the seller's page)."
    ),
    Attention.PERMANENTLY_FAILED: (
        "Read the end reason: pay or reverse by hand in the Stripe Dashboard (transfer group "
        "order_<id>); reconciliation records it."
    ),
}


class ConsoleAdminSite(admin.AdminSite):
    site_header = "Seller payouts"
    site_title = "Seller payouts"
    index_title = "Console"
    index_template = "admin/console/dashboard.html"

    def get_urls(self):
        needs_attention = self.admin_view(self.needs_attention)
        waiting_for_approval = self.admin_view(self.waiting_for_approval)
        return [
            path("needs-attention/", needs_attention, name="needs_attention"),
            path("waiting-for-approval/", waiting_for_approval, name="waiting_for_approval"),
            *super().get_urls(),
        ]

    def index(self, request: HttpRequest, extra_context=None):
        if not request.user.has_perm(CONSOLE_PERMISSION):
            return super().index(request, extra_context)
        window = dashboard.WINDOWS.get(request.GET.get("window", ""), dashboard.DEFAULT_WINDOW)
        with replica_reads():
            board = dashboard.dashboard(now=timezone.now(), window=window)
        context = {
            "board": board,
            "windows": dashboard.WINDOWS.values(),
            "attention": [
                (reason, attention_label(reason), count)
                for reason, count in board.attention.items()
            ],
            "moves_chart": charts.stacked_bars(board.moves),
            "backlog_chart": charts.lines(board.backlog),
            "approvals_waiting": approvals_waiting(now=timezone.now()).count(),
            **(extra_context or {}),
        }
        return super().index(request, context)

    def needs_attention(self, request: HttpRequest) -> TemplateResponse:
        if not request.user.has_perm(CONSOLE_PERMISSION):
            raise PermissionDenied
        with replica_reads():
            report = dashboard.needs_attention(now=timezone.now())
        context = {
            **self.each_context(request),
            "title": "Needs attention",
            "report": report,
            "groups": [
                (group, attention_label(group.reason), ATTENTION_ADVICE[group.reason])
                for group in report.groups
            ],
        }
        return TemplateResponse(request, "admin/console/needs_attention.html", context)

    def waiting_for_approval(self, request: HttpRequest):
        """Staff money actions waiting for a second person, each with its decision: approve (it
        runs, once) or reject with a reason. A decision is a POST back here."""
        user = request.user
        if not (user.has_perm(APPROVALS_VIEW_PERMISSION) or user.has_perm(APPROVE_PERMISSION)):
            raise PermissionDenied
        if request.method == "POST":
            if not user.has_perm(APPROVE_PERMISSION):
                raise PermissionDenied
            self._decide(request)
            return HttpResponseRedirect(request.path)
        now = timezone.now()
        waiting = [
            {
                "request": row,
                "label": approval_label(row),
                "subject": approval_subject(row),
                "own": row.requested_by_id == user.pk,
            }
            for row in approvals_waiting(now=now)
        ]
        context = {
            **self.each_context(request),
            "title": "Waiting for approval",
            "now": now,
            "waiting": waiting,
            "can_decide": user.has_perm(APPROVE_PERMISSION),
            "rules": approval_rules(),
            "expires_after": _duration_text(settings.PAYOUTS.approvals.expires_after),
        }
        return TemplateResponse(request, "admin/console/waiting_for_approval.html", context)

    def _decide(self, request: HttpRequest) -> None:
        raw_id = request.POST.get("request", "")
        decision = request.POST.get("decision")
        reason = request.POST.get("reason", "")
        if not raw_id.isdigit() or decision not in ("approve", "reject"):
            messages.warning(request, "Choose a request and approve or reject it.")
            return
        request_id = int(raw_id)
        try:
            if decision == "approve":
                decided = approval_approve(request_id=request_id, user=request.user, reason=reason)
            else:
                decided = approval_reject(request_id=request_id, user=request.user, reason=reason)
        except DomainError as error:
            level, text = admin_message(error, about=f"approval request {request_id}")
            messages.add_message(request, level, text)
            return
        text = f"approval request {request_id}: {decided.status}"
        if decided.error:
            text += f" ({decided.error})"
        level = messages.ERROR if decided.status == "failed" else messages.SUCCESS
        messages.add_message(request, level, text)


def _duration_text(duration) -> str:
    days, seconds = duration.days, duration.seconds
    if seconds == 0:
        return f"{days} day{'s' if days != 1 else ''}"
    return str(duration)
