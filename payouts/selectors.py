"""Reads for operations: what the admin's "needs attention" filter and the metrics show.

Services do writes; these only read. The due-row counts use the same predicates as the workers
(``status = … AND next_retry_at <= now``), so they are served by the workers' partial indexes
and stay cheap however many settled rows the table holds.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Min, Q, QuerySet, Sum

from ledger.models import CheckRun
from marketplace.models import Dispute, DisputeStatus
from marketplace.selectors import order_settled_total, order_total
from payouts.models import OVER_REVERSED, SellerTransfer, SellerTransferEvent
from payouts.transitions import TransferStatus

# A refund's reversals normally finish within a few beat ticks; a row still waiting after this
# long is stuck behind Stripe errors (or no worker is running) and a person should look.
STALE_REVERSAL_AFTER = timedelta(minutes=30)

ATTENTION_PERMANENTLY_FAILED = "permanently_failed"
ATTENTION_STALE_REVERSAL = "stale_reversal"


def _permanently_failed() -> Q:
    return Q(status=TransferStatus.PERMANENTLY_FAILED)


def _stale_reversal(now: datetime) -> Q:
    return Q(status=TransferStatus.REVERSAL_PENDING, updated_at__lt=now - STALE_REVERSAL_AFTER)


def transfers_needing_attention(
    *, now: datetime, reason: str | None = None, queryset: QuerySet | None = None
) -> QuerySet:
    """Transfers a person must look at: ``permanently_failed`` ones, and ``reversal_pending``
    ones not updated for ``STALE_REVERSAL_AFTER``. ``reason`` narrows to one of the two."""
    queryset = SellerTransfer.objects.all() if queryset is None else queryset
    conditions = {
        ATTENTION_PERMANENTLY_FAILED: _permanently_failed(),
        ATTENTION_STALE_REVERSAL: _stale_reversal(now),
    }
    if reason is None:
        return queryset.filter(_permanently_failed() | _stale_reversal(now))
    if reason not in conditions:
        raise ValueError(f"unknown attention reason {reason!r}")
    return queryset.filter(conditions[reason])


def transfer_counts_by_status() -> dict[str, int]:
    """Rows per status, every known status present (zero when none)."""
    counts = dict.fromkeys(TransferStatus.values, 0)
    rows = SellerTransfer.objects.values_list("status").annotate(n=Count("id")).order_by()
    counts.update(dict(rows))
    return counts


def transition_counts() -> dict[tuple[str, str], int]:
    """Audit events per (from, to): every successful transition ever made, same-state
    retries included. The events are append-only, so each count only grows."""
    rows = (
        SellerTransferEvent.objects.values_list("from_status", "to_status")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {(from_status, to_status): n for from_status, to_status, n in rows}


def due_transfer_counts(*, now: datetime) -> dict[str, int]:
    """Rows the workers would take now: due ``reversal_pending`` and due ``failed``."""
    return {
        status: SellerTransfer.objects.filter(status=status, next_retry_at__lte=now).count()
        for status in (TransferStatus.REVERSAL_PENDING, TransferStatus.FAILED)
    }


def over_reversed_count() -> int:
    """Transfers Stripe reversed beyond their share of the refunds (served by a partial
    index, normally empty)."""
    # The condition is the partial index's, which keeps this count cheap.
    return SellerTransfer.objects.filter(OVER_REVERSED).count()


def ledger_breaks_last_run() -> int:
    """Breaks the latest ``ledger_check`` found (0 before any run)."""
    latest = CheckRun.objects.exclude(finished_at=None).order_by("-pk").first()
    return latest.breaks_found if latest else 0


def oldest_due_reversal_age(*, now: datetime) -> timedelta:
    """How long the longest-waiting due ``reversal_pending`` row has been due (zero if none)."""
    oldest = SellerTransfer.objects.filter(
        status=TransferStatus.REVERSAL_PENDING, next_retry_at__lte=now
    ).aggregate(oldest=Min("next_retry_at"))["oldest"]
    return max(now - oldest, timedelta(0)) if oldest else timedelta(0)


def dispute_recovery_amount(*, order) -> int:
    """How much of the order's chargeback is recovered from its sellers now, by the policy
    (``DISPUTE_RECOVERY``): ``on_open`` while Stripe holds the funds (withdrawn, not reinstated,
    not won), ``on_loss`` only once lost. With ``DISPUTE_FEE_BORNE_BY=sellers``, Stripe's fee is
    recovered with the amount. Inquiries move no money and recover nothing.

    In the order's settlement currency: what Stripe withdrew from the platform's balance for
    the dispute, or (not withdrawn yet) the disputed amount at the payment's own rate."""
    config = settings.PAYOUTS
    recovered = 0
    for dispute in Dispute.objects.filter(order=order):
        if config.dispute_recovery == "on_loss":
            recovering = dispute.status == DisputeStatus.LOST
        else:
            recovering = (
                dispute.funds_withdrawn
                and not dispute.funds_reinstated
                and dispute.status not in (DisputeStatus.WON, DisputeStatus.WARNING_CLOSED)
            )
        if recovering:
            fee = dispute.fee if config.dispute_fee_borne_by == "sellers" else 0
            recovered += _dispute_settled(dispute, order) + fee
    return recovered


def _dispute_settled(dispute, order) -> int:
    if dispute.settlement_amount is not None:
        return dispute.settlement_amount
    total = order_total(order=order)
    if not total:
        return 0
    settled = order_settled_total(order=order)
    return (2 * dispute.amount * settled + total) // (2 * total)  # half up


def open_disputes_by_currency() -> dict[str, tuple[int, int]]:
    """``{currency: (open disputes, amount at risk)}``: disputes not closed yet."""
    rows = (
        Dispute.objects.exclude(
            status__in=[DisputeStatus.WON, DisputeStatus.LOST, DisputeStatus.WARNING_CLOSED]
        )
        .values_list("currency")
        .annotate(count=Count("id"), at_risk=Sum("amount"))
        .order_by()
    )
    return {currency: (count, at_risk) for currency, count, at_risk in rows}
