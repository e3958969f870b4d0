"""The console's page of sellers' payout policies, and the release of a risk hold.

Saving the form is a staff action (``policy_change``) and goes through the approvals app, as
the API does; the release of a risk hold (``risk_release``) likewise. Only the fields changed
are sent, so a field nobody touched keeps following its default."""

from django import forms
from django.contrib import admin, messages

from approvals.services import Outcome, staff_action_request
from config.durations import duration_text
from config.errors import DomainError, admin_message
from config.money import format_money
from payouts.models import AccountDebit, SellerPolicy, SellerPolicyChange
from payouts.services.policies import FIELDS, policy_changes_parse, seller_policy_row


class SellerPolicyForm(forms.ModelForm):
    hold = forms.CharField(
        required=False,
        help_text="A duration (7d, 12h, 0 for none); empty: TRANSFER_HOLD.",
    )

    class Meta:
        model = SellerPolicy
        fields = ("seller", *FIELDS)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.hold is not None:
            self.initial["hold"] = duration_text(self.instance.hold)

    def clean_hold(self):
        return self.cleaned_data["hold"].strip() or None

    def changes(self) -> dict:
        """The changed fields, as the API takes them (JSON values)."""
        found = {}
        for name in FIELDS:
            if name in self.changed_data:
                value = self.cleaned_data[name]
                found[name] = value.isoformat() if hasattr(value, "isoformat") else value
        return found

    def clean(self):
        cleaned = super().clean()
        try:
            policy_changes_parse(self.changes())
        except DomainError as error:
            raise forms.ValidationError(error.message) from None
        return cleaned

    def _post_clean(self):
        # The service stores the fields (audited, maybe after approval), not the form.
        pass


@admin.register(AccountDebit)
class AccountDebitAdmin(admin.ModelAdmin):
    """Each account debit attempt: read-only (the debit worker is the only writer)."""

    list_display = (
        "created_at",
        "seller",
        "amount",
        "currency",
        "state",
        "retry_count",
        "stripe_transfer_id",
        "error_message",
    )
    list_filter = ("state", "currency")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(SellerPolicyChange)
class SellerPolicyChangeAdmin(admin.ModelAdmin):
    list_display = ("changed_at", "seller", "kind", "changed_by", "before", "after", "reason")
    list_filter = ("kind",)
    readonly_fields = list_display

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(SellerPolicy)
class SellerPolicyAdmin(admin.ModelAdmin):
    form = SellerPolicyForm
    list_display = ("seller", "hold", "fee_bps", "reserve_bps", "reserve_days", "debits_allowed")
    list_display_links = ("seller",)
    raw_id_fields = ("seller",)
    actions = ["release_risk_hold"]

    def get_readonly_fields(self, request, obj=None):
        return ("seller",) if obj is not None else ()

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        """Send the changed fields through the approvals app; the row shown is the stored one."""
        # The form stores nothing itself (see ``_post_clean``): a new page names its seller.
        seller_id = obj.seller_id or form.cleaned_data["seller"].pk
        try:
            done = staff_action_request(
                kind="policy_change",
                params={"seller_id": seller_id, "changes": form.changes()},
                reason="",
                user=request.user,
            )
        except DomainError as error:
            level, text = admin_message(error, about=f"seller {seller_id}")
            self.message_user(request, text, level)
        else:
            if done.outcome == Outcome.WAITING:
                self.message_user(
                    request,
                    f"The change waits for a second person (request {done.request.pk}).",
                    messages.WARNING,
                )
        obj.pk = seller_policy_row(seller_id=seller_id).pk

    def log_addition(self, request, obj, message):
        return None  # the change is audited in SellerPolicyChange

    def log_change(self, request, obj, message):
        return None

    @admin.action(description="Release the seller's risk hold…", permissions=["change"])
    def release_risk_hold(self, request, queryset):
        for policy in queryset.order_by("seller_id"):
            about = f"seller {policy.seller_id}"
            try:
                done = staff_action_request(
                    kind="risk_release",
                    params={"seller_id": policy.seller_id},
                    reason="",
                    user=request.user,
                )
            except DomainError as error:
                level, text = admin_message(error, about=about)
                self.message_user(request, text, level)
                continue
            if done.outcome == Outcome.WAITING:
                waiting = format_money(done.request.amount, done.request.currency)
                text = f"{about}: {waiting} waits for a second person (request {done.request.pk})"
            else:
                text = f"{about}: released {len(done.result['released'])} transfer(s)"
            self.message_user(request, text, messages.SUCCESS)
