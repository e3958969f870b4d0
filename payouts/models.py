from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Greatest

from marketplace.models import CURRENCY_FORMAT, Order, Seller
from payouts.transfer import money
from payouts.transfer.managers import SellerTransferManager
from payouts.transfer.transitions import EndReason, HeldReason, TransferStatus


def _not_empty(field: str) -> Q:
    return ~Q(**{field: ""})


# Where a transfer rests once the workers are done with it (for now: a refund can move a
# completed row again).
SETTLED_STATUSES = [
    TransferStatus.COMPLETED,
    TransferStatus.PARTIALLY_REVERSED,
    TransferStatus.REVERSED,
    TransferStatus.REVERSAL_REFUSED,
    TransferStatus.PERMANENTLY_FAILED,
]

# The rows "needs attention" can name: the workers' backlog, the ends a person acts on (a
# transfer cancelled because its order was refunded before payment needs nothing).
ATTENTION_CANDIDATES = Q(
    status__in=[
        TransferStatus.PENDING,
        TransferStatus.FAILED,
        TransferStatus.HELD,
        TransferStatus.REVERSAL_PENDING,
        TransferStatus.REVERSAL_REFUSED,
    ]
) | (Q(status=TransferStatus.PERMANENTLY_FAILED) & ~Q(end_reason=EndReason.ORDER_REFUNDED))

# The money arithmetic in SQL, for the set-based reads over millions of rows (the console's
# figures, ledger_check, the alert gauge). Each mirrors a function of payouts.transfer.money;
# tests/test_money_sql.py checks the two agree on a set of rows.

# What is left of an unpaid transfer once netted and its shares kept back (negative: shares
# beyond it, the seller's debt once paid; ``money.owed_at_send``).
LEFT_AFTER_SHARES = (
    F("amount")
    - F("amount_reserved")
    - F("amount_netted")
    - F("reversal_target")
    - F("dispute_target")
)
# What an unpaid transfer is to send (``money.to_send``).
UNSENT = Greatest(LEFT_AFTER_SHARES, 0)
# What is left to take back from a paid transfer (``money.balances(...).to_take_back``).
TO_TAKE_BACK = Greatest(
    F("reversal_target")
    + F("dispute_target")
    - F("amount_withheld")
    - F("amount_reversed")
    - F("amount_owed")
    + F("amount_returned"),
    0,
)
# Given back in new transfers beyond what was kept back or reversed: against the seller's debt
# (``money.given_back_against_debt``).
GIVEN_BACK_AGAINST_DEBT = Greatest(
    F("amount_returned") - F("amount_withheld") - F("amount_reversed"), 0
)

# Taken back beyond the shares (and beyond what is owed back already): Stripe reversed more
# than asked (a Dashboard reversal, a forgotten key). Reported, never adopted
# (``money.over_reversed``).
OVER_REVERSED = Q(
    amount_reversed__gt=F("reversal_target")
    + F("dispute_target")
    + F("amount_to_give_back")
    + F("amount_returned")
    - F("amount_withheld")
    - F("amount_owed")
)


class SellerTransfer(models.Model):
    """One seller's share of one order, paid with a Stripe Connect Transfer.

    ``status`` changes only through the named moves of ``payouts.transfer.moves``, each one guarded
    ``SellerTransfer.objects.transition``; rows are created with their initial status.
    """

    Status = TransferStatus

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="transfers")
    seller = models.ForeignKey(Seller, on_delete=models.PROTECT, related_name="transfers")
    amount = models.BigIntegerField(help_text="Net amount sent to the seller, minor units.")
    platform_fee = models.BigIntegerField(default=0, help_text="Minor units kept by the platform.")
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.PENDING)
    stripe_transfer_id = models.CharField(max_length=255, blank=True, default="")
    stripe_reversal_id = models.CharField(
        max_length=255, blank=True, default="", help_text="The latest reversal (trr_…)."
    )
    amount_reversed = models.BigIntegerField(default=0)
    # Part of ``amount`` kept to settle the seller's debt instead of being sent (decided when
    # the row is created): the Stripe transfer is ``amount - amount_netted``.
    amount_netted = models.BigIntegerField(default=0, db_default=0)
    # Part of the refund shares that could not be taken back at Stripe (the seller's balance
    # refused it, or it was never sent to them): recorded as the seller's debt.
    amount_owed = models.BigIntegerField(default=0, db_default=0)
    # Part of the refund shares kept back before the transfer was sent (refunds during a hold):
    # never sent, so never reversed. The Stripe transfer is amount - netted - withheld.
    amount_withheld = models.BigIntegerField(default=0, db_default=0)
    # The seller's share of the order's chargeback being recovered (0 when none, or when the
    # dispute was won and it was given back). With ``reversal_target`` (the refunds' share), what
    # should be taken back from the seller now; both follow the order and can go down.
    dispute_target = models.BigIntegerField(default=0, db_default=0)
    # What was given back to the seller after it had been taken (a dispute won, a refund that
    # failed): sent to them at Stripe in new transfers (the latest: ``stripe_return_id``).
    amount_returned = models.BigIntegerField(default=0, db_default=0)
    # Taken back beyond what the shares now ask (they went down): to give back to the seller,
    # their debt first, the rest in a new transfer. Never what Stripe reversed on its own (a
    # Dashboard reversal beyond the shares is reported, not paid back).
    amount_to_give_back = models.BigIntegerField(default=0, db_default=0)
    stripe_return_id = models.CharField(max_length=255, blank=True, default="", db_default="")
    held_reason = models.CharField(
        max_length=32, choices=HeldReason.choices, blank=True, default="", db_default=""
    )
    # How much of ``amount`` should be reversed in all: the transfer's proportional share of the
    # order's succeeded refunds (payouts/services/shares.py), or what Stripe reports
    # reversed. The worker reverses ``reversal_target - amount_reversed``; it only ever grows.
    reversal_target = models.BigIntegerField(default=0)
    # The transfer as the seller's connected account sees it (a payment ``py_…``): what the
    # balance transactions of the seller's bank payouts name.
    stripe_destination_payment_id = models.CharField(
        max_length=255, blank=True, default="", db_default=""
    )
    # The seller's payout policy this row was computed with (``fee_bps``, ``hold`` in seconds,
    # ``risk``: held for the seller's disputes), so a later policy change explains nothing away.
    policy = models.JSONField(default=dict, db_default={}, blank=True)
    # The rolling reserve: the part of ``amount`` kept back at payment (the seller's policy's
    # ``reserve_bps``), never sent with the transfer, released in a transfer of its own at
    # ``reserve_release_at`` (``payouts.services.reserves``). The order's refunds and chargeback
    # take from it first: ``reserve_refund`` and ``reserve_dispute`` are the shares it covered;
    # ``reversal_target`` and ``dispute_target`` only what it did not.
    amount_reserved = models.BigIntegerField(default=0, db_default=0)
    reserve_refund = models.BigIntegerField(default=0, db_default=0)
    reserve_dispute = models.BigIntegerField(default=0, db_default=0)
    # What the reserve covered at its release and gave back since (a refund that failed, a
    # dispute won): owed to the seller again, and sent by releases of its own
    # (``ReserveRelease.given_back_for``). What it covered at release is this plus the two above.
    reserve_given_back = models.BigIntegerField(default=0, db_default=0)
    # Once released, shares beyond what the reserve still covers and what the transfer part
    # can take back (a full refund after the release): the part of the released reserve the
    # seller owes, of the refund and of the chargeback, booked as their debt with the change of
    # shares. ``reserve_owed_given_back``: what of that debt, already paid (netted, debited),
    # was owed no more later and went back to the seller by a release of its own.
    reserve_owed_refund = models.BigIntegerField(default=0, db_default=0)
    reserve_owed_dispute = models.BigIntegerField(default=0, db_default=0)
    reserve_owed_given_back = models.BigIntegerField(default=0, db_default=0)
    reserve_release_at = models.DateTimeField(null=True, blank=True)
    # The release that sent what the reserve had left (set once; the reserve is then closed).
    reserve_release = models.ForeignKey(
        "ReserveRelease",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="transfers",
    )
    transfer_idempotency_key = models.CharField(max_length=255, blank=True, default="")
    reversal_idempotency_key = models.CharField(max_length=255, blank=True, default="")
    # Set when an attempt failed in a way that may have moved money (a 5xx) and the next attempt
    # uses a new idempotency key: Stripe's state is read before that attempt sends anything.
    read_stripe_first = models.BooleanField(default=False)
    # When the row's current idempotency key was first sent (set by the claim that precedes every
    # send; cleared when the key changes). Stripe forgets a key after 24 hours: a key kept longer
    # than that must not be sent before Stripe's state is read.
    key_first_sent_at = models.DateTimeField(null=True, blank=True)
    retry_count = models.PositiveIntegerField(default=0)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    error_message = models.TextField(blank=True, default="")
    # Why a permanently_failed row ended (empty otherwise).
    end_reason = models.CharField(
        max_length=32, choices=EndReason.choices, blank=True, default="", db_default=""
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SellerTransferManager()

    class Meta:
        permissions = [
            ("retry_sellertransfer", "Can retry a failed seller transfer"),
            ("release_sellertransfer", "Can release an order's held seller transfers"),
            ("requeue_sellertransfer", "Can re-queue a seller transfer that gave up"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["order", "seller"], name="uniq_transfer_order_seller"),
            models.CheckConstraint(
                condition=Q(status__in=TransferStatus.values),
                name="chk_transfer_status",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="chk_transfer_amount"),
            models.CheckConstraint(
                condition=Q(platform_fee__gte=0), name="chk_transfer_platform_fee"
            ),
            models.CheckConstraint(
                condition=Q(amount_netted__gte=0) & Q(amount_netted__lte=F("amount")),
                name="chk_transfer_amount_netted_range",
            ),
            # Only what was sent at Stripe can be reversed there.
            models.CheckConstraint(
                condition=Q(amount_reversed__gte=0)
                & Q(amount_reversed__lte=F("amount") - F("amount_netted") - F("amount_withheld")),
                name="chk_transfer_amount_reversed_range",
            ),
            models.CheckConstraint(
                condition=Q(amount_owed__gte=0) & Q(amount_owed__lte=F("amount")),
                name="chk_transfer_amount_owed_range",
            ),
            models.CheckConstraint(
                condition=Q(amount_withheld__gte=0)
                & Q(amount_withheld__lte=F("amount") - F("amount_netted")),
                name="chk_transfer_amount_withheld_range",
            ),
            # The reserve and the netting together are never more than the seller's share; the
            # shares the reserve covers are never more than it kept.
            models.CheckConstraint(
                condition=Q(amount_reserved__gte=0)
                & Q(amount_reserved__lte=F("amount") - F("amount_netted"))
                & Q(reserve_refund__gte=0)
                & Q(reserve_dispute__gte=0)
                & Q(reserve_given_back__gte=0)
                & Q(
                    reserve_refund__lte=F("amount_reserved")
                    - F("reserve_dispute")
                    - F("reserve_given_back")
                ),
                name="chk_transfer_reserve_range",
            ),
            # What the seller owes of a released reserve is never more than it released.
            models.CheckConstraint(
                condition=Q(reserve_owed_refund__gte=0)
                & Q(reserve_owed_dispute__gte=0)
                & Q(reserve_owed_given_back__gte=0)
                & Q(reserve_owed_refund__lte=F("amount_reserved") - F("reserve_owed_dispute")),
                name="chk_transfer_reserve_owed_range",
            ),
            models.CheckConstraint(
                condition=Q(held_reason="") | Q(held_reason__in=HeldReason.values),
                name="chk_transfer_held_reason",
            ),
            models.CheckConstraint(
                condition=Q(reversal_target__gte=0) & Q(reversal_target__lte=F("amount")),
                name="chk_transfer_reversal_target_range",
            ),
            # Refunds and a chargeback together never take back more than the seller received.
            models.CheckConstraint(
                condition=Q(dispute_target__gte=0)
                & Q(dispute_target__lte=F("amount") - F("reversal_target")),
                name="chk_transfer_dispute_target_range",
            ),
            models.CheckConstraint(
                condition=Q(amount_returned__gte=0) & Q(amount_to_give_back__gte=0),
                name="chk_transfer_amounts_given_back",
            ),
            models.CheckConstraint(condition=CURRENCY_FORMAT, name="chk_transfer_currency"),
            models.CheckConstraint(
                condition=Q(end_reason="") | Q(end_reason__in=EndReason.values),
                name="chk_transfer_end_reason",
            ),
            models.CheckConstraint(
                condition=~Q(status=TransferStatus.REVERSAL_PENDING)
                | Q(next_retry_at__isnull=False),
                name="chk_reversal_pending_has_next_retry_at",
            ),
            models.UniqueConstraint(
                fields=["stripe_transfer_id"],
                condition=_not_empty("stripe_transfer_id"),
                name="uniq_transfer_stripe_transfer_id",
            ),
            models.UniqueConstraint(
                fields=["stripe_reversal_id"],
                condition=_not_empty("stripe_reversal_id"),
                name="uniq_transfer_stripe_reversal_id",
            ),
            models.UniqueConstraint(
                fields=["stripe_destination_payment_id"],
                condition=_not_empty("stripe_destination_payment_id"),
                name="uniq_transfer_destination_payment",
            ),
        ]
        indexes = [
            # The reserve sweep and the console's reserve figure: only transfers that kept a
            # reserve (few, next to the millions of settled rows).
            models.Index(
                fields=["reserve_release_at"],
                condition=Q(amount_reserved__gt=0),
                name="idx_transfer_reserve",
            ),
            # A seller's bank payout names a dispute's give-back by its Stripe transfer.
            models.Index(
                fields=["stripe_return_id"],
                condition=_not_empty("stripe_return_id"),
                name="idx_transfer_return_id",
            ),
            # The two worker queries: due rows of one status, oldest first. Partial, so their
            # size follows the backlog, not the millions of settled rows.
            models.Index(
                fields=["next_retry_at", "id"],
                condition=Q(status=TransferStatus.REVERSAL_PENDING),
                name="idx_transfer_due_reversal",
            ),
            # Failed rows, and pending rows whose sender died (their lease runs out).
            models.Index(
                fields=["next_retry_at", "id"],
                condition=Q(status__in=[TransferStatus.PENDING, TransferStatus.FAILED]),
                name="idx_transfer_due_send",
            ),
            # Held rows whose release time has come (the release sweep's query).
            models.Index(
                fields=["next_retry_at", "id"],
                condition=Q(status=TransferStatus.HELD),
                name="idx_transfer_held_release",
            ),
            # Rows Stripe reversed beyond the refunds' share (an alert; normally empty).
            models.Index(fields=["id"], condition=OVER_REVERSED, name="idx_transfer_over_reversed"),
            # The admin list, newest first, filtered by one status or one currency: an index
            # range read backwards, however rare the status or currency (docs/scale.md). Only
            # the settled statuses: the rows workers claim and move are in the due indexes
            # above, and a claim (an UPDATE of each row) then writes no entry here.
            models.Index(
                fields=["status", "id"],
                condition=Q(status__in=SETTLED_STATUSES),
                name="idx_transfer_status_id",
            ),
            models.Index(fields=["currency", "id"], name="idx_transfer_currency_id"),
            # "Needs attention" (payouts/selectors.py), newest first: the rows any of its reasons
            # can name, a few among millions. Every reason's condition must imply this one, or
            # the admin's page reads the table backwards to its first row (a test checks).
            models.Index(
                fields=["id"], condition=ATTENTION_CANDIDATES, name="idx_transfer_attention"
            ),
            # What changed since the last clean ledger_check (its incremental mode).
            models.Index(fields=["updated_at"], name="idx_transfer_updated_at"),
            # The ends a person must look at (the console's counts and "needs attention"):
            # few rows, where the whole table holds millions.
            models.Index(
                fields=["status", "updated_at"],
                condition=Q(
                    status__in=[TransferStatus.REVERSAL_REFUSED, TransferStatus.PERMANENTLY_FAILED]
                ),
                name="idx_transfer_ended",
            ),
        ]

    def __str__(self) -> str:
        return f"Transfer {self.pk} ({self.status})"

    # What moves at Stripe, in one place (``payouts.transfer.money``): every path that sends,
    # adopts, books or compares a transfer reads these, so that none can disagree with another.
    @property
    def facts(self) -> money.Facts:
        """The row's amounts as the money arithmetic reads them."""
        return money.Facts.of(self)

    @property
    def kept_back(self) -> int:
        """The refund and chargeback shares an unpaid transfer keeps back."""
        return self.facts.shares

    @property
    def withheld_at_send(self) -> int:
        """What an unpaid transfer keeps back of its shares (``money.withheld_at_send``)."""
        return money.withheld_at_send(self.facts)

    @property
    def owed_at_send(self) -> int:
        """The shares an unpaid transfer cannot keep back: debt once paid."""
        return money.owed_at_send(self.facts)

    @property
    def to_send(self) -> int:
        """The amount an unpaid transfer sends to Stripe (``money.to_send``)."""
        return money.to_send(self.facts)

    @property
    def sent(self) -> int:
        """The amount Stripe's transfer to the seller was for, once paid (``money.sent``)."""
        return money.sent(self.facts)


class SellerTransferEvent(models.Model):
    """One move of a seller transfer in its audit trail.

    Append-only audit row, one per successful transition (a database trigger refuses
    UPDATE and DELETE)."""

    transfer = models.ForeignKey(SellerTransfer, on_delete=models.PROTECT, related_name="events")
    from_status = models.CharField(max_length=32)
    to_status = models.CharField(max_length=32)
    created_at = models.DateTimeField(auto_now_add=True)
    caused_by = models.CharField(
        max_length=255,
        help_text="What made the move: worker:<task>, webhook:<event id>, staff:<username>.",
    )
    # PROTECT: the audit trail is append-only, so a staff user with history is deactivated,
    # never deleted.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT
    )
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.from_status} → {self.to_status} ({self.caused_by})"


class WebhookOutcome(models.TextChoices):
    RECEIVED = "received"
    PROCESSED = "processed"
    IGNORED = "ignored"
    FAILED = "failed"


# An inbox row in one of these is finished with: never processed again (unless replayed by
# force), and old enough ones are deleted by retention.
WEBHOOK_DONE_OUTCOMES = (WebhookOutcome.PROCESSED, WebhookOutcome.IGNORED)


class WebhookEvent(models.Model):
    """The inbox: one row per Stripe event id, whatever its type, stored before processing."""

    Outcome = WebhookOutcome

    stripe_event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=255)
    # The connected account a Connect event is about (empty for the platform's own events).
    account = models.CharField(max_length=255, blank=True, default="", db_default="")
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RECEIVED)
    error = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)

    class Meta:
        permissions = [("replay_webhookevent", "Can replay a stored Stripe event")]
        constraints = [
            models.CheckConstraint(
                condition=Q(outcome__in=WebhookOutcome.values), name="chk_webhook_outcome"
            ),
        ]
        indexes = [
            # The sweep's query: stored events not processed yet (normally none).
            models.Index(
                fields=["received_at"],
                condition=Q(outcome=WebhookOutcome.RECEIVED),
                name="idx_webhook_unprocessed",
            ),
            # Retention deletes the oldest processed events first, in small batches.
            models.Index(fields=["received_at"], name="idx_webhook_received_at"),
            # The admin list filtered by outcome (the few events a person must look at) or by
            # type, newest first.
            models.Index(
                fields=["id"],
                condition=Q(outcome__in=[WebhookOutcome.RECEIVED, WebhookOutcome.FAILED]),
                name="idx_webhook_open",
            ),
            models.Index(fields=["type", "id"], name="idx_webhook_type_id"),
        ]

    def __str__(self) -> str:
        return f"{self.stripe_event_id} ({self.type})"


class TransferCountKind(models.TextChoices):
    # Transfers that left ``from_status`` for ``status`` ('' for none: inserted, deleted).
    ROWS = "rows"
    # Audit events per (from, to): every transition made, same-state ones included.
    MOVES = "moves"


class TransferCount(models.Model):
    """The counts behind ``/metrics``, so a scrape never counts the big tables.

    Database triggers (migration ``0011_scale``) append one row per change, in the transaction
    that makes it: inserting, deleting or changing the status of seller transfers, and inserting
    audit events. Appending takes no lock that another transaction waits for, so concurrent
    workers never queue on a hot counter row nor deadlock on two of them.
    ``payouts.services.counters`` folds the rows into one per key every minute; a count is the
    sum of its rows (``payouts.selectors``). Moves are also kept per hour for the last
    ``HOURLY_FOR`` (the console's charts); older hours fold into one row per edge.
    """

    Kind = TransferCountKind

    kind = models.CharField(max_length=8, choices=Kind.choices)
    from_status = models.CharField(max_length=32, blank=True, default="")
    status = models.CharField(max_length=32)
    # The hour (UTC) the moves were made in, while it is recent; null for rows and older moves.
    hour = models.DateTimeField(null=True, blank=True)
    n = models.BigIntegerField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=TransferCountKind.values), name="chk_transfercount_kind"
            ),
            models.CheckConstraint(
                condition=Q(kind=TransferCountKind.MOVES) | Q(hour__isnull=True),
                name="chk_transfercount_hour_of_moves",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.from_status or '-'} → {self.status or '-'}: {self.n}"


class PayoutStatus(models.TextChoices):
    """Stripe's payout statuses."""

    PENDING = "pending"
    IN_TRANSIT = "in_transit"
    PAID = "paid"
    FAILED = "failed"
    CANCELED = "canceled"


class Payout(models.Model):
    """A seller's bank payout.

    Stripe paying the seller's connected account balance out to their bank, bundling our transfers
    (less reversals) with whatever else is on it."""

    Status = PayoutStatus

    seller = models.ForeignKey(Seller, on_delete=models.PROTECT, related_name="payouts")
    stripe_payout_id = models.CharField(max_length=255, unique=True)
    stripe_account_id = models.CharField(max_length=255)
    amount = models.BigIntegerField(help_text="Minor units sent to the bank.")
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=Status.choices)
    arrival_date = models.DateTimeField(null=True, blank=True)
    stripe_created = models.DateTimeField(null=True, blank=True)
    # Manual payouts cannot be listed by payout at Stripe, so they are never read.
    automatic = models.BooleanField(default=True)
    failure_code = models.CharField(max_length=255, blank=True, default="")
    failure_message = models.TextField(blank=True, default="")
    # What was last read of it at Stripe: when, in how many calls, what its lines add up to
    # (null until read), and why reading failed (empty when it did not).
    reconciled_at = models.DateTimeField(null=True, blank=True)
    reconcile_calls = models.PositiveIntegerField(default=0)
    items_total = models.BigIntegerField(null=True, blank=True)
    unmatched_count = models.PositiveIntegerField(default=0)
    reconcile_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=PayoutStatus.values), name="chk_payout_status"
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="chk_payout_amount"),
            models.CheckConstraint(condition=CURRENCY_FORMAT, name="chk_payout_currency"),
        ]
        indexes = [
            models.Index(fields=["seller", "-id"], name="idx_payout_seller"),
            # "Needs attention": the failed payouts (a handful).
            models.Index(
                fields=["id"], condition=Q(status=PayoutStatus.FAILED), name="idx_payout_failed"
            ),
        ]
        permissions = [("reconcile_payout", "Can read a payout's contents at Stripe again")]

    def __str__(self) -> str:
        return self.stripe_payout_id

    @property
    def balanced(self) -> bool | None:
        """Whether its lines add up to its amount (``None`` until read)."""
        return None if self.items_total is None else self.items_total == self.amount


class PayoutItemKind(models.TextChoices):
    TRANSFER = "transfer"  # one of our transfers to the seller (a payment on their account)
    REVERSAL = "reversal"  # one of our reversals (a payment refund on their account)
    UNMATCHED = "unmatched"  # money we did not send, or a line we cannot place


class PayoutItem(models.Model):
    """One balance transaction a payout carried.

    Tied to our transfer when it is ours. Read again as a whole (replaced) whenever the payout is
    reconciled."""

    Kind = PayoutItemKind

    payout = models.ForeignKey(Payout, on_delete=models.CASCADE, related_name="items")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    stripe_balance_transaction_id = models.CharField(max_length=255)
    stripe_type = models.CharField(max_length=64)
    stripe_source_id = models.CharField(max_length=255, blank=True, default="")
    amount = models.BigIntegerField(help_text="Signed minor units, as Stripe lists it.")
    fee = models.BigIntegerField(default=0)
    net = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    transfer = models.ForeignKey(
        SellerTransfer,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="payout_items",
    )
    order = models.ForeignKey(
        Order, null=True, blank=True, on_delete=models.PROTECT, related_name="payout_items"
    )
    note = models.TextField(blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["payout", "stripe_balance_transaction_id"], name="uniq_payout_item"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=PayoutItemKind.values), name="chk_payout_item_kind"
            ),
            models.CheckConstraint(
                condition=Q(kind=PayoutItemKind.UNMATCHED) | Q(transfer__isnull=False),
                name="chk_payout_item_matched_has_transfer",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.stripe_balance_transaction_id}"


class SellerPolicy(models.Model):
    """One seller's payout terms; a field left empty (``NULL``) means "the setting's default".

    Changed only through ``payouts.services.policies.seller_policy_set`` (audited in
    ``SellerPolicyChange``). The reserve fields are stored and checked for the rolling reserve;
    nothing reads them yet."""

    seller = models.OneToOneField(Seller, on_delete=models.PROTECT, related_name="payout_policy")
    hold = models.DurationField(null=True, blank=True, help_text="Overrides TRANSFER_HOLD.")
    reserve_bps = models.IntegerField(null=True, blank=True)
    reserve_days = models.IntegerField(null=True, blank=True)
    fee_bps = models.IntegerField(null=True, blank=True, help_text="Overrides PLATFORM_FEE_BPS.")
    debits_allowed = models.BooleanField(null=True, blank=True)
    debit_consent_at = models.DateTimeField(null=True, blank=True)
    # Staff released the seller's risk hold then: only disputes after it count again.
    risk_released_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "seller policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(reserve_bps__isnull=True)
                | Q(reserve_bps__gte=0, reserve_bps__lte=10_000),
                name="chk_policy_reserve_bps",
            ),
            models.CheckConstraint(
                condition=Q(reserve_days__isnull=True)
                | Q(reserve_days__gte=0, reserve_days__lte=180),
                name="chk_policy_reserve_days",
            ),
            models.CheckConstraint(
                condition=Q(fee_bps__isnull=True) | Q(fee_bps__gte=0, fee_bps__lte=10_000),
                name="chk_policy_fee_bps",
            ),
            # Debits without the seller's recorded consent are never allowed.
            models.CheckConstraint(
                condition=~Q(debits_allowed=True) | Q(debit_consent_at__isnull=False),
                name="chk_policy_debit_consent",
            ),
        ]

    def __str__(self) -> str:
        return f"payout policy of seller {self.seller_id}"


class SellerPolicyChange(models.Model):
    """One change of a seller's payout policy: who, when, the fields before and after."""

    seller = models.ForeignKey(Seller, on_delete=models.PROTECT, related_name="policy_changes")
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT
    )
    changed_at = models.DateTimeField(auto_now_add=True)
    # "policy" (the terms) or "risk_release" (staff ended a risk hold).
    kind = models.CharField(max_length=32, default="policy")
    before = models.JSONField(default=dict)
    after = models.JSONField(default=dict)
    reason = models.TextField(blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["seller", "changed_at"], name="policy_change_seller")]

    def __str__(self) -> str:
        return f"{self.kind} of seller {self.seller_id} at {self.changed_at:%Y-%m-%d %H:%M}"


class DebitState(models.TextChoices):
    """Where an account debit is (``state``, not ``status``: only transfers have a status)."""

    PENDING = "pending"  # due (again) at next_retry_at; Stripe may be asked
    SUCCEEDED = "succeeded"  # Stripe moved the money; the debt is reduced in the book
    REFUSED = "refused"  # Stripe refused it (balance, no consent): recorded, never retried
    FAILED = "failed"  # Stripe could not be reached after every retry


class AccountDebit(models.Model):
    """One debit of a seller's connected account towards their debt (Stripe's account debit).

    The amount is fixed when the row is made (never more than the debt then); the idempotency
    key is the row's own, so every attempt of this row is one Stripe transfer at most."""

    State = DebitState

    seller = models.ForeignKey(Seller, on_delete=models.PROTECT, related_name="account_debits")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    idempotency_key = models.CharField(max_length=255, unique=True)
    # When a worker first claimed the row under its key (then perhaps called Stripe with it):
    # a day later Stripe may have forgotten the key, so the next attempt reads Stripe first.
    key_first_sent_at = models.DateTimeField(null=True, blank=True)
    # An answer may have hidden a debit (a 5xx): the next attempt reads Stripe before sending.
    read_stripe_first = models.BooleanField(default=False)
    stripe_transfer_id = models.CharField(max_length=255, blank=True, default="")
    retry_count = models.PositiveIntegerField(default=0)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    error_message = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="chk_debit_amount"),
            models.CheckConstraint(
                condition=Q(state__in=DebitState.values), name="chk_debit_state"
            ),
            models.CheckConstraint(condition=CURRENCY_FORMAT, name="chk_debit_currency"),
            # One debit in flight per seller and currency: two sweeps never debit twice.
            models.UniqueConstraint(
                fields=["seller", "currency"],
                condition=Q(state="pending"),
                name="uniq_debit_pending_per_seller",
            ),
        ]
        indexes = [models.Index(fields=["state", "next_retry_at"], name="debit_due")]

    def __str__(self) -> str:
        return f"debit {self.pk} of seller {self.seller_id}: {self.amount} {self.currency}"


class ReleaseState(models.TextChoices):
    """Where a reserve release is (``state``, not ``status``: only transfers have a status)."""

    PENDING = "pending"  # due (again) at next_retry_at; Stripe may be asked
    SENT = "sent"  # Stripe holds the transfer; the reserve account is debited in the book
    FAILED = "failed"  # Stripe refused it, or could not be reached after every retry


class ReserveRelease(models.Model):
    """One transfer of a seller's released reserve: one per seller, currency and release day.

    Made by the reserve sweep with every transfer whose reserve days have passed (their
    ``reserve_release``); the amount is fixed then, and the idempotency key is the row's own
    and deterministic (seller, currency, day), so two sweeps make one row and Stripe one
    transfer. A *give-back* (``given_back_for`` set) sends what one released reserve covered
    and gave back since (its key names the transfer and its ``reserve_given_back`` total), made
    in the transaction that gave it back; it is not one of the day's releases."""

    State = ReleaseState

    seller = models.ForeignKey(Seller, on_delete=models.PROTECT, related_name="reserve_releases")
    currency = models.CharField(max_length=3)
    release_on = models.DateField()
    amount = models.BigIntegerField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    idempotency_key = models.CharField(max_length=255, unique=True)
    # When a worker first claimed the row under its key (then perhaps called Stripe with it).
    key_first_sent_at = models.DateTimeField(null=True, blank=True)
    # An attempt's answer was lost (a 5xx, a timeout): Stripe is read before the next one.
    read_stripe_first = models.BooleanField(default=False)
    stripe_transfer_id = models.CharField(max_length=255, blank=True, default="")
    retry_count = models.PositiveIntegerField(default=0)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    error_message = models.TextField(blank=True, default="")
    given_back_for = models.ForeignKey(
        SellerTransfer,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="reserve_give_backs",
    )
    # The last staff re-send of a release that gave up: who, when and why.
    resent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resent_at = models.DateTimeField(null=True, blank=True)
    resend_reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        permissions = [("resend_reserverelease", "Can send a reserve release that gave up again")]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="chk_release_amount"),
            models.CheckConstraint(
                condition=Q(state__in=ReleaseState.values), name="chk_release_state"
            ),
            models.CheckConstraint(condition=CURRENCY_FORMAT, name="chk_release_currency"),
            models.UniqueConstraint(
                fields=["seller", "currency", "release_on"],
                condition=Q(given_back_for__isnull=True),
                name="uniq_release_seller_day",
            ),
        ]
        indexes = [models.Index(fields=["state", "next_retry_at"], name="release_due")]

    def __str__(self) -> str:
        return f"reserve release {self.pk} of seller {self.seller_id}: {self.amount}"
