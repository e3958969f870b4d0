"""Admin pages for sellers, orders, refunds and disputes, read-only.

Admin for sellers, orders and refunds. Statuses and Stripe ids come from Stripe through the
services (webhooks, staff API), so they are shown, never edited by hand. The payouts app adds
the seller transfers to the order page (``payouts/admin.py``): this app never imports it."""

from typing import ClassVar

from django.contrib import admin
from django.db.models import OuterRef, Subquery, Sum
from django.utils.html import format_html

from console.display import (
    EMPTY,
    CappedCountPaginator,
    CsvExport,
    Tone,
    badge,
    money,
    stripe_link,
)
from marketplace.models import (
    AccountStatus,
    Dispute,
    DisputeStatus,
    Order,
    OrderItem,
    OrderStatus,
    Refund,
    RefundStatus,
    Seller,
    SellerAccountChange,
)
from marketplace.selectors import order_total
from marketplace.services import seller_account_set

ORDER_TONES = {
    OrderStatus.PENDING: Tone.WAITING,
    OrderStatus.PAID: Tone.OK,
    OrderStatus.PARTIALLY_REFUNDED: Tone.WARNING,
    OrderStatus.REFUNDED: Tone.NEUTRAL,
}
ORDER_SHOWN = {OrderStatus.PARTIALLY_REFUNDED: "partly refunded"}
REFUND_TONES = {
    RefundStatus.PENDING: Tone.WAITING,
    RefundStatus.SUCCEEDED: Tone.OK,
    RefundStatus.FAILED: Tone.DANGER,
    RefundStatus.CANCELED: Tone.NEUTRAL,
}
DISPUTE_TONES = {
    DisputeStatus.WARNING_NEEDS_RESPONSE: Tone.DANGER,
    DisputeStatus.NEEDS_RESPONSE: Tone.DANGER,  # evidence is due: a person must answer
    DisputeStatus.WARNING_UNDER_REVIEW: Tone.WAITING,
    DisputeStatus.UNDER_REVIEW: Tone.WAITING,
    DisputeStatus.WARNING_CLOSED: Tone.NEUTRAL,
    DisputeStatus.WON: Tone.OK,
    DisputeStatus.LOST: Tone.NEUTRAL,
}
ACCOUNT_TONES = {
    AccountStatus.UNKNOWN: Tone.NEUTRAL,
    AccountStatus.READY: Tone.OK,
    AccountStatus.RESTRICTED: Tone.WARNING,
    AccountStatus.DEAUTHORIZED: Tone.DANGER,
}


def order_badge(order) -> str:
    """The order's status badge, as an operator needs to read it.

    A dispute outweighs "paid" (the buyer's bank is taking the money back), and a partial refund
    says so in words."""
    dispute = getattr(order, "dispute_status", None)
    if dispute is None and order.pk is not None:
        dispute = order.disputes.order_by("-pk").values_list("status", flat=True).first()
    if dispute in (DisputeStatus.WON, DisputeStatus.WARNING_CLOSED):
        dispute = None  # over, and the money stayed: the order's own status says the rest
    shown = ORDER_SHOWN.get(order.status, order.status)
    if dispute == DisputeStatus.LOST:
        return badge(f"{shown}, dispute lost", Tone.NEUTRAL, title=f"{order.status}; dispute lost")
    if dispute:
        return badge(f"disputed ({shown})", Tone.DANGER, title=f"{order.status}; dispute {dispute}")
    return badge(shown, ORDER_TONES.get(order.status, Tone.NEUTRAL), title=order.status)


class ReadOnlyAdmin(CsvExport, admin.ModelAdmin):
    """Base admin for rows that change only through services.

    Rows that record money and what Stripe said: shown, never added, edited or deleted by
    hand, not even by a superuser (they change through services only). The change page is a
    view page with no Save button; actions on the list still run, each with its own
    permission."""

    # Model fields shown on the page through one of the admin's display methods instead, in
    # the field's place (money formatted, a status badge, a link to Stripe).
    shown_as: ClassVar[dict[str, str]] = {}

    def get_fields(self, request, obj=None):
        if self.fields:
            return self.fields
        shown = (self.shown_as.get(field.name, field.name) for field in self.model._meta.fields)
        return list(dict.fromkeys(shown))

    def get_readonly_fields(self, request, obj=None):
        model_fields = [field.name for field in self.model._meta.fields]
        return [*model_fields, *self.shown_as.values(), *self.readonly_fields]

    # Their tables grow with the business: no list counts them whole.
    paginator = CappedCountPaginator

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class SellerAccountChangeInline(admin.TabularInline):
    model = SellerAccountChange
    extra = 0
    can_delete = False
    fields = ("changed_at", "old_account", "new_account", "changed_by")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Seller)
class SellerAdmin(CsvExport, admin.ModelAdmin):
    list_display = (
        "id",
        "name",
        "email",
        "stripe_account_id_link",
        "account_status_badge",
        "created_at",
    )
    list_filter = ("account_status",)
    search_fields = ("=id", "name", "email", "stripe_account_id")
    # Whether the account can receive transfers is what Stripe says, never typed in.
    exclude = ("account_status",)
    readonly_fields = (
        "stripe_account_id_link",
        "account_status_badge",
        "account_status_reason",
        "account_status_at",
        "account_event_created",
    )
    inlines = [SellerAccountChangeInline]

    @admin.display(description="connected account", ordering="stripe_account_id")
    def stripe_account_id_link(self, seller):
        return stripe_link(seller.stripe_account_id)

    @admin.display(description="account status", ordering="account_status")
    def account_status_badge(self, seller):
        """The status, and under it why Stripe says so (when it said)."""
        tone = ACCOUNT_TONES.get(seller.account_status, Tone.NEUTRAL)
        shown = badge(seller.account_status, tone)
        if not seller.account_status_reason:
            return shown
        return format_html(
            '{}<br><span class="account-reason">{}</span>', shown, seller.account_status_reason
        )

    def save_model(self, request, obj, form, change):
        # Where the seller's money goes is audited: a change of connected account is recorded
        # with who made it, in the same transaction as the change.
        if change and "stripe_account_id" in form.changed_data:
            account = obj.stripe_account_id
            obj.stripe_account_id = form.initial.get("stripe_account_id", "")
            super().save_model(request, obj, form, change)
            self.account_change(request, obj, account)
        else:
            super().save_model(request, obj, form, change)

    def account_change(self, request, seller: Seller, account: str) -> None:
        """Change the seller's connected account to ``account``.

        The payouts app extends this: a reconnected seller's held transfers are released."""
        seller_account_set(seller=seller, stripe_account_id=account, user=request.user)


class OrderItemInline(admin.TabularInline):
    model = OrderItem
    extra = 0
    readonly_fields = ("price",)

    def get_fields(self, request, obj=None):
        # A paid order's items are history: their amounts are shown as money, not inputs.
        if obj is None or obj.status == Order.Status.PENDING:
            return ("description", "seller", "amount")
        return ("description", "seller", "price")

    @admin.display(description="amount")
    def price(self, item):
        return money(item.amount, item.order.currency)

    # Items make the order total and each seller's share: once money has moved they are history.
    def has_change_permission(self, request, obj=None):
        return obj is None or obj.status == Order.Status.PENDING

    def has_add_permission(self, request, obj=None):
        return obj is None or obj.status == Order.Status.PENDING

    def has_delete_permission(self, request, obj=None):
        return obj is None or obj.status == Order.Status.PENDING


def settled(row) -> str:
    """The settlement column of an order or a refund.

    What an order or refund settled as on the platform's balance, with Stripe's rate when
    it was converted."""
    if row.settlement_amount is None:
        return "not read yet" if row.settlement_due_at else EMPTY
    shown = money(row.settlement_amount, row.settlement_currency)
    if row.exchange_rate is None:
        return shown
    return format_html("{} at {}", shown, row.exchange_rate.normalize())


class RefundColumns:
    """The columns showing a refund, shared by every page that lists refunds.

    How a refund's Stripe id, amount and status read: in its list, its page and the order's
    page."""

    @admin.display(description="settled as")
    def settled_money(self, refund):
        return settled(refund)

    @admin.display(description="Stripe refund", ordering="stripe_refund_id")
    def stripe_refund_id_link(self, refund):
        return stripe_link(refund.stripe_refund_id)

    @admin.display(description="amount", ordering="amount")
    def amount_money(self, refund):
        return money(refund.amount, refund.currency)

    @admin.display(description="status", ordering="status")
    def status_badge(self, refund):
        return badge(refund.status, REFUND_TONES.get(refund.status, Tone.NEUTRAL))


class RefundInline(RefundColumns, admin.TabularInline):
    model = Refund
    extra = 0
    fields = (
        "stripe_refund_id_link",
        "amount_money",
        "settled_money",
        "status_badge",
        "error_message",
        "created_at",
    )
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


class DisputeInline(admin.TabularInline):
    """The order's disputes on its page: status, amount, what Stripe withdrew, evidence due."""

    model = Dispute
    extra = 0
    can_delete = False
    show_change_link = True
    fields = (
        "stripe_dispute_id_link",
        "status_badge",
        "reason",
        "amount_money",
        "withdrawn_money",
        "evidence_due_by",
        "created_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Stripe dispute")
    def stripe_dispute_id_link(self, dispute):
        return stripe_link(dispute.stripe_dispute_id)

    @admin.display(description="status")
    def status_badge(self, dispute):
        return badge(dispute.status, DISPUTE_TONES.get(dispute.status, Tone.NEUTRAL))

    @admin.display(description="disputed")
    def amount_money(self, dispute):
        return money(dispute.amount, dispute.currency)

    @admin.display(description="withdrawn by Stripe")
    def withdrawn_money(self, dispute):
        return money(dispute.settlement_amount, dispute.settlement_currency)


@admin.register(Order)
class OrderAdmin(CsvExport, admin.ModelAdmin):
    list_display = (
        "id",
        "buyer_email",
        "total_money",
        "status_badge",
        "stripe_payment_intent_id_link",
        "stripe_charge_id_link",
        "created_at",
    )
    list_filter = ("status", ("created_at", admin.DateFieldListFilter))
    search_fields = (
        "=id",
        "buyer_email",
        "stripe_payment_intent_id",
        "stripe_charge_id",
        "refunds__stripe_refund_id",
    )
    fields = (
        "buyer_email",
        "currency",
        "status_badge",
        "total_money",
        "stripe_payment_intent_id_link",
        "stripe_charge_id_link",
        "settled_money",
        "settled_net_money",
        "created_at",
        "updated_at",
    )
    # Staff may set only the buyer and the currency of an order not paid yet.
    readonly_fields = tuple(field for field in fields if field not in ("buyer_email", "currency"))

    # Once paid, an order is history: shown as a view page (no Save), never deleted (its
    # payments, transfers and book entries point at it).
    def has_change_permission(self, request, obj=None):
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or obj.status == Order.Status.PENDING)

    def has_delete_permission(self, request, obj=None):
        allowed = super().has_delete_permission(request, obj)
        return allowed and obj is not None and obj.status == Order.Status.PENDING

    def get_readonly_fields(self, request, obj=None):
        # Once paid, the buyer and the currency are what Stripe charged: history, not input.
        if obj is not None and obj.status != Order.Status.PENDING:
            return (*self.readonly_fields, "buyer_email", "currency")
        return self.readonly_fields

    def get_queryset(self, request):
        # The list's totals in the page's own query (one sum per row shown), never per row.
        items = OrderItem.objects.filter(order=OuterRef("pk")).order_by()
        total = items.values("order").annotate(total=Sum("amount")).values("total")
        latest_dispute = Dispute.objects.filter(order=OuterRef("pk")).order_by("-pk")
        return (
            super()
            .get_queryset(request)
            .annotate(
                listed_total=Subquery(total),
                dispute_status=Subquery(latest_dispute.values("status")[:1]),
            )
        )

    @admin.display(description="total")
    def total_money(self, order):
        if order.pk is None:
            return EMPTY
        total = getattr(order, "listed_total", None)
        return money(order_total(order=order) if total is None else total, order.currency)

    @admin.display(description="status", ordering="status")
    def status_badge(self, order):
        return order_badge(order)

    @admin.display(description="settled as (Stripe's balance transaction)")
    def settled_money(self, order):
        return settled(order)

    @admin.display(description="settled net (after Stripe's fee; what the sellers share)")
    def settled_net_money(self, order):
        return money(order.settlement_net, order.settlement_currency)

    @admin.display(description="payment intent", ordering="stripe_payment_intent_id")
    def stripe_payment_intent_id_link(self, order):
        return stripe_link(order.stripe_payment_intent_id)

    @admin.display(description="charge", ordering="stripe_charge_id")
    def stripe_charge_id_link(self, order):
        return stripe_link(order.stripe_charge_id)

    ordering = ("-id",)
    show_full_result_count = False
    paginator = CappedCountPaginator
    inlines = [OrderItemInline, RefundInline, DisputeInline]


@admin.register(Refund)
class RefundAdmin(RefundColumns, ReadOnlyAdmin):
    list_display = (
        "id",
        "order",
        "stripe_refund_id_link",
        "amount_money",
        "settled_money",
        "status_badge",
        "created_at",
    )
    list_filter = ("status", ("created_at", admin.DateFieldListFilter))
    search_fields = ("=id", "stripe_refund_id", "=order__id", "order__stripe_charge_id")
    list_select_related = ("order",)
    ordering = ("-id",)
    shown_as = {
        "stripe_refund_id": "stripe_refund_id_link",
        "amount": "amount_money",
        "currency": "amount_money",
        "status": "status_badge",
        "settlement_amount": "settled_money",
        "settlement_currency": "settled_money",
        "exchange_rate": "settled_money",
    }


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    """Disputes in the admin, each linking to the Stripe Dashboard to answer it.

    Disputes as Stripe last described them: answer the open ones before their evidence is
    due (in the Stripe Dashboard, through the dispute's link)."""

    list_display = (
        "stripe_dispute_id_link",
        "order",
        "status_badge",
        "reason",
        "amount_money",
        "withdrawn_money",
        "fee_money",
        "evidence_due_by",
        "created_at",
    )
    list_filter = ("status", "reason", ("created_at", admin.DateFieldListFilter))
    search_fields = ("stripe_dispute_id", "=order__id", "order__stripe_charge_id")
    list_select_related = ("order",)
    ordering = ("-id",)
    show_full_result_count = False
    shown_as = {
        "stripe_dispute_id": "stripe_dispute_id_link",
        "status": "status_badge",
        "amount": "amount_money",
        "currency": "amount_money",
        "settlement_amount": "withdrawn_money",
        "settlement_currency": "withdrawn_money",
        "fee": "fee_money",
    }

    @admin.display(description="Stripe dispute", ordering="stripe_dispute_id")
    def stripe_dispute_id_link(self, dispute):
        return stripe_link(dispute.stripe_dispute_id)

    @admin.display(description="status", ordering="status")
    def status_badge(self, dispute):
        return badge(dispute.status, DISPUTE_TONES.get(dispute.status, Tone.NEUTRAL))

    @admin.display(description="disputed", ordering="amount")
    def amount_money(self, dispute):
        return money(dispute.amount, dispute.currency)

    @admin.display(description="withdrawn by Stripe")
    def withdrawn_money(self, dispute):
        return money(dispute.settlement_amount, dispute.settlement_currency)

    @admin.display(description="dispute fee")
    def fee_money(self, dispute):
        if not dispute.fee:
            return EMPTY
        return money(dispute.fee, dispute.settlement_currency or dispute.currency)
