"""The admin's small pieces of HTML, shared by every app's admin: money, status badges and
links to Stripe. Display only; the styles are in ``config/static/console/console.css``."""

from datetime import timedelta
from enum import StrEnum

from django.core.paginator import Paginator
from django.template.response import TemplateResponse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString

from config.money import format_money
from config.stripe_links import stripe_url

EMPTY = "-"  # what the admin shows for an empty value


class CappedCountPaginator(Paginator):
    """A list's paginator that counts no further than ``CAP`` rows: an exact ``COUNT(*)`` of
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


def money(amount: int | None, currency: str) -> SafeString | str:
    """``58.05 USD``, negatives (a debt, a credit line) marked so that they stand out."""
    if amount is None or not currency:
        return EMPTY
    classes = "money money-negative" if amount < 0 else "money"
    return format_html('<span class="{}">{}</span>', classes, format_money(amount, currency))


def seller_named(seller) -> str:
    """``Alice's Shop (seller 7, acct_…)``: how a seller is named in messages and plans, never
    by internal id alone."""
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
    """The confirmation page of an admin action: ``plan``, what will happen to whom and how
    much (one line each), and ``form`` when the action needs more than the selection (a reason,
    an amount; ``None`` when it does not). It is posted back to ``action`` for the rows
    ``selected`` with ``apply`` set; nothing runs before that. ``context`` may give ``intro`` (a
    line above), ``submit`` (the button), ``stage`` (the field the post sets instead of
    ``apply``), ``carried`` (hidden (name, value) pairs) and ``nothing_to_do`` (why there is no
    button)."""
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
