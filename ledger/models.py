"""The book: every money movement as one balanced, append-only journal entry.

Integer minor units, per currency. An entry's lines sum to zero in each currency, which the
database enforces when the transaction commits (a deferred constraint trigger); lines and
entries refuse ``UPDATE`` and ``DELETE``; an entry is unique per (kind, external id), so posting
the same event again posts nothing. Signs: a debit is positive, a credit negative.

Accounts, from the platform's side:

- ``platform_cash``: the platform's balance at Stripe.
- ``fee_revenue``: the platform's fee on each seller's gross.
- ``buyer_refunds``: money returned to buyers, less the sellers' shares taken back.
- ``disputes``: money Stripe took for chargebacks, less what sellers gave back.
- ``bad_debt``: seller debt written off.
- ``seller_payable`` (one per seller): what the platform owes the seller. A credit balance is owed
  to the seller; a debit balance is a refund share the seller still has to give back.
- ``seller_reserve`` (one per seller): the rolling reserve kept back from the seller's
  transfers (a credit balance, owed to the seller): taken by refunds and chargebacks first,
  sent to the seller when its days pass.
- ``seller_debt`` (one per seller): what the seller owes after a reversal Stripe refused for the
  seller's balance; recovered by netting it from the seller's next transfers, or written off.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from marketplace.models import CURRENCY_FORMAT, Order, Seller


class AccountKind(models.TextChoices):
    PLATFORM_CASH = "platform_cash"
    FEE_REVENUE = "fee_revenue"
    BUYER_REFUNDS = "buyer_refunds"
    DISPUTES = "disputes"
    BAD_DEBT = "bad_debt"
    SELLER_PAYABLE = "seller_payable"
    SELLER_DEBT = "seller_debt"
    SELLER_RESERVE = "seller_reserve"


SELLER_KINDS = (AccountKind.SELLER_PAYABLE, AccountKind.SELLER_DEBT, AccountKind.SELLER_RESERVE)


class Account(models.Model):
    Kind = AccountKind

    kind = models.CharField(max_length=32, choices=Kind.choices)
    seller = models.ForeignKey(Seller, null=True, blank=True, on_delete=models.PROTECT)

    class Meta:
        permissions = [("write_off_debt", "Can write off a seller's debt")]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "seller"], nulls_distinct=False, name="uniq_account_kind_seller"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=AccountKind.values), name="chk_account_kind"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=SELLER_KINDS, seller__isnull=False)
                | (~Q(kind__in=SELLER_KINDS) & Q(seller__isnull=True)),
                name="chk_account_seller_iff_seller_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.seller_id}" if self.seller_id else self.kind


class EntryKind(models.TextChoices):
    PAYMENT = "payment"  # buyer paid: cash in, each seller's share payable, the fee earned
    TRANSFER = "transfer"  # a seller paid at Stripe
    DEBT_NETTED = "debt_netted"  # part of a seller's payment kept to settle their debt
    NETTING_RELEASED = "netting_released"  # that netting undone (the payment was cancelled)
    TRANSFER_CANCELLED = "transfer_cancelled"  # order refunded before the seller was paid
    REFUND = "refund"  # money back to the buyer
    REFUND_FAILED = "refund_failed"  # that refund failed after succeeding: the money came back
    REFUND_SHARE = "refund_share"  # a seller's share of a refund, to take back
    REVERSAL = "reversal"  # a share taken back at Stripe
    REVERSAL_REFUSED = "reversal_refused"  # Stripe refused it for the seller's balance: debt
    DEBT_WRITTEN_OFF = "debt_written_off"  # staff gave up a debt, with a reason
    DISPUTE_FUNDS = "dispute_funds"  # Stripe withdrew (or reinstated) a chargeback's funds
    DISPUTE_SHARE = "dispute_share"  # a seller's share of a chargeback, recovered or given back
    DEBT_CANCELLED = "debt_cancelled"  # a debt given back instead of money (dispute won, say)
    # A written-off debt the seller no longer owes (their shares fell): back from bad debt.
    WRITE_OFF_REVERSED = "write_off_reversed"
    # Taken from the seller's connected account (an account debit) to settle their debt.
    DEBT_DEBITED = "debt_debited"
    # The rolling reserve: kept back from a seller's share at payment, its part of a refund or
    # chargeback taken from it, and what is left sent to the seller when its days pass.
    RESERVE_KEPT = "reserve_kept"
    RESERVE_SHARE = "reserve_share"
    RESERVE_RELEASED = "reserve_released"
    # Once released, what the reserve and the transfer together can no longer cover of a
    # seller's shares: the part of the released reserve they owe, as debt (or, owed no more,
    # that debt cancelled, and what of it they had paid owed to them again through the reserve).
    RESERVE_OWED = "reserve_owed"


class Entry(models.Model):
    Kind = EntryKind

    kind = models.CharField(max_length=32, choices=Kind.choices)
    # What made the entry, unique per kind: a Stripe id, or our row id with a level.
    external_id = models.CharField(max_length=255)
    posted_at = models.DateTimeField(auto_now_add=True)
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.PROTECT)
    seller = models.ForeignKey(Seller, null=True, blank=True, on_delete=models.PROTECT)
    # The seller transfer it concerns (payouts.SellerTransfer; the book does not depend on it).
    transfer_id = models.BigIntegerField(null=True, blank=True)
    stripe_id = models.CharField(max_length=255, blank=True, default="")
    memo = models.TextField(blank=True, default="")
    posted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT
    )

    class Meta:
        verbose_name_plural = "entries"
        constraints = [
            models.UniqueConstraint(fields=["kind", "external_id"], name="uniq_entry_kind_source"),
            models.CheckConstraint(condition=Q(kind__in=EntryKind.values), name="chk_entry_kind"),
        ]
        indexes = [
            models.Index(fields=["transfer_id"], name="idx_entry_transfer"),
            models.Index(fields=["seller", "posted_at"], name="idx_entry_seller_posted"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.external_id}"


class Line(models.Model):
    entry = models.ForeignKey(Entry, on_delete=models.PROTECT, related_name="lines")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="lines")
    currency = models.CharField(max_length=3)
    amount = models.BigIntegerField(help_text="Minor units; debit positive, credit negative.")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="chk_line_amount_not_zero"),
            models.CheckConstraint(condition=CURRENCY_FORMAT, name="chk_line_currency"),
        ]
        indexes = [models.Index(fields=["account", "currency"], name="idx_line_account_currency")]

    def __str__(self) -> str:
        return f"{self.account} {self.amount} {self.currency}"


class BreakKind(models.TextChoices):
    UNBALANCED_ENTRY = "unbalanced_entry"
    SELLER_PAYABLE = "seller_payable"
    SELLER_DEBT = "seller_debt"
    # A seller's reserve account against the reserves their transfers keep.
    SELLER_RESERVE = "seller_reserve"
    TRANSFER_BOOK = "transfer_book"
    TRANSFER_STRIPE = "transfer_stripe"
    # The platform's cash for an order in the book against Stripe's balance transactions.
    PLATFORM_CASH = "platform_cash"
    # Money a seller is owed, or owes, that nothing will ever move as things stand.
    TRANSFER_STRANDED = "transfer_stranded"
    # Money sent back to a seller against a debt they never paid (written off, or still owed).
    GIVEN_BACK_UNCOLLECTED = "given_back_uncollected"


class CheckRun(models.Model):
    """One run of ``manage.py ledger_check``."""

    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    transfers_checked = models.PositiveIntegerField(default=0)
    breaks_found = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"check {self.pk} ({self.breaks_found} breaks)"


class Break(models.Model):
    """A difference found by the ledger check.

    A difference the check found: between the book and itself, the transfer rows, or
    Stripe."""

    Kind = BreakKind

    run = models.ForeignKey(CheckRun, on_delete=models.CASCADE, related_name="breaks")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    seller = models.ForeignKey(Seller, null=True, blank=True, on_delete=models.PROTECT)
    transfer_id = models.BigIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True, default="")
    detail = models.TextField()

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"
