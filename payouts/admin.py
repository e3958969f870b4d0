"""Admin for operations: seller transfers (with their audit trail, the staff retry and a
"needs attention" filter), the webhook inbox (with replay), and the transfers of each order on
the order page. Nothing that moves money is editable here: statuses change through services."""

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.utils import timezone

from config.errors import DomainError, admin_message
from marketplace.admin import OrderAdmin, ReadOnlyAdmin, RefundAdmin
from marketplace.models import Order, Refund
from payouts import selectors
from payouts.models import SellerTransfer, SellerTransferEvent, WebhookEvent, WebhookOutcome
from payouts.moves import Actor
from payouts.serializers import TRANSFER_FIELDS
from payouts.services.holds import order_release
from payouts.services.refunds import order_refund_by_staff, staff_refund_settle
from payouts.services.transfers import transfer_retry_by_staff
from payouts.services.webhooks import webhook_event_process


class SellerTransferEventInline(admin.TabularInline):
    model = SellerTransferEvent
    extra = 0
    can_delete = False
    readonly_fields = ("created_at", "from_status", "to_status", "caused_by", "user", "detail")

    def has_add_permission(self, request, obj=None):
        return False


class NeedsAttentionFilter(admin.SimpleListFilter):
    """Rows a person must look at; the README's runbook says what to do with each kind."""

    title = "needs attention"
    parameter_name = "attention"
    ANY = "any"

    def lookups(self, request, model_admin):
        stale_minutes = int(selectors.STALE_REVERSAL_AFTER.total_seconds() // 60)
        return [
            (self.ANY, "Any reason"),
            (selectors.ATTENTION_PERMANENTLY_FAILED, "Permanently failed"),
            (
                selectors.ATTENTION_STALE_REVERSAL,
                f"Reversal pending, not updated for {stale_minutes} min",
            ),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        if value not in {choice for choice, _ in self.lookup_choices}:
            raise IncorrectLookupParameters(f"unknown attention filter {value!r}")
        reason = None if value == self.ANY else value
        return selectors.transfers_needing_attention(
            now=timezone.now(), reason=reason, queryset=queryset
        )


@admin.register(SellerTransfer)
class SellerTransferAdmin(ReadOnlyAdmin):
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
        "updated_at",
    )
    list_filter = ("status", NeedsAttentionFilter, "currency")
    # Any Stripe id we hold (transfer, reversal, charge, payment intent, refund, account), the
    # order or transfer id, or the seller.
    search_fields = (
        "=id",
        "=order__id",
        "stripe_transfer_id",
        "stripe_reversal_id",
        "order__stripe_charge_id",
        "order__stripe_payment_intent_id",
        "order__refunds__stripe_refund_id",
        "seller__stripe_account_id",
        "seller__name",
        "seller__email",
    )
    search_help_text = (
        "Transfer or order id, any Stripe id (tr_, trr_, ch_, pi_, re_, acct_), seller name or "
        "email."
    )
    list_select_related = ("order", "seller")
    ordering = ("-id",)
    # The table holds every transfer ever made: skip the unfiltered COUNT(*) on each page.
    show_full_result_count = False
    inlines = [SellerTransferEventInline]
    actions = ["retry_failed"]

    @admin.action(description="Retry selected failed transfers now", permissions=["retry"])
    def retry_failed(self, request, queryset):
        for pk in queryset.order_by("pk").values_list("pk", flat=True):
            try:
                transfer_retry_by_staff(transfer_id=pk, user=request.user)
            except DomainError as error:
                level, text = admin_message(error, about=f"transfer {pk}")
                self.message_user(request, text, level)
            else:
                self.message_user(request, f"transfer {pk} completed", messages.SUCCESS)

    def has_retry_permission(self, request):
        return request.user.has_perm("payouts.retry_sellertransfer")


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = ("stripe_event_id", "type", "outcome", "attempts", "received_at", "processed_at")
    list_filter = ("outcome", "type")
    search_fields = ("stripe_event_id",)
    ordering = ("-id",)
    show_full_result_count = False
    actions = ["replay"]

    @admin.action(description="Replay selected events", permissions=["replay"])
    def replay(self, request, queryset):
        for pk in queryset.order_by("received_at").values_list("pk", flat=True):
            event = webhook_event_process(event_id=pk, force=True)
            level = messages.ERROR if event.outcome == WebhookOutcome.FAILED else messages.INFO
            self.message_user(
                request, f"{event.stripe_event_id}: {event.outcome} {event.error}", level
            )

    def has_replay_permission(self, request):
        return request.user.has_perm("payouts.replay_webhookevent")


class SellerTransferInline(admin.TabularInline):
    """The order's seller transfers, read-only, each linking to its own page (audit trail,
    retry)."""

    model = SellerTransfer
    extra = 0
    can_delete = False
    show_change_link = True
    fields = tuple(f for f in TRANSFER_FIELDS if f not in {"id", "order", "created_at"})
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


# The order page shows its transfers too. The inline lives here because marketplace never
# imports payouts: payouts extends marketplace's order admin instead.
class OrderWithTransfersAdmin(OrderAdmin):
    inlines = [*OrderAdmin.inlines, SellerTransferInline]
    actions = ["refund_in_full", "release_held"]

    @admin.action(description="Refund selected orders in full at Stripe", permissions=["refund"])
    def refund_in_full(self, request, queryset):
        for pk in queryset.order_by("pk").values_list("pk", flat=True):
            try:
                refund = order_refund_by_staff(order_id=pk, amount=None)
            except DomainError as error:
                level, text = admin_message(error, about=f"order {pk}")
                self.message_user(request, text, level)
            else:
                self.message_user(
                    request,
                    f"order {pk}: refund {refund.stripe_refund_id} of {refund.amount} created; "
                    "its webhook completes it",
                    messages.SUCCESS,
                )

    def has_refund_permission(self, request):
        return request.user.has_perm("marketplace.refund_order")

    @admin.action(description="Release held seller transfers now", permissions=["release"])
    def release_held(self, request, queryset):
        for pk in queryset.order_by("pk").values_list("pk", flat=True):
            try:
                released = order_release(order_id=pk, actor=Actor.staff(request.user))
            except DomainError as error:
                level, text = admin_message(error, about=f"order {pk}")
                self.message_user(request, text, level)
            else:
                self.message_user(
                    request, f"order {pk}: {len(released)} transfer(s) released", messages.SUCCESS
                )

    def has_release_permission(self, request):
        return request.user.has_perm("payouts.release_sellertransfer")


class RefundWithSettleAdmin(RefundAdmin):
    """The refund list, with the action that settles a staff refund whose Stripe call ended
    without a definite answer (marketplace never imports payouts: payouts extends its admin)."""

    actions = ["settle_reservation"]

    @admin.action(
        description="Settle selected pending staff refunds (release when Stripe holds none)",
        permissions=["refund"],
    )
    def settle_reservation(self, request, queryset):
        for pk in queryset.order_by("pk").values_list("pk", flat=True):
            outcome = staff_refund_settle(refund_id=pk, release=True)
            self.message_user(request, f"refund {pk}: {outcome}", messages.INFO)

    def has_refund_permission(self, request):
        return request.user.has_perm("marketplace.refund_order")


admin.site.unregister(Order)
admin.site.register(Order, OrderWithTransfersAdmin)
admin.site.unregister(Refund)
admin.site.register(Refund, RefundWithSettleAdmin)
