"""The admin site of the operator's console: the dashboard as its first page, the "needs
attention" page, and how transfer statuses and attention reasons read everywhere in it.

``config.apps.ConsoleAdminConfig`` makes this the default admin site, so every app's
``admin.site.register`` lands here. The figures come from ``payouts.console`` (reads only, from
the read replica when one is configured); docs/console.md explains them.
"""

import csv

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from config.admin_display import Echo, Tone, badge
from config.db_router import replica_reads
from payouts import charts, console, selectors
from payouts.selectors import Attention
from payouts.transitions import EndReason, TransferStatus

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
    index_template = "admin/payouts/dashboard.html"
    # The header's console links and the breadcrumbs lead everywhere; the models' sidebar would
    # take 250 px from every list and page (they must fit 1,440 px).
    enable_nav_sidebar = False

    def get_urls(self):
        needs_attention = self.admin_view(self.needs_attention)
        export = self.admin_view(self.needs_attention_csv)
        return [
            path("needs-attention/", needs_attention, name="needs_attention"),
            path("needs-attention.csv", export, name="needs_attention_csv"),
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

    def needs_attention_csv(self, request: HttpRequest) -> StreamingHttpResponse:
        """Every row "needs attention" shows, not only the first ten of each reason."""
        if not request.user.has_perm(CONSOLE_PERMISSION):
            raise PermissionDenied
        writer = csv.writer(Echo())
        now = timezone.now()

        def lines():
            yield writer.writerow(console.ATTENTION_CSV_HEADER)
            with replica_reads():
                for row in console.needs_attention_rows(now=now, label=attention_label):
                    yield writer.writerow(row)

        response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
        name = f"needs-attention-{now:%Y%m%d-%H%M%S}.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
