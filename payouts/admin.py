"""The payouts admin: seller transfers, the webhook inbox, each order's transfers.

Admin for operations: seller transfers (with their audit trail, the staff retry and a
"needs attention" filter), the webhook inbox (with replay), and the transfers of each order on
the order page. Nothing that moves money is editable here: statuses change through services."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import F, OuterRef, Subquery, Sum
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import Truncator

from approvals.services import Outcome, staff_action_request
from config.errors import DomainError, admin_message, unexpected_message
from config.money import format_money
from console.admin_site import attention_label, transfer_badge
from console.display import (
    EMPTY,
    PageActions,
    Tone,
    action_form,
    badge,
    money,
    seller_named,
    stripe_link,
)
from ledger.admin import SellerWithBookAdmin
from marketplace.admin import DisputeAdmin, OrderAdmin, ReadOnlyAdmin, RefundAdmin
from marketplace.models import Dispute, Order, Refund, Seller
from payouts import action_plans, policy_admin, selectors  # noqa: F401  (registers its pages)
from payouts.models import (
    Payout,
    PayoutItem,
    PayoutItemKind,
    PayoutStatus,
    ReleaseState,
    ReserveRelease,
    SellerTransfer,
    SellerTransferEvent,
    WebhookEvent,
    WebhookOutcome,
)
from payouts.selectors import Attention
from payouts.services.bank_payouts import payout_reconcile_by_staff
from payouts.services.holds import seller_account_refresh, seller_reconnect
from payouts.services.refunds import staff_refund_settle
from payouts.services.transfers import transfer_retry_by_staff
from payouts.services.webhooks import webhook_event_process
from payouts.transfer.actors import Actor
from payouts.transfer.transitions import TransferStatus

# The statuses whose ``next_retry_at`` is when a worker tries again.
RETRIED = (
    TransferStatus.PENDING,
    TransferStatus.FAILED,
    TransferStatus.REVERSAL_PENDING,
    TransferStatus.HELD,
)


# The audit detail's keys that are amounts of the transfer's currency (minor units).
EVENT_AMOUNTS = frozenset(
    {
        "amount_owed",
        "amount_returned",
        "amount_reversed",
        "amount_to_give_back",
        "debt_cancelled",
        "dispute_target",
        "netting_released",
        "refund_target",
        "reversal_target",
        "sent",
        "stripe_amount_reversed",
    }
)


class SellerTransferEventInline(admin.TabularInline):
    model = SellerTransferEvent
    extra = 0
    can_delete = False
    fields = ("created_at", "from_badge", "to_badge", "caused_by", "user", "detail_shown")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("transfer", "user")

    @admin.display(description="detail")
    def detail_shown(self, event):
        """What the move recorded, each amount as money in the transfer's currency."""
        detail = event.detail or {}
        if not isinstance(detail, dict) or not detail:
            return EMPTY
        currency = event.transfer.currency
        return format_html_join(
            mark_safe("<br>"),
            "{}: {}",
            (
                (
                    key,
                    money(value, currency)
                    if key in EVENT_AMOUNTS and isinstance(value, int)
                    else value,
                )
                for key, value in detail.items()
            ),
        )

    @admin.display(description="from")
    def from_badge(self, event):
        return transfer_badge(event.from_status)

    @admin.display(description="to")
    def to_badge(self, event):
        return transfer_badge(event.to_status)


class NeedsAttentionFilter(admin.SimpleListFilter):
    """The "needs attention" list filter of the transfers.

    Rows a person must look at, for any reason or one; docs/console.md says what to do with
    each."""

    title = "needs attention"
    parameter_name = "attention"
    ANY = "any"

    def lookups(self, request, model_admin):
        return [(self.ANY, "Any reason")] + [
            (reason.value, attention_label(reason)) for reason in Attention
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


def _indexed_values_filter(field: str, values, shown=str):
    """Build a list filter whose choices come from index probes.

    A list filter on ``field`` whose choices are read by index probes (``values``): a plain
    field filter runs ``SELECT DISTINCT`` over the whole table on every page."""

    class IndexedValuesFilter(admin.SimpleListFilter):
        title = field
        parameter_name = field

        def lookups(self, request, model_admin):
            return [(value, shown(value)) for value in values()]

        def queryset(self, request, queryset):
            value = self.value()
            return queryset if value is None else queryset.filter(**{field: value})

    return IndexedValuesFilter


CurrencyFilter = _indexed_values_filter("currency", selectors.transfer_currencies, str.upper)
EventTypeFilter = _indexed_values_filter("type", selectors.webhook_event_types)


def _money_of(field: str, description: str):
    """A display of the transfer's ``field`` as money in the transfer's currency."""

    @admin.display(description=description, ordering=field)
    def show(self, transfer):
        return money(getattr(transfer, field), transfer.currency)

    return show


def money_line(transfer: SellerTransfer):
    currency = transfer.currency

    def part(label: str, amount: int, note: str = ""):
        return format_html("{} {}{}", label, money(amount, currency), note)

    parts = []
    if transfer.stripe_transfer_id:
        parts.append(part("sent", transfer.sent))
    elif transfer.status in (TransferStatus.PENDING, TransferStatus.FAILED, TransferStatus.HELD):
        parts.append(part("to send", max(transfer.to_send, 0)))
    else:
        parts.append(format_html("not sent (of {})", money(transfer.amount, currency)))
    if transfer.amount_netted:
        parts.append(part("netted", transfer.amount_netted, " (their debt)"))
    if transfer.amount_reserved:
        parts.append(reserve_part(transfer))
    kept_back = transfer.amount_withheld if transfer.stripe_transfer_id else transfer.kept_back
    if kept_back:
        parts.append(part("kept back", kept_back))
    why = [
        format_html("refunds {}", money(transfer.reversal_target, currency))
        if transfer.reversal_target
        else "",
        format_html("chargeback {}", money(transfer.dispute_target, currency))
        if transfer.dispute_target
        else "",
    ]
    why_text = format_html_join(", ", "{}", ((w,) for w in why if w))
    if transfer.amount_reversed or (transfer.stripe_transfer_id and any(why)):
        parts.append(
            format_html("reversed {} (for {})", money(transfer.amount_reversed, currency), why_text)
            if any(why)
            else part("reversed", transfer.amount_reversed)
        )
    if transfer.amount_returned:
        parts.append(part("given back", transfer.amount_returned))
    if transfer.amount_to_give_back:
        parts.append(part("to give back", transfer.amount_to_give_back))
    if transfer.amount_owed:
        parts.append(part("owed", transfer.amount_owed, " (their debt)"))
    return format_html(
        '<span class="money-line">{}</span>', format_html_join(" · ", "{}", ((p,) for p in parts))
    )


def reserve_part(transfer: SellerTransfer):
    """The rolling reserve in the money line: kept, what refunds and chargebacks took, where."""
    currency = transfer.currency
    taken = [
        format_html("refunds {}", money(transfer.reserve_refund, currency))
        if transfer.reserve_refund
        else "",
        format_html("chargeback {}", money(transfer.reserve_dispute, currency))
        if transfer.reserve_dispute
        else "",
        format_html("given back after release {}", money(transfer.reserve_given_back, currency))
        if transfer.reserve_given_back
        else "",
        format_html(
            "owed by the seller after release {}",
            money(transfer.reserve_owed_refund + transfer.reserve_owed_dispute, currency),
        )
        if transfer.reserve_owed_refund + transfer.reserve_owed_dispute
        else "",
    ]
    if transfer.reserve_release_id:
        where = format_html("released (release {})", transfer.reserve_release_id)
    elif transfer.reserve_release_at:
        where = format_html("until {}", f"{transfer.reserve_release_at:%Y-%m-%d}")
    else:
        where = ""
    notes = format_html_join(", ", "{}", ((n,) for n in [*taken, where] if n))
    return format_html("reserve {} ({})", money(transfer.amount_reserved, currency), notes)


class TransferColumns:
    """How a seller transfer reads: on its list, its page and its order's page."""

    amount_money = _money_of("amount", "amount")
    platform_fee_money = _money_of("platform_fee", "platform fee")
    amount_netted_money = _money_of("amount_netted", "netted (settles their debt)")
    amount_withheld_money = _money_of("amount_withheld", "withheld (refunded during a hold)")
    amount_reserved_money = _money_of("amount_reserved", "reserve kept back")
    reserve_refund_money = _money_of("reserve_refund", "reserve taken by refunds")
    reserve_dispute_money = _money_of("reserve_dispute", "reserve taken by the chargeback")
    reserve_given_back_money = _money_of(
        "reserve_given_back", "reserve given back after its release"
    )
    reserve_owed_refund_money = _money_of(
        "reserve_owed_refund", "released reserve owed by the seller (refunds)"
    )
    reserve_owed_dispute_money = _money_of(
        "reserve_owed_dispute", "released reserve owed by the seller (chargeback)"
    )
    reserve_owed_given_back_money = _money_of(
        "reserve_owed_given_back", "that debt, once paid, sent back to the seller"
    )
    reversal_target_money = _money_of("reversal_target", "to reverse in all")
    amount_reversed_money = _money_of("amount_reversed", "reversed")
    amount_owed_money = _money_of("amount_owed", "owed by the seller")
    dispute_target_money = _money_of("dispute_target", "chargeback share to take back")
    amount_returned_money = _money_of("amount_returned", "given back (after it was taken)")
    amount_to_give_back_money = _money_of("amount_to_give_back", "to give back")

    @admin.display(description="status", ordering="status")
    def status_badge(self, transfer):
        return transfer_badge(transfer.status)

    @admin.display(description="money")
    def money_line(self, transfer):
        """The transfer's money, summed up in one line.

        What was sent (or is to send), netted for the seller's debt, kept back, reversed and why,
        given back, still owed."""
        return money_line(transfer)

    @admin.display(description="at Stripe")
    def stripe_ids(self, transfer):
        """The transfer, its latest reversal and its latest give-back, one per line."""
        ids = [
            (label, stripe_id)
            for label, stripe_id in (
                ("", transfer.stripe_transfer_id),
                ("reversal ", transfer.stripe_reversal_id),
                ("given back ", transfer.stripe_return_id),
            )
            if stripe_id
        ]
        if not ids:
            return EMPTY
        return format_html_join(
            mark_safe("<br>"), "{}{}", ((label, stripe_link(i)) for label, i in ids)
        )

    @admin.display(description="attempts", ordering="retry_count")
    def attempts(self, transfer):
        """How many attempts failed in a row, and when the next one is due (if one is)."""
        if transfer.next_retry_at is None or transfer.status not in RETRIED:
            return str(transfer.retry_count)
        due = formats.localize(timezone.template_localtime(transfer.next_retry_at))
        return format_html("{}, next {}", transfer.retry_count, due)

    @admin.display(description="Stripe transfer", ordering="stripe_transfer_id")
    def stripe_transfer_id_link(self, transfer):
        return stripe_link(transfer.stripe_transfer_id)

    @admin.display(description="Stripe give-back transfer")
    def stripe_return_id_link(self, transfer):
        return stripe_link(transfer.stripe_return_id)

    @admin.display(description="Stripe reversal", ordering="stripe_reversal_id")
    def stripe_reversal_id_link(self, transfer):
        return stripe_link(transfer.stripe_reversal_id)

    @admin.display(description="needs attention")
    def attention_reason(self, transfer):
        attention = getattr(transfer, "attention", "")
        if not attention:
            return "no"
        return format_html('<span class="reason-attention">{}</span>', attention_label(attention))

    @admin.display(description="reason")
    def reason(self, transfer):
        """The "reason" column: why the transfer needs a person, and its last record.

        Why the row needs a person (when it does), then what it last recorded: why it is
        held or ended, and its last error."""
        attention = getattr(transfer, "attention", "")
        recorded = [transfer.end_reason, transfer.held_reason, transfer.error_message]
        detail = ": ".join(part for part in recorded if part)
        if not attention and not detail:
            return EMPTY
        return format_html(
            '<span class="reason" title="{}">{}{}</span>',
            detail,
            format_html('<span class="reason-attention">{}</span> ', attention_label(attention))
            if attention
            else "",
            Truncator(detail).chars(120),
        )


@admin.register(SellerTransfer)
class SellerTransferAdmin(PageActions, TransferColumns, ReadOnlyAdmin):
    list_display = (
        "id",
        "order",
        "seller",
        "status_badge",
        "amount_money",
        "money_line",
        "reason",
        "attempts",
        "stripe_ids",
        "updated_at",
    )
    list_filter = (
        "status",
        NeedsAttentionFilter,
        CurrencyFilter,
        ("created_at", admin.DateFieldListFilter),
        ("updated_at", admin.DateFieldListFilter),
    )
    # Any Stripe id we hold (transfer, reversal, charge, payment intent, refund, account), the
    # order or transfer id, or the seller: get_search_results reads what the term is.
    search_fields = ("id",)
    search_help_text = (
        "Transfer or order id, any Stripe id (tr_, trr_, ch_, pi_, re_, acct_), exactly; or part "
        "of a seller's name or email."
    )
    list_select_related = ("order", "seller")
    ordering = ("-id",)
    # The table holds every transfer ever made: skip the unfiltered COUNT(*) on each page.
    show_full_result_count = False
    inlines = [SellerTransferEventInline]
    actions = ["retry_failed", "requeue_given_up"]
    # The page, grouped; any field not named here is shown under "More".
    page = (
        (
            None,
            (
                "order",
                "seller",
                "status_badge",
                "attention_reason",
                "end_reason",
                "held_reason",
                "error_message",
            ),
        ),
        ("Attempts", ("retry_count", "next_retry_at", "read_stripe_first", "key_first_sent_at")),
        (
            "Money",
            (
                "money_line",
                "amount_money",
                "platform_fee_money",
                "policy",
                "amount_netted_money",
                "amount_withheld_money",
                "reversal_target_money",
                "dispute_target_money",
                "amount_reversed_money",
                "amount_returned_money",
                "amount_to_give_back_money",
                "amount_owed_money",
            ),
        ),
        (
            "Rolling reserve",
            (
                "amount_reserved_money",
                "reserve_refund_money",
                "reserve_dispute_money",
                "reserve_given_back_money",
                "reserve_owed_refund_money",
                "reserve_owed_dispute_money",
                "reserve_owed_given_back_money",
                "reserve_release_at",
                "reserve_release",
            ),
        ),
        (
            "At Stripe",
            (
                "stripe_transfer_id_link",
                "stripe_reversal_id_link",
                "stripe_return_id_link",
                "stripe_destination_payment_id",
                "transfer_idempotency_key",
                "reversal_idempotency_key",
            ),
        ),
        ("Times", ("created_at", "updated_at")),
    )
    readonly_fields = ("attention_reason", "money_line")
    # Model fields the page shows through a display above.
    shown_as = {
        "dispute_target": "dispute_target_money",
        "amount_returned": "amount_returned_money",
        "amount_to_give_back": "amount_to_give_back_money",
        "stripe_return_id": "stripe_return_id_link",
        "status": "status_badge",
        "currency": "amount_money",
        "amount": "amount_money",
        "platform_fee": "platform_fee_money",
        "amount_netted": "amount_netted_money",
        "amount_withheld": "amount_withheld_money",
        "reversal_target": "reversal_target_money",
        "amount_reversed": "amount_reversed_money",
        "amount_owed": "amount_owed_money",
        "amount_reserved": "amount_reserved_money",
        "reserve_refund": "reserve_refund_money",
        "reserve_dispute": "reserve_dispute_money",
        "reserve_given_back": "reserve_given_back_money",
        "reserve_owed_refund": "reserve_owed_refund_money",
        "reserve_owed_dispute": "reserve_owed_dispute_money",
        "reserve_owed_given_back": "reserve_owed_given_back_money",
        "stripe_transfer_id": "stripe_transfer_id_link",
        "stripe_reversal_id": "stripe_reversal_id_link",
    }

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return selectors.transfers_with_attention(now=timezone.now(), queryset=queryset)

    def page_actions_for(self, obj) -> list[str]:
        if obj.status == TransferStatus.FAILED:
            return ["retry_failed"]
        if obj.status == TransferStatus.PERMANENTLY_FAILED:
            return ["requeue_given_up"]
        return []

    def get_search_results(self, request, queryset, search_term):
        # Exact, indexed lookups chosen by what the term is; the default would run
        # UPPER(…) LIKE '%…%' on every column of every transfer.
        if not search_term.strip():
            return queryset, False
        return queryset.filter(selectors.transfer_search(search_term)), False

    def get_ordering(self, request):
        # Rows that need attention are few, but may sit anywhere in a table of millions: they
        # are found through their statuses' partial indexes and then sorted. "-id" would let
        # Postgres walk the primary key backwards through every newer row instead; ids are
        # never null, so NULLS LAST changes nothing but that plan.
        if NeedsAttentionFilter.parameter_name in request.GET:
            return [F("id").desc(nulls_last=True)]
        return super().get_ordering(request)

    def get_fieldsets(self, request, obj=None):
        named = {name for _, fields in self.page for name in fields}
        rest = [
            name for name in self.get_fields(request, obj) if name not in named and name != "id"
        ]
        fieldsets = [(title, {"fields": fields}) for title, fields in self.page]
        return fieldsets + ([("More", {"fields": rest})] if rest else [])

    @admin.action(description="Retry selected failed transfers now…", permissions=["retry"])
    def retry_failed(self, request, queryset):
        rows = list(queryset.select_related("seller").order_by("pk"))
        if "apply" not in request.POST:
            return action_form(
                self,
                request,
                None,
                action="retry_failed",
                selected=[row.pk for row in rows],
                title=f"Retry {len(rows)} failed transfer(s) at Stripe now",
                plan=[action_plans.retry_plan(row) for row in rows],
                intro="Nothing is sent until you confirm. Rows that are not failed are left "
                "alone; a refusal by Stripe is recorded on the row and shown here.",
                submit="Send at Stripe now",
            )
        for row in rows:
            about = f"transfer {row.pk} to {seller_named(row.seller)}"
            try:
                paid = transfer_retry_by_staff(transfer_id=row.pk, user=request.user)
            except DomainError as error:
                level, text = admin_message(error, about=about)
                self.message_user(request, text, level)
            except Exception as error:  # noqa: BLE001 - whatever broke, the operator is told
                level, text = unexpected_message(error, about=about)
                self.message_user(request, text, level)
            else:
                self.message_user(
                    request,
                    f"Transfer {paid.pk} completed: sent {format_money(paid.sent, paid.currency)} "
                    f"to {seller_named(row.seller)} at Stripe "
                    f"({paid.stripe_transfer_id}).",
                    messages.SUCCESS,
                )
        return None

    def has_retry_permission(self, request):
        return request.user.has_perm("payouts.retry_sellertransfer")

    @admin.action(description="Re-queue selected transfers that gave up…", permissions=["requeue"])
    def requeue_given_up(self, request, queryset):
        rows = list(queryset.select_related("seller").order_by("pk"))
        form = RequeueForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return action_form(
                self,
                request,
                form,
                action="requeue_given_up",
                selected=[row.pk for row in rows],
                title=f"Re-queue {len(rows)} transfer(s) that gave up",
                plan=[action_plans.requeue_plan(row) for row in rows],
                intro="Nothing changes until you confirm. Each goes back to work, due now, with a "
                "fresh retry budget. Only rows that ran out of retries can be re-queued; the "
                "others are left alone and say why. Do not also pay or reverse them by hand in "
                "the Stripe Dashboard: the worker does it.",
                submit="Re-queue",
            )
        for row in rows:
            about = f"transfer {row.pk} to {seller_named(row.seller)}"
            try:
                done = staff_action_request(
                    kind="requeue",
                    params={"transfer_id": row.pk},
                    reason=form.cleaned_data["reason"],
                    user=request.user,
                )
            except DomainError as error:
                level, text = admin_message(error, about=about)
                self.message_user(request, text, level)
            else:
                if done.outcome == Outcome.WAITING:
                    text = f"Transfer {row.pk}: {waiting_message(done.request)}"
                else:
                    text = (
                        f"Transfer {row.pk} re-queued as {done.result['status']}, due now "
                        f"({format_money(row.amount, row.currency)}, {seller_named(row.seller)})."
                    )
                self.message_user(request, text, messages.SUCCESS)
        return None

    def has_requeue_permission(self, request):
        return request.user.has_perm("payouts.requeue_sellertransfer")


def waiting_message(request) -> str:
    return (
        f"{format_money(request.amount, request.currency)} waits for a second person's "
        f"approval (request {request.pk}, under Waiting for approval)"
    )


class RequeueForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea,
        max_length=500,
        help_text="Why it is re-queued (the cause that is fixed); kept in its audit trail.",
    )


WEBHOOK_TONES = {
    WebhookOutcome.RECEIVED: Tone.WAITING,
    WebhookOutcome.PROCESSED: Tone.OK,
    WebhookOutcome.IGNORED: Tone.NEUTRAL,
    WebhookOutcome.FAILED: Tone.DANGER,
}


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = (
        "stripe_event_id_link",
        "type",
        "outcome_badge",
        "attempts",
        "received_at",
        "processed_at",
    )
    list_filter = ("outcome", EventTypeFilter, ("received_at", admin.DateFieldListFilter))
    search_fields = ("stripe_event_id",)
    search_help_text = "A Stripe event id (evt_…), exactly."
    ordering = ("-id",)
    show_full_result_count = False
    actions = ["replay"]
    shown_as = {"stripe_event_id": "stripe_event_id_link", "outcome": "outcome_badge"}

    def get_search_results(self, request, queryset, search_term):
        # An exact id on the unique index; the default (UPPER(…) LIKE '%…%') reads every row.
        term = search_term.strip()
        return (queryset.filter(stripe_event_id=term) if term else queryset), False

    @admin.display(description="Stripe event", ordering="stripe_event_id")
    def stripe_event_id_link(self, event):
        return stripe_link(event.stripe_event_id)

    @admin.display(description="outcome", ordering="outcome")
    def outcome_badge(self, event):
        return badge(event.outcome, WEBHOOK_TONES.get(event.outcome, Tone.NEUTRAL))

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


class SellerTransferInline(TransferColumns, admin.TabularInline):
    """The seller transfers shown on the order's admin page.

    The order's seller transfers, read-only, each linking to its own page (audit trail,
    retry)."""

    model = SellerTransfer
    extra = 0
    can_delete = False
    show_change_link = True
    fields = (
        "seller",
        "status_badge",
        "amount_money",
        "money_line",
        "stripe_ids",
        "reason",
        "attempts",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


# The order page shows its transfers too. The inline lives here because marketplace never
# imports payouts: payouts extends marketplace's order admin instead.
class OrderWithTransfersAdmin(PageActions, OrderAdmin):
    inlines = [*OrderAdmin.inlines, SellerTransferInline]
    actions = ["refund_in_full", "release_held"]

    def page_actions_for(self, obj) -> list[str]:
        if obj.status == Order.Status.PENDING:
            return []
        held = obj.transfers.filter(status=TransferStatus.HELD).exists()
        refundable = obj.status != Order.Status.REFUNDED
        return [
            name
            for name, applies in (("refund_in_full", refundable), ("release_held", held))
            if applies
        ]

    @admin.action(description="Refund selected orders in full at Stripe…", permissions=["refund"])
    def refund_in_full(self, request, queryset):
        orders = list(queryset.order_by("pk"))
        if "apply" not in request.POST:
            return action_form(
                self,
                request,
                None,
                action="refund_in_full",
                selected=[order.pk for order in orders],
                title=f"Refund {len(orders)} order(s) in full at Stripe",
                plan=[action_plans.refund_in_full_plan(order) for order in orders],
                intro="Nothing is refunded until you confirm. The buyer gets back all that is "
                "left of each order; the refund's webhook then takes each seller's share back.",
                submit="Refund at Stripe",
            )
        for order in orders:
            try:
                done = staff_action_request(
                    kind="staff_refund",
                    params={"order_id": order.pk, "amount": None},
                    reason="",
                    user=request.user,
                )
            except DomainError as error:
                level, text = admin_message(error, about=f"order {order.pk}")
                self.message_user(request, text, level)
            else:
                if done.outcome == Outcome.WAITING:
                    self.message_user(
                        request,
                        f"Order {order.pk}: {waiting_message(done.request)}",
                        messages.SUCCESS,
                    )
                    continue
                refund = Refund.objects.get(pk=done.result["refund_id"])
                self.message_user(
                    request,
                    f"Order {order.pk}: refunded {format_money(refund.amount, refund.currency)} "
                    f"to {order.buyer_email} at Stripe ({refund.stripe_refund_id}); its webhook "
                    "completes it and takes the sellers' shares back.",
                    messages.SUCCESS,
                )
        return None

    def has_refund_permission(self, request):
        return request.user.has_perm("marketplace.refund_order")

    @admin.action(description="Release held seller transfers now…", permissions=["release"])
    def release_held(self, request, queryset):
        orders = list(queryset.order_by("pk"))
        if "apply" not in request.POST:
            return action_form(
                self,
                request,
                None,
                action="release_held",
                selected=[order.pk for order in orders],
                title=f"Release the held transfers of {len(orders)} order(s)",
                plan=[line for order in orders for line in action_plans.release_plan(order)],
                intro="Nothing is sent until you confirm. A seller whose account cannot receive "
                "transfers stays held until it can.",
                submit="Release and send",
            )
        for order in orders:
            try:
                done = staff_action_request(
                    kind="release", params={"order_id": order.pk}, reason="", user=request.user
                )
            except DomainError as error:
                level, text = admin_message(error, about=f"order {order.pk}")
                self.message_user(request, text, level)
            else:
                if done.outcome == Outcome.WAITING:
                    text = f"Order {order.pk}: {waiting_message(done.request)}"
                else:
                    released = list(
                        SellerTransfer.objects.filter(pk__in=done.result["released"])
                        .select_related("seller")
                        .order_by("pk")
                    )
                    sent = ", ".join(
                        f"{format_money(row.to_send, row.currency)} to {row.seller.name}"
                        for row in released
                    )
                    text = (
                        f"Order {order.pk}: released {len(released)} transfer(s), sending {sent}."
                    )
                self.message_user(request, text, messages.SUCCESS)
        return None

    def has_release_permission(self, request):
        return request.user.has_perm("payouts.release_sellertransfer")


class RefundWithSettleAdmin(RefundAdmin):
    """The refund admin, with the action settling an uncertain staff refund.

    The refund list, with the action that settles a staff refund whose Stripe call ended
    without a definite answer (marketplace never imports payouts: payouts extends its admin)."""

    actions = ["settle_reservation"]

    @admin.action(
        description="Settle selected pending staff refunds (release when Stripe holds none)",
        permissions=["refund"],
    )
    def settle_reservation(self, request, queryset):
        for pk in queryset.order_by("pk").values_list("pk", flat=True):
            try:
                outcome = staff_refund_settle(refund_id=pk, release=True)
            except DomainError as error:
                level, text = admin_message(error, about=f"refund {pk}")
                self.message_user(request, text, level)
            else:
                self.message_user(request, f"refund {pk}: {outcome}", messages.INFO)

    def has_refund_permission(self, request):
        return request.user.has_perm("marketplace.refund_order")


class DisputeWithRecoveryAdmin(DisputeAdmin):
    """The dispute admin, with what is recovered from the order's sellers.

    The dispute list, with what is being recovered from the order's sellers: their shares
    of the chargeback (``dispute_target``), by the recovery policy (marketplace never imports
    payouts: payouts extends its admin)."""

    list_display = (
        *DisputeAdmin.list_display[:6],
        "recovered_money",
        *DisputeAdmin.list_display[6:],
    )
    readonly_fields = ("recovered_money",)

    def get_queryset(self, request):
        shares = SellerTransfer.objects.filter(order=OuterRef("order")).order_by()
        recovered = shares.values("order").annotate(total=Sum("dispute_target")).values("total")
        return super().get_queryset(request).annotate(recovered=Subquery(recovered))

    @admin.display(description="recovered from sellers")
    def recovered_money(self, dispute):
        recovered = getattr(dispute, "recovered", None)
        if not recovered:
            return EMPTY
        currency = dispute.settlement_currency or dispute.order.settlement_currency
        return money(recovered, currency or dispute.currency)


# --- Sellers' bank payouts: seller → payouts → the lines each carried --------------------------

PAYOUT_TONES = {
    PayoutStatus.PENDING: Tone.WAITING,
    PayoutStatus.IN_TRANSIT: Tone.WAITING,
    PayoutStatus.PAID: Tone.OK,
    PayoutStatus.FAILED: Tone.DANGER,
    PayoutStatus.CANCELED: Tone.NEUTRAL,
}
ITEM_TONES = {
    PayoutItemKind.TRANSFER: Tone.OK,
    PayoutItemKind.REVERSAL: Tone.NEUTRAL,
    PayoutItemKind.UNMATCHED: Tone.WARNING,
}


class PayoutItemInline(admin.TabularInline):
    model = PayoutItem
    extra = 0
    can_delete = False
    fields = (
        "kind_badge",
        "stripe_type",
        "source_link",
        "amount_money",
        "net_money",
        "order_link",
        "transfer_link",
        "note",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="kind")
    def kind_badge(self, item):
        return badge(item.kind, ITEM_TONES.get(item.kind, Tone.NEUTRAL))

    @admin.display(description="Stripe source")
    def source_link(self, item):
        return stripe_link(item.stripe_source_id)

    @admin.display(description="amount")
    def amount_money(self, item):
        return money(item.amount, item.currency)

    @admin.display(description="net")
    def net_money(self, item):
        return money(item.net, item.currency)

    @admin.display(description="order")
    def order_link(self, item):
        if not item.order_id:
            return EMPTY
        url = reverse("admin:marketplace_order_change", args=[item.order_id])
        return format_html('<a href="{}">{}</a>', url, item.order_id)

    @admin.display(description="transfer")
    def transfer_link(self, item):
        if not item.transfer_id:
            return EMPTY
        url = reverse("admin:payouts_sellertransfer_change", args=[item.transfer_id])
        return format_html('<a href="{}">{}</a>', url, item.transfer_id)


class PayoutSellerFilter(admin.SimpleListFilter):
    """One seller's payouts (the link from the seller's page); no list of every seller."""

    title = "seller"
    parameter_name = "seller_id"

    def lookups(self, request, model_admin):
        value = request.GET.get(self.parameter_name, "")
        seller = Seller.objects.filter(pk=value).first() if value.isdigit() else None
        return [(str(seller.pk), str(seller))] if seller else []

    def queryset(self, request, queryset):
        value = self.value()
        return queryset if value is None else queryset.filter(seller_id=value)


class PayoutAttentionFilter(admin.SimpleListFilter):
    title = "needs attention"
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return [("1", "Failed, not read, or not adding up")]

    def queryset(self, request, queryset):
        return queryset if self.value() is None else queryset.filter(selectors.PAYOUT_ATTENTION)


@admin.register(Payout)
class PayoutAdmin(ReadOnlyAdmin):
    list_display = (
        "stripe_payout_id",
        "seller",
        "amount_money",
        "status_badge",
        "arrival_date",
        "lines",
        "unmatched_count",
        "reason",
    )
    list_filter = (PayoutAttentionFilter, PayoutSellerFilter, "status")
    list_select_related = ("seller",)
    search_fields = ("=stripe_payout_id",)
    ordering = ("-id",)
    inlines = [PayoutItemInline]
    actions = ["read_again"]
    shown_as = {"amount": "amount_money", "status": "status_badge"}
    readonly_fields = ("lines", "reason")

    @admin.display(description="amount", ordering="amount")
    def amount_money(self, payout):
        return money(payout.amount, payout.currency)

    @admin.display(description="status", ordering="status")
    def status_badge(self, payout):
        return badge(payout.status, PAYOUT_TONES.get(payout.status, Tone.NEUTRAL))

    @admin.display(description="lines")
    def lines(self, payout):
        """What its lines add up to, against its amount."""
        if payout.items_total is None:
            return "not read" if payout.automatic else "manual: not listable"
        total = money(payout.items_total, payout.currency)
        if payout.balanced:
            return format_html("{} (adds up)", total)
        return format_html('<span class="reason-attention">{} (does not add up)</span>', total)

    @admin.display(description="Stripe's reason")
    def reason(self, payout):
        if payout.failure_code:
            return f"{payout.failure_code}: {payout.failure_message}"
        if payout.reconcile_error:
            return f"not read: {Truncator(payout.reconcile_error).chars(120)}"
        return EMPTY

    @admin.action(description="Read selected payouts again at Stripe", permissions=["reconcile"])
    def read_again(self, request, queryset):
        for payout in queryset.order_by("pk"):
            try:
                result = payout_reconcile_by_staff(payout=payout)
            except DomainError as error:
                level, text = admin_message(error, about=f"payout {payout.stripe_payout_id}")
                self.message_user(request, text, level)
            else:
                self.message_user(
                    request,
                    f"payout {payout.stripe_payout_id}: {result.lines} line(s) in "
                    f"{result.calls} call(s), {result.unmatched} unmatched",
                    messages.SUCCESS,
                )

    def has_reconcile_permission(self, request):
        return request.user.has_perm("payouts.reconcile_payout")


RELEASE_TONES = {
    ReleaseState.PENDING: Tone.WAITING,
    ReleaseState.SENT: Tone.OK,
    ReleaseState.FAILED: Tone.DANGER,
}


class ResendForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea,
        max_length=500,
        help_text="Why it is sent again (the cause that is fixed); kept on the release.",
    )


@admin.register(ReserveRelease)
class ReserveReleaseAdmin(ReadOnlyAdmin):
    """Each seller's reserve releases and give-backs; staff send one that gave up again."""

    list_display = (
        "id",
        "seller",
        "release_on",
        "amount_money",
        "state_badge",
        "given_back_for",
        "retry_count",
        "stripe_transfer_id",
        "error_message",
    )
    list_filter = ("state",)
    list_select_related = ("seller",)
    search_fields = ("=stripe_transfer_id", "=idempotency_key")
    ordering = ("-id",)
    actions = ["resend_given_up"]
    shown_as = {"amount": "amount_money", "state": "state_badge"}

    @admin.display(description="amount", ordering="amount")
    def amount_money(self, release):
        return money(release.amount, release.currency)

    @admin.display(description="state", ordering="state")
    def state_badge(self, release):
        return badge(release.state, RELEASE_TONES.get(release.state, Tone.NEUTRAL))

    @admin.action(
        description="Send selected reserve releases that gave up again…", permissions=["resend"]
    )
    def resend_given_up(self, request, queryset):
        rows = list(queryset.select_related("seller").order_by("pk"))
        form = ResendForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return action_form(
                self,
                request,
                form,
                action="resend_given_up",
                selected=[row.pk for row in rows],
                title=f"Send {len(rows)} reserve release(s) that gave up again",
                plan=[action_plans.resend_plan(row) for row in rows],
                intro="Nothing is sent until you confirm. Stripe is read first: a transfer of "
                "the release found there is adopted, else it is sent under a new key. Only "
                "failed releases are sent; the others are left alone and say why. Do not also "
                "pay the seller by hand in the Stripe Dashboard.",
                submit="Send again",
            )
        for row in rows:
            self._resend(request, row, reason=form.cleaned_data["reason"])
        return None

    def _resend(self, request, row, *, reason: str) -> None:
        about = f"reserve release {row.pk} to {seller_named(row.seller)}"
        try:
            done = staff_action_request(
                kind="reserve_resend",
                params={"release_id": row.pk},
                reason=reason,
                user=request.user,
            )
        except DomainError as error:
            level, text = admin_message(error, about=about)
            self.message_user(request, text, level)
            return
        if done.outcome == Outcome.WAITING:
            text = f"Reserve release {row.pk}: {waiting_message(done.request)}"
        else:
            text = (
                f"Reserve release {row.pk} of {format_money(row.amount, row.currency)} to "
                f"{seller_named(row.seller)}: {done.result['state']} "
                f"{done.result['stripe_transfer_id'] or '(Stripe refused again; retried)'}."
            )
        self.message_user(request, text, messages.SUCCESS)

    def has_resend_permission(self, request):
        return request.user.has_perm("payouts.resend_reserverelease")


class SellerWithPayoutsAdmin(PageActions, SellerWithBookAdmin):
    """The seller's admin page, with their bank payouts and account changes.

    It shows what the book says of them, and links to the seller's bank payouts (neither marketplace
    nor the book imports payouts: payouts extends their admin). A change of connected account also
    releases the seller's transfers held for the old account (a seller who disconnected is paid once
    reconnected); "refresh from Stripe" asks Stripe now whether the account can receive, as happens
    at once for an account entered by hand."""

    readonly_fields = (*SellerWithBookAdmin.readonly_fields, "bank_payouts")

    @admin.display(description="bank payouts")
    def bank_payouts(self, seller):
        if not seller.pk:
            return EMPTY
        url = reverse("admin:payouts_payout_changelist")
        count = seller.payouts.count()
        return format_html('<a href="{}?seller_id={}">{} payout(s)</a>', url, seller.pk, count)

    def account_change(self, request, seller, account: str) -> None:
        released = seller_reconnect(seller=seller, stripe_account_id=account, user=request.user)
        if released:
            self.message_user(
                request,
                f"{released} held transfer(s) of the seller released: they are sent to the new "
                "account once Stripe says it can receive",
                messages.SUCCESS,
            )

    actions = [*SellerWithBookAdmin.actions, "refresh_from_stripe"]

    def page_actions_for(self, obj) -> list[str]:
        return ["refresh_from_stripe", "write_off_debt", "download_statement"]

    @admin.action(description="Refresh the account status from Stripe", permissions=["change"])
    def refresh_from_stripe(self, request, queryset):
        for seller in queryset.order_by("pk"):
            self._refresh(request, seller)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and "stripe_account_id" in form.changed_data and obj.stripe_account_id:
            self._refresh(request, obj)

    def _refresh(self, request, seller) -> None:
        try:
            refreshed = seller_account_refresh(seller_id=seller.pk, actor=Actor.staff(request.user))
        except DomainError as error:
            level, text = admin_message(error, about=seller_named(seller))
            self.message_user(request, text, level)
        else:
            reason = (
                f" ({refreshed.account_status_reason})" if refreshed.account_status_reason else ""
            )
            self.message_user(
                request,
                f"{seller_named(refreshed)}: Stripe says {refreshed.account_status}{reason}.",
                messages.SUCCESS,
            )


admin.site.unregister(Seller)
admin.site.register(Seller, SellerWithPayoutsAdmin)


admin.site.unregister(Dispute)
admin.site.register(Dispute, DisputeWithRecoveryAdmin)
admin.site.unregister(Order)
admin.site.register(Order, OrderWithTransfersAdmin)
admin.site.unregister(Refund)
admin.site.register(Refund, RefundWithSettleAdmin)
admin.site.unregister(Seller)
admin.site.register(Seller, SellerWithPayoutsAdmin)
