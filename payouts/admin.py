from django.contrib import admin

from payouts.models import SellerTransfer, SellerTransferEvent, WebhookEvent


class SellerTransferEventInline(admin.TabularInline):
    model = SellerTransferEvent
    extra = 0
    can_delete = False
    readonly_fields = ("created_at", "from_status", "to_status", "caused_by", "user", "detail")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(SellerTransfer)
class SellerTransferAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "order",
        "seller",
        "status",
        "amount",
        "platform_fee",
        "amount_reversed",
        "currency",
        "stripe_transfer_id",
        "stripe_reversal_id",
        "retry_count",
        "next_retry_at",
    )
    list_filter = ("status",)
    search_fields = (
        "stripe_transfer_id",
        "stripe_reversal_id",
        "=order__id",
        "order__stripe_charge_id",
        "seller__name",
        "seller__stripe_account_id",
    )
    list_select_related = ("order", "seller")
    inlines = [SellerTransferEventInline]

    # Status and money fields are never edited by hand: they change through services only.
    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ("stripe_event_id", "type", "outcome", "received_at", "processed_at")
    list_filter = ("outcome", "type")
    search_fields = ("stripe_event_id",)

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request):
        return False
