from django.contrib import admin, messages

from payouts.models import SellerTransfer, SellerTransferEvent, WebhookEvent, WebhookOutcome
from payouts.services.transfers import (
    StaffRetryFailed,
    TransferNotRetryable,
    transfer_retry_by_staff,
)
from payouts.services.webhooks import webhook_event_process


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
    actions = ["retry_failed"]

    @admin.action(description="Retry selected failed transfers now", permissions=["retry"])
    def retry_failed(self, request, queryset):
        for pk in queryset.order_by("pk").values_list("pk", flat=True):
            try:
                transfer_retry_by_staff(transfer_id=pk, user=request.user)
            except TransferNotRetryable as exc:
                self.message_user(request, str(exc), messages.WARNING)
            except StaffRetryFailed as exc:
                self.message_user(
                    request,
                    f"transfer {pk}: Stripe refused: {exc.transfer.error_message}",
                    messages.ERROR,
                )
            else:
                self.message_user(request, f"transfer {pk} completed", messages.SUCCESS)

    def has_retry_permission(self, request):
        return request.user.has_perm("payouts.retry_sellertransfer")

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
    actions = ["replay"]

    @admin.action(description="Replay selected events")
    def replay(self, request, queryset):
        for pk in queryset.order_by("received_at").values_list("pk", flat=True):
            event = webhook_event_process(event_id=pk, force=True)
            level = messages.ERROR if event.outcome == WebhookOutcome.FAILED else messages.INFO
            self.message_user(
                request, f"{event.stripe_event_id}: {event.outcome} {event.error}", level
            )

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request):
        return False
