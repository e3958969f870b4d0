"""The book in the admin, read-only, with the debt write-off on each seller's page.

The book in the admin: entries with their lines, the checks' breaks, and on each seller's page
their balances, their statement and the debt write-off. Nothing in the book is editable: it
changes only by posting (``ledger.services``)."""

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.db.models import OuterRef, Subquery, Sum
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from approvals.services import Outcome, staff_action_request
from config.errors import DomainError, admin_message
from config.money import AmountNotUnderstood, format_money, parse_money
from console.display import (
    EMPTY,
    Tone,
    action_form,
    badge,
    money,
    seller_named,
    stripe_link,
)
from ledger.models import AccountKind, Break, CheckRun, Entry, Line
from ledger.selectors import StatementLine, seller_balances, seller_statement_lines
from ledger.views import statement_csv
from marketplace.admin import ReadOnlyAdmin, SellerAdmin
from marketplace.models import Seller


class LineInline(admin.TabularInline):
    """An entry's lines as an accountant reads them: debits and credits, each in its currency."""

    model = Line
    extra = 0
    can_delete = False
    fields = ("account", "debit", "credit")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="debit")
    def debit(self, line):
        return money(line.amount, line.currency) if line.amount > 0 else ""

    @admin.display(description="credit")
    def credit(self, line):
        return money(-line.amount, line.currency) if line.amount < 0 else ""


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "posted_at",
        "kind",
        "amount_money",
        "lines_signed",
        "order",
        "seller_named",
        "stripe_id_link",
    )
    list_filter = ("kind", ("posted_at", admin.DateFieldListFilter))
    search_fields = ("=id", "external_id", "stripe_id", "=order__id", "seller__name")
    list_select_related = ("order", "seller")
    ordering = ("-id",)
    show_full_result_count = False
    inlines = [LineInline]
    shown_as = {"stripe_id": "stripe_id_link"}

    def get_queryset(self, request):
        # An entry's size is the sum of its debits (it balances); two small subqueries per row
        # shown, on the lines' entry index; the lines themselves in one more query per page.
        lines = Line.objects.filter(entry=OuterRef("pk")).order_by()
        debits = lines.filter(amount__gt=0).values("entry").annotate(total=Sum("amount"))
        return (
            super()
            .get_queryset(request)
            .annotate(
                debits=Subquery(debits.values("total")),
                debit_currency=Subquery(lines.values("currency")[:1]),
            )
            .prefetch_related("lines__account__seller")
        )

    @admin.display(description="amount")
    def amount_money(self, entry):
        return money(getattr(entry, "debits", None), getattr(entry, "debit_currency", ""))

    @admin.display(description="lines (debit +, credit −)")
    def lines_signed(self, entry):
        """The entry's lines, each with its sign.

        In the book's convention: a debit is positive, a credit negative, and the entry's lines add
        up to zero."""
        lines = sorted(entry.lines.all(), key=lambda line: (-line.amount, line.pk))
        return format_html_join(
            mark_safe("<br>"),
            '<span class="ledger-line">{} {}{}</span>',
            (
                (
                    line.account.kind,
                    f"({line.account.seller.name}) " if line.account.seller_id else "",
                    money(line.amount, line.currency, signed=True),
                )
                for line in lines
            ),
        )

    @admin.display(description="seller", ordering="seller__name")
    def seller_named(self, entry):
        return entry.seller.name if entry.seller_id else EMPTY

    @admin.display(description="Stripe id", ordering="stripe_id")
    def stripe_id_link(self, entry):
        return stripe_link(entry.stripe_id)


@admin.register(Break)
class BreakAdmin(ReadOnlyAdmin):
    list_display = ("id", "run", "kind", "seller", "transfer_id", "currency", "detail")
    list_filter = ("kind",)
    search_fields = ("=transfer_id", "seller__name", "detail")
    list_select_related = ("run", "seller")
    ordering = ("-id",)


@admin.register(CheckRun)
class CheckRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "started_at", "finished_at", "transfers_checked", "breaks_badge")
    ordering = ("-id",)
    shown_as = {"breaks_found": "breaks_badge"}

    @admin.display(description="breaks found", ordering="breaks_found")
    def breaks_badge(self, run):
        if run.finished_at is None:
            return badge("running", Tone.WAITING)
        tone = Tone.DANGER if run.breaks_found else Tone.OK
        return badge(str(run.breaks_found), tone)


class WriteOffForm(forms.Form):
    """The write-off form: a debt's currency and an amount in major units.

    Money as the console shows it: the currency of one of the seller's debts and an amount in major
    units with that currency's decimals (``108.00`` USD, ``5,805`` JPY)."""

    currency = forms.ChoiceField(help_text="One of the currencies the seller owes in.")
    amount = forms.CharField(
        max_length=40,
        help_text="As the console shows it: 108.00 for USD (two decimals), 5,805 for JPY (none).",
    )
    reason = forms.CharField(widget=forms.Textarea, max_length=1000)

    def __init__(self, *args, debts: dict[str, int], **kwargs):
        super().__init__(*args, **kwargs)
        self.debts = debts
        self.fields["currency"].choices = [
            (currency, f"{currency.upper()} (owes {format_money(owed, currency)})")
            for currency, owed in debts.items()
        ]

    def clean(self):
        cleaned = super().clean()
        currency = cleaned.get("currency")
        if currency and "amount" in cleaned:
            try:
                cleaned["amount"] = parse_money(cleaned["amount"], currency)
            except AmountNotUnderstood as error:
                self.add_error("amount", str(error))
                return cleaned
            owed = self.debts[currency]
            if cleaned["amount"] > owed:
                self.add_error(
                    "amount",
                    f"{format_money(cleaned['amount'], currency)} is more than the seller owes "
                    f"({format_money(owed, currency)}).",
                )
        return cleaned


def balances_text(balances: dict[str, dict]) -> str:
    """``58.05 USD owed to them, 18.00 USD owed by them`` per currency."""
    parts = [
        f"{format_money(amounts['payable'], currency)} owed to them, "
        f"{format_money(amounts['debt'], currency)} owed by them"
        + (
            f", {format_money(amounts['reserve'], currency)} in reserve"
            if amounts.get("reserve")
            else ""
        )
        for currency, amounts in balances.items()
    ]
    return "; ".join(parts) or "nothing in the book"


class InDebtFilter(admin.SimpleListFilter):
    """Filter sellers by whether they owe the platform anything.

    In debt: they owe something in any currency (their debt account's lines add up to more than
    zero: a debt is never negative in any one currency)."""

    title = "debt"
    parameter_name = "debt"

    def lookups(self, request, model_admin):
        return [("yes", "In debt"), ("no", "Owes nothing")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(debt_total__gt=0)
        if self.value() == "no":
            return queryset.exclude(debt_total__gt=0)
        return queryset


class SellerWithBookAdmin(SellerAdmin):
    """The seller's admin page, with the seller's balances and statement from the book.

    The seller's page with what the book says of them (the book extends the marketplace's
    seller admin: the marketplace never imports the book)."""

    list_display = (
        *SellerAdmin.list_display[:-1],
        "balance_money",
        "reserve_money",
        "debt_money",
    )
    list_filter = (InDebtFilter, *SellerAdmin.list_filter)
    readonly_fields = (*SellerAdmin.readonly_fields, "balances", "statement")
    actions = ["download_statement", "write_off_debt"]
    # How much of their statement the seller's page lists; the CSV action has all of it.
    STATEMENT_DAYS = 30
    STATEMENT_LINES = 200

    def get_queryset(self, request):
        # What each seller owes, for the "in debt" filter and the debt column's ordering: one
        # sum over the seller's debt account's lines (the lines' account index).
        debt = (
            Line.objects.filter(
                account__seller=OuterRef("pk"), account__kind=AccountKind.SELLER_DEBT
            )
            .order_by()
            .values("account__seller")
            .annotate(total=Sum("amount"))
            .values("total")
        )
        return super().get_queryset(request).annotate(debt_total=Subquery(debt))

    def _balances_column(self, seller, kind: str):
        amounts = [
            money(values[kind], currency)
            for currency, values in seller_balances(seller_id=seller.pk).items()
            if values.get(kind) or kind == "payable"
        ]
        return format_html_join(mark_safe("<br>"), "{}", ((a,) for a in amounts)) or EMPTY

    @admin.display(description="balance")
    def balance_money(self, seller):
        return self._balances_column(seller, "payable")

    @admin.display(description="reserve")
    def reserve_money(self, seller):
        return self._balances_column(seller, "reserve")

    @admin.display(description="debt", ordering="debt_total")
    def debt_money(self, seller):
        return self._balances_column(seller, "debt")

    @admin.display(description="balances")
    def balances(self, seller):
        if seller.pk is None:
            return EMPTY
        return balances_text(seller_balances(seller_id=seller.pk))

    @admin.display(description=f"statement, last {STATEMENT_DAYS} days")
    def statement(self, seller):
        if seller.pk is None:
            return EMPTY
        since = timezone.now() - timedelta(days=self.STATEMENT_DAYS)
        lines = seller_statement_lines(seller_id=seller.pk, start=since, end=None)
        if not lines:
            return "no lines"
        shown = lines[-self.STATEMENT_LINES :]
        rows = format_html_join("", "{}", ((_statement_row(line),) for line in shown))
        return format_html(
            '{}<table class="statement"><thead><tr><th>posted</th><th>kind</th><th>account</th>'
            "<th>amount</th><th>order</th><th>transfer</th><th>Stripe</th><th>memo</th>"
            "</tr></thead><tbody>{}</tbody></table>",
            f"the latest {len(shown)} of {len(lines)} lines (all of them: the CSV action)"
            if len(shown) < len(lines)
            else "",
            rows,
        )

    @admin.action(description="Download the statement (CSV, all time)")
    def download_statement(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Choose one seller.", messages.WARNING)
            return None
        seller = queryset.get()
        statement = {
            "seller": seller.pk,
            "from": None,
            "to": None,
            "opening": {},
            "lines": seller_statement_lines(seller_id=seller.pk, start=None, end=None),
            "closing": seller_balances(seller_id=seller.pk),
        }
        return statement_csv(statement)

    @admin.action(description="Write off the seller's debt…", permissions=["write_off"])
    def write_off_debt(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Choose one seller.", messages.WARNING)
            return None
        seller = queryset.get()
        balances = seller_balances(seller_id=seller.pk)
        debts = {currency: money["debt"] for currency, money in balances.items() if money["debt"]}
        if not debts:
            self.message_user(request, f"{seller_named(seller)} owes nothing.", messages.WARNING)
            return None
        stage = "apply" if "apply" in request.POST else "review" if "review" in request.POST else ""
        form = WriteOffForm(request.POST if stage else None, debts=debts)
        page = {
            "action": "write_off_debt",
            "selected": [seller.pk],
            "title": f"Write off {seller.name}'s debt",
        }
        if not form.is_valid():
            return action_form(
                self,
                request,
                form,
                **page,
                intro=f"What the book says of {seller_named(seller)}: {balances_text(balances)}. "
                "The next page shows what will be written off before anything is.",
                submit="Review",
                stage="review",
            )
        currency, amount = form.cleaned_data["currency"], form.cleaned_data["amount"]
        if stage == "review":
            left = format_money(debts[currency] - amount, currency)
            return action_form(
                self,
                request,
                None,
                **page,
                plan=[
                    f"{seller_named(seller)} owes {format_money(debts[currency], currency)}: "
                    f"{format_money(amount, currency)} of it is written off as bad debt, and "
                    f"they owe {left} after it.",
                    f"Reason kept with the entry: {form.cleaned_data['reason'].strip()}",
                ],
                intro="Nothing is written off until you confirm.",
                carried=[(name, request.POST[name]) for name in ("currency", "amount", "reason")],
                submit=f"Write off {format_money(amount, currency)}",
            )
        self._write_off(request, seller, **form.cleaned_data)
        return None

    def _write_off(self, request, seller, *, currency: str, amount: int, reason: str) -> None:
        """Write off now, or ask a second person first when the approval rules say so."""
        try:
            done = staff_action_request(
                kind="write_off",
                params={"seller_id": seller.pk, "currency": currency, "amount": amount},
                reason=reason,
                user=request.user,
            )
        except DomainError as error:
            level, text = admin_message(error, about=seller_named(seller))
            self.message_user(request, text, level)
            return
        if done.outcome == Outcome.WAITING:
            text = (
                f"{seller_named(seller)}: the write-off of {format_money(amount, currency)} waits "
                f"for a second person's approval (request {done.request.pk}, under Waiting for "
                "approval)."
            )
        else:
            left = format_money(done.result["debt_left"], currency)
            text = (
                f"{seller_named(seller)}: wrote off {format_money(amount, currency)} of their "
                f"debt; they owe {left} now."
            )
        self.message_user(request, text, messages.SUCCESS)

    def has_write_off_permission(self, request):
        return request.user.has_perm("ledger.write_off_debt")


def _statement_row(line: StatementLine) -> str:
    # Links by URL name: the book does not import the payouts app.
    order = (
        format_html(
            '<a href="{}">{}</a>',
            reverse("admin:marketplace_order_change", args=[line.order_id]),
            line.order_id,
        )
        if line.order_id
        else EMPTY
    )
    transfer = (
        format_html(
            '<a href="{}">{}</a>',
            reverse("admin:payouts_sellertransfer_change", args=[line.transfer_id]),
            line.transfer_id,
        )
        if line.transfer_id
        else EMPTY
    )
    return format_html(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
        "<td>{}</td></tr>",
        formats.localize(timezone.template_localtime(line.posted_at)),
        line.kind,
        line.account,
        money(line.amount, line.currency),
        order,
        transfer,
        stripe_link(line.stripe_id),
        line.memo or EMPTY,
    )


admin.site.unregister(Seller)
admin.site.register(Seller, SellerWithBookAdmin)
