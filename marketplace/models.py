"""The marketplace's tables: sellers, orders, refunds and disputes.

Sellers, orders and refunds. Money is an integer in minor units; currency a lowercase ISO
code. Order and refund statuses are plain fields: only the seller transfer (``payouts``) has a
guarded state machine, because only it moves money out of the platform."""

from django.conf import settings
from django.db import models
from django.db.models import Q

CURRENCY_FORMAT = Q(currency__regex=r"^[a-z]{3}$")


def _not_empty(field: str) -> Q:
    return ~Q(**{field: ""})


class AccountStatus(models.TextChoices):
    """Whether the seller's connected account can receive transfers, as Stripe last said."""

    UNKNOWN = "unknown"  # not heard yet: read from Stripe before the first transfer
    READY = "ready"  # the `transfers` capability is active
    RESTRICTED = "restricted"  # capability inactive or pending, requirements past due, rejected
    DEAUTHORIZED = "deauthorized"  # the account disconnected the platform


class Seller(models.Model):
    AccountStatus = AccountStatus

    name = models.CharField(max_length=200)
    email = models.EmailField()
    stripe_account_id = models.CharField(
        max_length=255, blank=True, default="", help_text="Stripe Connect account (acct_…)."
    )
    account_status = models.CharField(
        max_length=16, choices=AccountStatus.choices, default=AccountStatus.UNKNOWN,
        db_default=AccountStatus.UNKNOWN,
    )  # fmt: skip
    account_status_reason = models.CharField(max_length=255, blank=True, default="", db_default="")
    account_status_at = models.DateTimeField(null=True, blank=True)
    # When Stripe made the newest account event applied to the status (``created``): events
    # come in any order, and an older one must not overwrite what a newer one said.
    account_event_created = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["stripe_account_id"],
                condition=_not_empty("stripe_account_id"),
                name="uniq_seller_stripe_account_id",
            ),
            models.CheckConstraint(
                condition=Q(stripe_account_id="") | Q(stripe_account_id__startswith="acct_"),
                name="chk_seller_stripe_account_id_format",
            ),
            models.CheckConstraint(
                condition=Q(account_status__in=AccountStatus.values),
                name="chk_seller_account_status",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class OrderStatus(models.TextChoices):
    PENDING = "pending"
    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"


class RefundStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class Settled(models.Model):
    """Fields recording how a payment or refund settled on the platform's balance.

    How a payment or a refund landed on the platform's Stripe balance: its balance
    transaction, in the platform's settlement currency (``settlement_currency``), which may differ
    from the currency the buyer paid in. Empty until read from Stripe.

    ``settlement_due_at`` is set while the balance transaction must still be read (a paid order,
    a refund in another currency than its settlement); the sweep reads it then."""

    settlement_currency = models.CharField(max_length=3, blank=True, default="", db_default="")
    settlement_amount = models.BigIntegerField(
        null=True, blank=True, help_text="What it settled as, minor units of the settlement."
    )
    exchange_rate = models.DecimalField(
        max_digits=24, decimal_places=12, null=True, blank=True,
        help_text="Stripe's rate: one major unit of the buyer's currency in the settlement's.",
    )  # fmt: skip
    stripe_balance_transaction_id = models.CharField(
        max_length=255, blank=True, default="", db_default="", help_text="txn_…"
    )
    settlement_due_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def settled(self) -> bool:
        return self.settlement_amount is not None


def _settlement_checks(prefix: str) -> list[models.CheckConstraint]:
    return [
        models.CheckConstraint(
            condition=Q(settlement_currency="") | Q(settlement_currency__regex=r"^[a-z]{3}$"),
            name=f"chk_{prefix}_settlement_currency",
        ),
        models.CheckConstraint(
            condition=Q(settlement_amount__isnull=True)
            | (Q(settlement_amount__gte=0) & ~Q(settlement_currency="")),
            name=f"chk_{prefix}_settlement_amount",
        ),
    ]


class Order(Settled):
    Status = OrderStatus

    buyer_email = models.EmailField()
    currency = models.CharField(max_length=3, default="usd")
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.PENDING)
    stripe_payment_intent_id = models.CharField(max_length=255, blank=True, default="")
    stripe_charge_id = models.CharField(max_length=255, blank=True, default="")
    # What landed after Stripe's processing fee: the sellers' shares and the platform's fees
    # add up to it.
    settlement_net = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        permissions = [("refund_order", "Can refund an order at Stripe")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=OrderStatus.values), name="chk_order_status"
            ),
            models.CheckConstraint(condition=CURRENCY_FORMAT, name="chk_order_currency"),
            models.UniqueConstraint(
                fields=["stripe_payment_intent_id"],
                condition=_not_empty("stripe_payment_intent_id"),
                name="uniq_order_stripe_payment_intent_id",
            ),
            models.UniqueConstraint(
                fields=["stripe_charge_id"],
                condition=_not_empty("stripe_charge_id"),
                name="uniq_order_stripe_charge_id",
            ),
            *_settlement_checks("order"),
            models.CheckConstraint(
                condition=Q(settlement_net__isnull=True)
                | Q(settlement_net__gte=0, settlement_net__lte=models.F("settlement_amount")),
                name="chk_order_settlement_net",
            ),
        ]
        indexes = [
            models.Index(
                fields=["settlement_due_at"],
                condition=Q(settlement_due_at__isnull=False),
                name="order_settlement_due",
            )
        ]

    def __str__(self) -> str:
        return f"Order {self.pk}"


class OrderItem(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    seller = models.ForeignKey(Seller, on_delete=models.PROTECT, related_name="order_items")
    description = models.CharField(max_length=500)
    amount = models.BigIntegerField(help_text="Minor units (cents).")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="chk_order_item_amount"),
        ]

    def __str__(self) -> str:
        return f"{self.description} ({self.amount})"


class Refund(Settled):
    Status = RefundStatus

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="refunds")
    stripe_refund_id = models.CharField(
        max_length=255, blank=True, default="", help_text="Stripe refund (re_…)."
    )
    amount = models.BigIntegerField(help_text="Minor units (cents).")
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.PENDING)
    # Set for refunds staff started here: the key of the Stripe call that created it.
    stripe_idempotency_key = models.CharField(max_length=255, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=RefundStatus.values), name="chk_refund_status"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="chk_refund_amount"),
            models.CheckConstraint(condition=CURRENCY_FORMAT, name="chk_refund_currency"),
            models.UniqueConstraint(
                fields=["stripe_refund_id"],
                condition=_not_empty("stripe_refund_id"),
                name="uniq_refund_stripe_refund_id",
            ),
            *_settlement_checks("refund"),
        ]
        indexes = [
            models.Index(
                fields=["settlement_due_at"],
                condition=Q(settlement_due_at__isnull=False),
                name="refund_settlement_due",
            ),
            # What reconciliation rechecks daily: the refunds changed in the last day.
            models.Index(fields=["updated_at"], name="idx_refund_updated_at"),
        ]

    def __str__(self) -> str:
        return self.stripe_refund_id or f"Refund {self.pk}"


class SellerAccountChange(models.Model):
    """One change of a seller's connected account, kept forever.

    Append-only record of each change of a seller's connected account: where the seller's
    money goes."""

    seller = models.ForeignKey(Seller, on_delete=models.PROTECT, related_name="account_changes")
    old_account = models.CharField(max_length=255, blank=True)
    new_account = models.CharField(max_length=255, blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT
    )
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.old_account or '-'} → {self.new_account or '-'}"


class DisputeStatus(models.TextChoices):
    """Stripe's dispute statuses.

    Stripe's dispute statuses: ``warning_*`` are inquiries (no funds move), the others
    chargebacks (funds withdrawn when opened)."""

    WARNING_NEEDS_RESPONSE = "warning_needs_response"
    WARNING_UNDER_REVIEW = "warning_under_review"
    WARNING_CLOSED = "warning_closed"
    NEEDS_RESPONSE = "needs_response"
    UNDER_REVIEW = "under_review"
    WON = "won"
    LOST = "lost"


CLOSED_DISPUTE_STATUSES = (DisputeStatus.WARNING_CLOSED, DisputeStatus.WON, DisputeStatus.LOST)


class Dispute(models.Model):
    """A buyer's bank disputing the order's charge, as Stripe last described it."""

    Status = DisputeStatus

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="disputes")
    stripe_dispute_id = models.CharField(max_length=255, unique=True, help_text="dp_…")
    amount = models.BigIntegerField(help_text="Disputed amount, minor units.")
    currency = models.CharField(max_length=3)
    # What Stripe charged the platform for the dispute (0 until the funds are withdrawn).
    fee = models.BigIntegerField(default=0)
    # What Stripe withdrew for it from the platform's balance (without its fee), in the
    # settlement currency; null until the funds are withdrawn.
    settlement_amount = models.BigIntegerField(null=True, blank=True)
    settlement_currency = models.CharField(max_length=3, blank=True, default="", db_default="")
    reason = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=32, choices=Status.choices)
    evidence_due_by = models.DateTimeField(null=True, blank=True)
    funds_withdrawn = models.BooleanField(default=False)
    funds_reinstated = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=DisputeStatus.values), name="chk_dispute_status"
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="chk_dispute_amount"),
            models.CheckConstraint(condition=Q(fee__gte=0), name="chk_dispute_fee"),
            models.CheckConstraint(condition=CURRENCY_FORMAT, name="chk_dispute_currency"),
        ]

    def __str__(self) -> str:
        return f"{self.stripe_dispute_id} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status not in CLOSED_DISPUTE_STATUSES
