"""Admin for sellers, orders and refunds. Statuses and Stripe ids come from Stripe through the
services (webhooks, staff API), so they are shown, never edited by hand. The payouts app adds
the seller transfers to the order page (``payouts/admin.py``): this app never imports it."""

from django.contrib import admin

from marketplace.models import Order, OrderItem, Refund, Seller, SellerAccountChange
from marketplace.services import seller_account_set


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that record money and what Stripe said: shown, never added, edited or deleted by
    hand, not even by a superuser (they change through services only). The change page is a
    view page with no Save button; actions on the list still run, each with its own
    permission."""

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

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
class SellerAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "name",
        "email",
        "stripe_account_id",
        "account_status",
        "account_status_reason",
        "created_at",
    )
    list_filter = ("account_status",)
    search_fields = ("=id", "name", "email", "stripe_account_id")
    # Whether the account can receive transfers is what Stripe says, never typed in.
    readonly_fields = ("account_status", "account_status_reason", "account_status_at")
    inlines = [SellerAccountChangeInline]

    def save_model(self, request, obj, form, change):
        # Where the seller's money goes is audited: a change of connected account is recorded
        # with who made it, in the same transaction as the change.
        if change and "stripe_account_id" in form.changed_data:
            account = obj.stripe_account_id
            obj.stripe_account_id = form.initial.get("stripe_account_id", "")
            super().save_model(request, obj, form, change)
            seller_account_set(seller=obj, stripe_account_id=account, user=request.user)
        else:
            super().save_model(request, obj, form, change)


class OrderItemInline(admin.TabularInline):
    model = OrderItem
    extra = 0

    # Items make the order total and each seller's share: once money has moved they are history.
    def has_change_permission(self, request, obj=None):
        return obj is None or obj.status == Order.Status.PENDING

    def has_add_permission(self, request, obj=None):
        return obj is None or obj.status == Order.Status.PENDING

    def has_delete_permission(self, request, obj=None):
        return obj is None or obj.status == Order.Status.PENDING


class RefundInline(admin.TabularInline):
    model = Refund
    extra = 0
    fields = ("stripe_refund_id", "amount", "currency", "status", "error_message", "created_at")
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "buyer_email",
        "currency",
        "status",
        "stripe_payment_intent_id",
        "stripe_charge_id",
        "created_at",
    )
    list_filter = ("status",)
    search_fields = (
        "=id",
        "buyer_email",
        "stripe_payment_intent_id",
        "stripe_charge_id",
        "refunds__stripe_refund_id",
    )
    readonly_fields = (
        "status",
        "stripe_payment_intent_id",
        "stripe_charge_id",
        "created_at",
        "updated_at",
    )

    def get_readonly_fields(self, request, obj=None):
        # Once paid, the buyer and the currency are what Stripe charged: history, not input.
        if obj is not None and obj.status != Order.Status.PENDING:
            return (*self.readonly_fields, "buyer_email", "currency")
        return self.readonly_fields

    ordering = ("-id",)
    show_full_result_count = False
    inlines = [OrderItemInline, RefundInline]


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ("id", "order", "stripe_refund_id", "amount", "currency", "status", "created_at")
    list_filter = ("status",)
    search_fields = ("=id", "stripe_refund_id", "=order__id", "order__stripe_charge_id")
    list_select_related = ("order",)
    ordering = ("-id",)
