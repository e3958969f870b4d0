"""The admin site of the operator's console: the dashboard as its first page, the "needs
attention" page, and how transfer statuses and attention reasons read everywhere in it.

``config.apps.ConsoleAdminConfig`` makes this the default admin site, so every app's
``admin.site.register`` lands here. The figures come from ``payouts.console`` (reads only, from
the read replica when one is configured); docs/console.md explains them.
"""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from config.admin_display import Tone, badge
from config.db_router import replica_reads
from payouts import charts, console, selectors
from payouts.selectors import Attention
from payouts.transitions import TransferStatus

S = TransferStatus
# Who may see the console: its figures are the transfers' money.
CONSOLE_PERMISSION = "payouts.view_sellertransfer"

TRANSFER_TONES = {
    S.PENDING: Tone.WAITING,
    S.HELD: Tone.WAITING,
    S.COMPLETED: Tone.OK,
    S.FAILED: Tone.WARNING,
    S.PERMANENTLY_FAILED: Tone.DANGER,
    S.REVERSAL_PENDING: Tone.WAITING,
    S.PARTIALLY_REVERSED: Tone.OK,
    S.REVERSED: Tone.NEUTRAL,
    S.REVERSAL_REFUSED: Tone.DANGER,
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
    index_template = "admin/payouts/dashboard.html"

    def get_urls(self):
        needs_attention = self.admin_view(self.needs_attention)
        return [
            path("needs-attention/", needs_attention, name="needs_attention"),
            *super().get_urls(),
        ]

    def index(self, request: HttpRequest, extra_context=None):
        if not request.user.has_perm(CONSOLE_PERMISSION):
            return super().index(request, extra_context)
        window = console.WINDOWS.get(request.GET.get("window", ""), console.DEFAULT_WINDOW)
        with replica_reads():
            board = console.dashboard(now=timezone.now(), window=window)
        context = {
            "board": board,
            "windows": console.WINDOWS.values(),
            "attention": [
                (reason, attention_label(reason), count)
                for reason, count in board.attention.items()
            ],
            "moves_chart": charts.stacked_bars(board.moves),
            "backlog_chart": charts.lines(board.backlog),
            **(extra_context or {}),
        }
        return super().index(request, context)

    def needs_attention(self, request: HttpRequest) -> TemplateResponse:
        if not request.user.has_perm(CONSOLE_PERMISSION):
            raise PermissionDenied
        with replica_reads():
            report = console.needs_attention(now=timezone.now())
        context = {
            **self.each_context(request),
            "title": "Needs attention",
            "report": report,
            "groups": [
                (group, attention_label(group.reason), ATTENTION_ADVICE[group.reason])
                for group in report.groups
            ],
        }
        return TemplateResponse(request, "admin/payouts/needs_attention.html", context)
