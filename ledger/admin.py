"""The book in the admin: entries with their lines, the checks' breaks, and on each seller's page
their balances, their statement and the debt write-off. Nothing in the book is editable: it
changes only by posting (``ledger.services``)."""

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils.html import format_html_join

from config.errors import DomainError, admin_message
from ledger.models import Break, CheckRun, Entry, Line
from ledger.selectors import seller_balances, seller_statement_lines
from ledger.services import debt_write_off
from ledger.views import statement_csv
from marketplace.admin import ReadOnlyAdmin, SellerAdmin
from marketplace.models import Seller


class LineInline(admin.TabularInline):
    model = Line
    extra = 0
    can_delete = False
    fields = ("account", "currency", "amount")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "posted_at", "kind", "external_id", "order", "seller", "stripe_id")
    list_filter = ("kind",)
    search_fields = ("=id", "external_id", "stripe_id", "=order__id", "seller__name")
    list_select_related = ("order", "seller")
    ordering = ("-id",)
    show_full_result_count = False
    inlines = [LineInline]


@admin.register(Break)
class BreakAdmin(ReadOnlyAdmin):
    list_display = ("id", "run", "kind", "seller", "transfer_id", "currency", "detail")
    list_filter = ("kind",)
    search_fields = ("=transfer_id", "seller__name", "detail")
    list_select_related = ("run", "seller")
    ordering = ("-id",)


@admin.register(CheckRun)
class CheckRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "started_at", "finished_at", "transfers_checked", "breaks_found")
    ordering = ("-id",)


class WriteOffForm(forms.Form):
    currency = forms.RegexField(regex=r"^[a-z]{3}$", help_text="Lowercase ISO code, e.g. usd.")
    amount = forms.IntegerField(min_value=1, help_text="Minor units (cents).")
    reason = forms.CharField(widget=forms.Textarea, max_length=1000)


class SellerWithBookAdmin(SellerAdmin):
    """The seller's page with what the book says of them (the book extends the marketplace's
    seller admin: the marketplace never imports the book)."""

    readonly_fields = (*SellerAdmin.readonly_fields, "balances")
    actions = ["download_statement", "write_off_debt"]

    @admin.display(description="balances (owed to them / owed by them)")
    def balances(self, seller):
        rows = seller_balances(seller_id=seller.pk).items()
        text = format_html_join(", ", "{} {} / {}", ((c, b["payable"], b["debt"]) for c, b in rows))
        return text or "nothing in the book"

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
        form = WriteOffForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            try:
                debt_write_off(seller_id=seller.pk, user=request.user, **form.cleaned_data)
            except DomainError as error:
                level, text = admin_message(error, about=f"seller {seller.pk}")
                self.message_user(request, text, level)
            else:
                self.message_user(request, f"seller {seller.pk}: debt written off")
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": f"Write off {seller}'s debt",
            "seller": seller,
            "balances": seller_balances(seller_id=seller.pk),
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/ledger/write_off.html", context)

    def has_write_off_permission(self, request):
        return request.user.has_perm("ledger.write_off_debt")


admin.site.unregister(Seller)
admin.site.register(Seller, SellerWithBookAdmin)
