"""Admin for sellers, orders and refunds. Statuses and Stripe ids come from Stripe through the
services (webhooks, staff API), so they are shown, never edited by hand. The payouts app adds
the seller transfers to the order page (``payouts/admin.py``): this app never imports it."""

from django.contrib import admin

from marketplace.models import Order, OrderItem, Refund, Seller


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that record money and what Stripe said: shown, never added, edited or deleted by
    hand (they change through services only)."""

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Seller)
class SellerAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "email", "stripe_account_id", "created_at")
    search_fields = ("=id", "name", "email", "stripe_account_id")


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
