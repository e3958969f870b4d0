"""The console's admin site: the dashboard, "needs attention", and shared labels.

The admin site of the operator's console: the dashboard as its first page, the "needs
attention" page, and how transfer statuses and attention reasons read everywhere in it.

``console.apps.ConsoleAdminConfig`` makes this the default admin site, so every app's
``admin.site.register`` lands here. The figures come from ``console.dashboard`` (reads only, from
the read replica when one is configured); docs/console.md explains them.
"""

import csv

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from approvals.selectors import approval_label, approval_rules, approval_subject, approvals_waiting
from approvals.services import approval_approve, approval_reject
from config.db_router import replica_reads
from config.errors import DomainError, admin_message
from console import charts, dashboard
from console.display import Echo, Tone, badge
from payouts import selectors
from payouts.selectors import Attention
from payouts.transfer.transitions import EndReason, TransferStatus

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
        Attention.FAILING_NOW: "Failing now: the latest attempt failed, retried with backoff",
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
        Attention.GAVE_UP_UNPAID: "Gave up paying the seller: retries exhausted (re-queue)",
        Attention.GAVE_UP_REVERSAL: "Gave up taking a share back: retries exhausted (re-queue)",
        Attention.PERMANENTLY_FAILED: "Permanently failed for a final reason (by hand)",
    }
    return labels.get(reason, reason)


# What to do, in one sentence; docs/console.md has the runbook.
ATTENTION_ADVICE = {
    Attention.FAILING_NOW: (
        "Stripe refused the latest attempt (or the seller's account stopped receiving): the "
        "workers retry on their own at the next attempt shown. Read the error; if a person must "
        "fix something (the seller's account, the platform balance), start now. A row still "
        f"failing after {_minutes(selectors.UNPAID_AFTER)} min moves to a group below."
    ),
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
    Attention.GAVE_UP_UNPAID: (
        "The seller was never paid. Fix the cause named in the error, then select the rows in "
        'the transfer list and "Re-queue selected transfers that gave up…": the worker pays '
        "them. Do not pay them by hand in the Stripe Dashboard: re-queued as well, they would "
        "be paid twice."
    ),
    Attention.GAVE_UP_REVERSAL: (
        "The seller's share was not taken back. Fix the cause, then re-queue them (same action): "
        "the worker reads Stripe first, so what an earlier attempt did is not done again. Do "
        "not reverse them by hand as well."
    ),
    Attention.PERMANENTLY_FAILED: (
        "Ended for a reason no re-queue changes; each row says what to do for its end reason."
    ),
}

# What to do with a row that ended for a final reason, per end reason.
END_REASON_ADVICE = {
    EndReason.TRANSFER_MISSING: (
        "Stripe has no such transfer in this account: find where the seller's money went in "
        "the Stripe Dashboard (transfer group order_<id>) and reverse it there by hand; "
        "reconciliation records it."
    ),
    EndReason.NO_STRIPE_TRANSFER: (
        "No Stripe transfer was ever recorded for it: look for one in the Dashboard (transfer "
        "group order_<id>); if there is none, there is nothing to take back."
    ),
    EndReason.RETRIES_EXHAUSTED: "Re-queue it once the cause is fixed; never by hand as well.",
    EndReason.ORDER_REFUNDED: "Nothing to do: the order was refunded before the seller was paid.",
}


def end_reason_advice(end_reason: str) -> str:
    return END_REASON_ADVICE.get(end_reason, "Read the error and the audit trail.")


class ConsoleAdminSite(admin.AdminSite):
    site_header = "Seller payouts"
    site_title = "Seller payouts"
    index_title = "Console"
    index_template = "admin/console/dashboard.html"
    # The header's console links and the breadcrumbs lead everywhere; the models' sidebar would
    # take 250 px from every list and page (they must fit 1,440 px).
    enable_nav_sidebar = False

    def get_urls(self):
        needs_attention = self.admin_view(self.needs_attention)
        export = self.admin_view(self.needs_attention_csv)
        waiting_for_approval = self.admin_view(self.waiting_for_approval)
        return [
            path("needs-attention/", needs_attention, name="needs_attention"),
            path("needs-attention.csv", export, name="needs_attention_csv"),
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

    def needs_attention_csv(self, request: HttpRequest) -> StreamingHttpResponse:
        """Every row "needs attention" shows, not only the first ten of each reason."""
        if not request.user.has_perm(CONSOLE_PERMISSION):
            raise PermissionDenied
        writer = csv.writer(Echo())
        now = timezone.now()

        def lines():
            yield writer.writerow(dashboard.ATTENTION_CSV_HEADER)
            with replica_reads():
                for row in dashboard.needs_attention_rows(now=now, label=attention_label):
                    yield writer.writerow(row)

        response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
        name = f"needs-attention-{now:%Y%m%d-%H%M%S}.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    def waiting_for_approval(self, request: HttpRequest):
        """The console's "Waiting for approval" page, where a second person decides.

        It lists staff money actions waiting for a second person, each with its decision: approve
        (it runs, once) or reject with a reason. A decision is a POST back here."""
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
