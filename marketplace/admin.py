from django.contrib import admin

from marketplace.models import Order, OrderItem, Refund, Seller


@admin.register(Seller)
class SellerAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "email", "stripe_account_id", "created_at")
    search_fields = ("name", "email", "stripe_account_id")


class OrderItemInline(admin.TabularInline):
    model = OrderItem
    extra = 0


class RefundInline(admin.TabularInline):
    model = Refund
    extra = 0
    readonly_fields = ("stripe_refund_id", "amount", "currency", "status", "created_at")
    can_delete = False


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("id", "buyer_email", "currency", "status", "stripe_charge_id", "created_at")
    list_filter = ("status",)
    search_fields = ("=id", "buyer_email", "stripe_payment_intent_id", "stripe_charge_id")
    inlines = [OrderItemInline, RefundInline]


@admin.register(Refund)
class RefundAdmin(admin.ModelAdmin):
    list_display = ("id", "order", "stripe_refund_id", "amount", "currency", "status")
    list_filter = ("status",)
    search_fields = ("stripe_refund_id", "=order__id")
    readonly_fields = ("status",)
