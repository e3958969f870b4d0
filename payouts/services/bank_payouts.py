"""Sellers' bank payouts and the transfers and reversals each deposit carried.

What Stripe paid out of each seller's connected account, and what each deposit carried.

A ``payout.*`` event (Connect endpoint) records the payout's latest state. Once it is ``paid``
(or when staff ask), its balance transactions are read at Stripe as the seller's account, page
by page (``GET /v1/balance_transactions?payout=po_…``, 100 lines a call, each call through the
shared rate budget: a payout of 250 transfers costs 3 calls, never one per transfer), and each
line is tied to what made it:

- a ``payment`` is one of our transfers when its ``py_…`` is the destination payment we
  recorded when we sent it, or when the transfer Stripe names behind it is ours (a transfer
  sent before we recorded destination payments, a dispute's give-back);
- a ``payment_refund`` is one of our reversals when the payment it takes back is ours;
- anything else (money we did not send, an adjustment, a line we cannot place) is kept as
  ``unmatched``, with why: listed, never dropped.

The lines add up to the payout's amount (the payout's own line, its negative, is not an item):
``items_total`` says so, or shows the difference. Reading is claim-free (it only reads Stripe
and replaces derived rows), with no transaction open while Stripe answers; the rows are
replaced in one short transaction with the payout locked, so two reads at once leave one set.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from django.db import transaction
from django.utils import timezone

from config.errors import Conflict, NotFound, StripeRefused
from marketplace.models import Seller
from payouts.models import Payout, PayoutItem, PayoutItemKind, PayoutStatus, SellerTransfer
from payouts.stripe_api.gateway import (
    GatewayError,
    StripeAccountBalanceLine,
    StripeGateway,
    StripePayout,
    get_gateway,
)

logger = logging.getLogger(__name__)

# Stripe pages hold at most 100 objects.
PAGE_SIZE = 100
# A payout's statuses in the order they can follow one another: an event carrying an earlier
# status than the one recorded arrived late (Stripe does not order deliveries) and changes
# nothing. Paid can still fail (the bank returns it days later); failed and canceled are ends.
_PROGRESS = {
    PayoutStatus.PENDING: 0,
    PayoutStatus.IN_TRANSIT: 1,
    PayoutStatus.PAID: 2,
    PayoutStatus.FAILED: 3,
    PayoutStatus.CANCELED: 3,
}


class PayoutEventOutcome(StrEnum):
    RECORDED = "recorded"
    LATE = "late"  # an earlier state than the one recorded: nothing changed


@dataclass(frozen=True, slots=True)
class PayoutEventResult:
    outcome: PayoutEventOutcome
    payout: Payout


class UnknownPayout(NotFound):
    code = "unknown_payout"


class PayoutNotListable(Conflict):
    """A manual payout: Stripe lists the contents of automatic payouts only."""

    code = "payout_not_listable"


class PayoutReadRefused(StripeRefused):
    """Stripe did not list the payout's contents; recorded on the payout."""

    code = "payout_read_failed"


def _moment(unix: int | None) -> datetime | None:
    return datetime.fromtimestamp(unix, tz=UTC) if unix else None


def payout_record(*, seller: Seller, account_id: str, payout: StripePayout) -> PayoutEventResult:
    """Record what a ``payout.*`` event says of a seller's payout.

    ``account_id``: the connected account it came from. A payout that has just been paid is read at
    Stripe after commit."""
    fields = {
        "seller": seller,
        "stripe_account_id": account_id,
        "amount": payout.amount,
        "currency": payout.currency,
        "status": payout.status,
        "arrival_date": _moment(payout.arrival_date),
        "stripe_created": _moment(payout.created),
        "automatic": payout.automatic,
        "failure_code": payout.failure_code,
        "failure_message": payout.failure_message,
    }
    with transaction.atomic():
        Payout.objects.bulk_create(
            [Payout(stripe_payout_id=payout.id, **fields)], ignore_conflicts=True
        )
        row = Payout.objects.select_for_update().get(stripe_payout_id=payout.id)
        if _PROGRESS.get(payout.status, 0) < _PROGRESS.get(row.status, 0):
            return PayoutEventResult(PayoutEventOutcome.LATE, row)
        for name, value in fields.items():
            setattr(row, name, value)
        row.save()
        if row.status == PayoutStatus.PAID and row.automatic and row.reconciled_at is None:
            _reconcile_after_commit(row.pk)
    if row.status == PayoutStatus.FAILED:
        logger.warning(
            "seller payout failed",
            extra={
                "seller_id": seller.pk,
                "stripe_payout_id": payout.id,
                "failure_code": payout.failure_code,
            },
        )
    return PayoutEventResult(PayoutEventOutcome.RECORDED, row)


def _reconcile_after_commit(payout_id: int) -> None:
    # Imported here: the wake-ups look the tasks up, and the tasks import this module.
    from payouts.wakeups import payout_paid_after_commit

    payout_paid_after_commit(payout_id=payout_id)


class ReconcileOutcome(StrEnum):
    RECONCILED = "reconciled"
    NOT_LISTABLE = "not_listable"  # a manual payout: Stripe cannot list what it carried
    STRIPE_ERROR = "stripe_error"


@dataclass(frozen=True, slots=True)
class PayoutReconciliation:
    payout: Payout
    outcome: ReconcileOutcome
    calls: int  # Stripe calls made (pages read)
    lines: int
    matched: int
    unmatched: int

    def summary(self) -> dict[str, int | str]:
        return {
            "outcome": self.outcome,
            "calls": self.calls,
            "lines": self.lines,
            "matched": self.matched,
            "unmatched": self.unmatched,
        }


def payout_reconcile(
    *, payout_id: int, gateway: StripeGateway | None = None
) -> PayoutReconciliation:
    """Read the payout's lines at Stripe and tie them to our transfers and reversals.

    It replaces what an earlier read recorded. Raises ``UnknownPayout``."""
    payout = Payout.objects.filter(pk=payout_id).first()
    if payout is None:
        raise UnknownPayout(f"No payout {payout_id}.")
    if not payout.automatic:
        _record_error(payout, "a manual payout: Stripe cannot list what it carried", calls=0)
        return PayoutReconciliation(payout, ReconcileOutcome.NOT_LISTABLE, 0, 0, 0, 0)
    gateway = gateway or get_gateway()
    lines: list[StripeAccountBalanceLine] = []
    calls = 0
    starting_after = None
    try:
        while True:
            calls += 1
            page = gateway.payout_balance_page(
                account_id=payout.stripe_account_id,
                payout_id=payout.stripe_payout_id,
                starting_after=starting_after,
                limit=PAGE_SIZE,
            )
            lines.extend(page.lines)
            if not page.has_more or not page.lines:
                break
            starting_after = page.lines[-1].id
    except GatewayError as error:
        _record_error(payout, error.describe(), calls=calls)
        return PayoutReconciliation(payout, ReconcileOutcome.STRIPE_ERROR, calls, len(lines), 0, 0)
    items = _place(payout, lines)
    _record_items(payout, items, calls=calls)
    matched = sum(1 for item in items if item.kind != PayoutItemKind.UNMATCHED)
    logger.info(
        "seller payout reconciled",
        extra={
            "stripe_payout_id": payout.stripe_payout_id,
            "calls": calls,
            "lines": len(lines),
            "unmatched": len(items) - matched,
            "balanced": payout.balanced,
        },
    )
    return PayoutReconciliation(
        payout, ReconcileOutcome.RECONCILED, calls, len(lines), matched, len(items) - matched
    )


def payout_reconcile_by_staff(*, payout: Payout) -> PayoutReconciliation:
    """Staff ask to read the payout again: a Stripe error is a 502 with what Stripe said."""
    result = payout_reconcile(payout_id=payout.pk)
    if result.outcome == ReconcileOutcome.NOT_LISTABLE:
        raise PayoutNotListable(result.payout.reconcile_error)
    if result.outcome == ReconcileOutcome.STRIPE_ERROR:
        raise PayoutReadRefused(result.payout.reconcile_error)
    return result


def payouts_reconcile_unread(*, limit: int = 100) -> dict[str, int]:
    """Read the paid automatic payouts that were never read.

    The sweep, for payouts whose wake-up was lost. Counts per outcome."""
    unread = Payout.objects.filter(
        status=PayoutStatus.PAID, automatic=True, reconciled_at__isnull=True
    ).order_by("pk")
    counts: dict[str, int] = {}
    for payout_id in unread.values_list("pk", flat=True)[:limit]:
        outcome = payout_reconcile(payout_id=payout_id).outcome
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def _place(payout: Payout, lines: list[StripeAccountBalanceLine]) -> list[PayoutItem]:
    """Each line as an item, tied to our transfer when it is ours."""
    payments = {line.source for line in lines if line.type == "payment" and line.source}
    refunded = {line.source_payment for line in lines if line.source_payment}
    named = {line.source_transfer for line in lines if line.source_transfer}
    by_payment = _transfers_by("stripe_destination_payment_id", payments | refunded)
    by_transfer = _transfers_by("stripe_transfer_id", named)
    # A dispute's give-back is a transfer of its own, recorded as the row's latest return.
    by_transfer.update(_transfers_by("stripe_return_id", named - set(by_transfer)))
    # A payment found through the transfer behind it also places the reversals of that payment.
    for line in lines:
        row = by_transfer.get(line.source_transfer)
        if line.type == "payment" and row is not None:
            by_payment.setdefault(line.source, row)
    _learn_destination_payments(lines, by_transfer)

    items = []
    for line in lines:
        if line.type == "payout" and line.source == payout.stripe_payout_id:
            continue  # the payout itself, the negative of what the other lines add up to
        kind, row, note = _classify(payout, line, by_payment)
        items.append(
            PayoutItem(
                payout=payout,
                kind=kind,
                stripe_balance_transaction_id=line.id,
                stripe_type=line.type,
                stripe_source_id=line.source,
                amount=line.amount,
                fee=line.fee,
                net=line.net,
                currency=line.currency,
                transfer=row,
                order_id=row.order_id if row else None,
                note=note,
            )
        )
    return items


def _transfers_by(field: str, ids: set[str]) -> dict[str, SellerTransfer]:
    """Our transfers whose ``field`` is one of ``ids``.

    A page's worth per query. The ``<> ''`` condition is the one of the field's partial index, so
    the index serves it."""
    ordered = sorted(ids)
    found: dict[str, SellerTransfer] = {}
    for start in range(0, len(ordered), PAGE_SIZE):
        chunk = ordered[start : start + PAGE_SIZE]
        rows = SellerTransfer.objects.filter(**{f"{field}__in": chunk}).exclude(**{field: ""})
        found.update((getattr(row, field), row) for row in rows)
    return found


def _classify(
    payout: Payout, line: StripeAccountBalanceLine, by_payment: dict[str, SellerTransfer]
) -> tuple[str, SellerTransfer | None, str]:
    if line.type == "payment":
        row = by_payment.get(line.source)
        if row is None:
            behind = f" (transfer {line.source_transfer})" if line.source_transfer else ""
            return PayoutItemKind.UNMATCHED, None, f"money we did not send{behind}"
        if row.seller_id != payout.seller_id:
            return PayoutItemKind.UNMATCHED, None, f"our transfer {row.pk} to another seller"
        return PayoutItemKind.TRANSFER, row, ""
    if line.type == "payment_refund":
        row = by_payment.get(line.source_payment)
        if row is None or row.seller_id != payout.seller_id:
            return (
                PayoutItemKind.UNMATCHED,
                None,
                f"takes back payment {line.source_payment or '?'}, not one of our transfers",
            )
        return PayoutItemKind.REVERSAL, row, ""
    if line.type in ("payout_failure", "payout_cancel"):
        return PayoutItemKind.UNMATCHED, None, f"money back from payout {line.source}"
    what = line.description or line.type
    return PayoutItemKind.UNMATCHED, None, f"a {line.type} line we cannot place: {what}"


def _learn_destination_payments(
    lines: list[StripeAccountBalanceLine], by_transfer: dict[str, SellerTransfer]
) -> None:
    """Record the destination payments of older transfers seen in a payout.

    Those transfers were sent before we kept their destination payment; once it is recorded, their
    later reversals can be placed in later payouts. A transfer's own payment only (not a give-back,
    whose payment is another)."""
    for line in lines:
        row = by_transfer.get(line.source_transfer)
        if (
            line.type == "payment"
            and row is not None
            and not row.stripe_destination_payment_id
            and row.stripe_transfer_id == line.source_transfer
        ):
            SellerTransfer.objects.filter(pk=row.pk, stripe_destination_payment_id="").update(
                stripe_destination_payment_id=line.source
            )


def _record_items(payout: Payout, items: list[PayoutItem], *, calls: int) -> None:
    with transaction.atomic():
        Payout.objects.select_for_update().filter(pk=payout.pk).first()
        PayoutItem.objects.filter(payout=payout).delete()
        PayoutItem.objects.bulk_create(items)
        payout.items_total = sum(item.net for item in items)
        payout.unmatched_count = sum(1 for item in items if item.kind == PayoutItemKind.UNMATCHED)
        payout.reconciled_at = timezone.now()
        payout.reconcile_calls = calls
        payout.reconcile_error = ""
        payout.save(
            update_fields=[
                "items_total",
                "unmatched_count",
                "reconciled_at",
                "reconcile_calls",
                "reconcile_error",
                "updated_at",
            ]
        )
    if not payout.balanced:
        logger.warning(
            "seller payout lines do not add up to its amount",
            extra={
                "stripe_payout_id": payout.stripe_payout_id,
                "amount": payout.amount,
                "items_total": payout.items_total,
            },
        )


def _record_error(payout: Payout, message: str, *, calls: int) -> None:
    payout.reconcile_error = message
    payout.reconcile_calls = calls
    payout.save(update_fields=["reconcile_error", "reconcile_calls", "updated_at"])
    logger.warning(
        "seller payout not read",
        extra={"stripe_payout_id": payout.stripe_payout_id, "error": message},
    )
