"""Small HTML helpers for every app's admin pages.

The admin's small pieces of HTML, shared by every app's admin: money, status badges and
links to Stripe. Display only; the styles are in ``console/static/console/console.css``."""

import csv
from datetime import datetime, timedelta
from enum import StrEnum
from html import unescape

from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpResponseBadRequest, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, strip_tags
from django.utils.safestring import SafeString

from config.money import format_money
from console.stripe_links import stripe_url

EMPTY = "-"  # what the admin shows for an empty value


class CappedCountPaginator(Paginator):
    """Admin paginator that stops counting at ``CAP`` rows.

    A list's paginator that counts no further than ``CAP`` rows: an exact ``COUNT(*)`` of
    millions of rows costs a second on every page. A list longer than that shows "10000" and
    its first hundred pages; a filter or a search narrows it."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list.order_by()[: self.CAP].count()


class Tone(StrEnum):
    """How a status reads at a glance."""

    OK = "ok"  # done as intended
    WAITING = "waiting"  # on its way, nothing to do yet
    WARNING = "warning"  # retrying; look if it lasts
    DANGER = "danger"  # a person must act
    NEUTRAL = "neutral"  # settled, nothing more will happen


def money(amount: int | None, currency: str, *, signed: bool = False) -> SafeString | str:
    """An amount with its currency, as the console shows money.

    Like ``58.05 USD``; negatives (a debt, a credit line) marked so that they stand out; ``signed``:
    positives get their ``+`` too (a ledger line)."""
    if amount is None or not currency:
        return EMPTY
    classes = "money money-negative" if amount < 0 else "money"
    text = format_money(amount, currency)
    if signed and amount > 0:
        text = f"+{text}"
    return format_html('<span class="{}">{}</span>', classes, text)


def seller_named(seller) -> str:
    """A seller's name for messages and plans, with their id and account.

    ``Alice's Shop (seller 7, acct_…)``: never the internal id alone."""
    account = seller.stripe_account_id or "no connected account"
    return f"{seller.name} (seller {seller.pk}, {account})"


def badge(value: str, tone: Tone, *, title: str = "") -> SafeString | str:
    if not value:
        return EMPTY
    return format_html(
        '<span class="badge badge-{}" title="{}">{}</span>', tone.value, title or value, value
    )


def stripe_link(stripe_id: str) -> SafeString | str:
    """The id, linking to where Stripe (or the local sandbox) shows it."""
    if not stripe_id:
        return EMPTY
    url = stripe_url(stripe_id)
    if url is None:
        return stripe_id
    return format_html(
        '<a class="stripe-link" href="{}" target="_blank" rel="noopener noreferrer" '
        'title="Open in Stripe">{}</a>',
        url,
        stripe_id,
    )


def age(duration: timedelta | None) -> str:
    """``2 d 3 h``, ``5 min 12 s``, ``40 s``: the two largest units are enough to act on."""
    if duration is None:
        return EMPTY
    seconds = max(int(duration.total_seconds()), 0)
    units = [("d", 86400), ("h", 3600), ("min", 60), ("s", 1)]
    parts = []
    for name, size in units:
        count, seconds = divmod(seconds, size)
        if count or (parts and len(parts) < 2):
            parts.append(f"{count} {name}")
        if len(parts) == 2:
            break
    return " ".join(parts) or "0 s"


def action_form(
    model_admin, request, form, *, action: str, selected, title: str, plan=(), **context
):
    """Render the confirmation page of an admin action.

    ``plan``: what will happen to whom and how much (one line each), and ``form`` when the
    action needs more than the selection (a reason, an amount; ``None`` when it does not). It is
    posted back to ``action`` for the rows ``selected`` with ``apply`` set; nothing runs before
    that. ``context`` may give ``intro`` (a line above), ``submit`` (the button), ``stage`` (the
    field the post sets instead of ``apply``), ``carried`` (hidden (name, value) pairs) and
    ``nothing_to_do`` (why there is no button)."""
    page = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "form": form,
        "action": action,
        "selected": list(selected),
        "plan": list(plan),
        "opts": model_admin.model._meta,
        "submit": "Apply",
        "stage": "apply",
        **context,
    }
    return TemplateResponse(request, "admin/action_form.html", page)


class Echo:
    """A file-like object that lets ``csv.writer`` feed a streaming response.

    Its ``write`` hands back what it is given: ``csv.writer`` formats a row, and the streaming
    response sends it."""

    def write(self, value: str) -> str:
        return value


class CsvExport:
    """A list's "Export CSV" of every row its filters select.

    The rows its filters, date filters and search select, every one of them (not just the page),
    each column as the list shows it, as text. Streamed, so a large export costs the server one
    chunk of rows at a time; capped at ``CSV_LIMIT`` rows (narrow the filters for more)."""

    change_list_template = "admin/change_list_export.html"
    CSV_LIMIT = 200_000

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}_export"
        export = self.admin_site.admin_view(self.export_csv)
        return [path("export.csv", export, name=name), *super().get_urls()]

    def export_csv(self, request):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters as error:
            return HttpResponseBadRequest(f"Unknown filter: {error}")
        columns = [name for name in changelist.list_display if name != "action_checkbox"]
        heads = [_column_title(self, name) for name in columns]
        rows = changelist.get_queryset(request)[: self.CSV_LIMIT].iterator(chunk_size=2000)
        writer = csv.writer(Echo())

        def lines():
            yield writer.writerow(heads)
            for row in rows:
                yield writer.writerow([_column_text(self, row, name) for name in columns])

        name = f"{self.opts.model_name}s-{timezone.now():%Y%m%d-%H%M%S}.csv"
        response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


def _column_title(model_admin, name: str) -> str:
    attr = getattr(model_admin, name, None)
    if attr is not None and hasattr(attr, "short_description"):
        return str(attr.short_description)
    try:
        return str(model_admin.opts.get_field(name).verbose_name)
    except Exception:  # noqa: BLE001 - not a field: the name is the title
        return name


def _column_text(model_admin, row, name: str) -> str:
    attr = getattr(model_admin, name, None)
    value = attr(row) if callable(attr) else getattr(row, name)
    if isinstance(value, datetime):
        value = timezone.localtime(value).isoformat()
    elif value is None:
        value = ""
    # The list's HTML (a badge, a link, money with its sign) as the text a person reads.
    return " ".join(unescape(strip_tags(str(value))).split())


class PageActions:
    """A row's page with the list's actions that apply to it, as buttons.

    ``page_actions_for`` names them; each posts the action for this one row to the list, which shows
    the action's confirmation page before anything runs."""

    change_form_template = "admin/change_form_actions.html"

    def page_actions_for(self, obj) -> list[str]:
        return []

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            available = self.get_actions(request)
            context["page_actions"] = [
                (name, available[name][2])
                for name in self.page_actions_for(obj)
                if name in available
            ]
        return super().render_change_form(request, context, add, change, form_url, obj)
