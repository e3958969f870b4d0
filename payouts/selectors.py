"""Read-only queries behind the admin, the console and the metrics.

Reads for operations: what the admin's "needs attention" filter, the console and the metrics
show.

Services do writes; these only read. Nothing here counts the big tables: rows per status and
transitions come from the trigger-kept counters (``TransferCount``), and the due-row counts use
the same predicates as the workers (``status = … AND next_retry_at <= now``), so they are served
by the workers' partial indexes and stay cheap however many settled rows the table holds. The
``…_recount`` functions read every row, for tests and for checking the counters by hand.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.db import connections, router
from django.db.models import Case, CharField, Count, F, Min, Q, QuerySet, Sum, Value, When, Window
from django.db.models.functions import Coalesce

from ledger.models import CheckRun
from ledger.selectors import StatementLine
from marketplace.models import Dispute, DisputeStatus, Refund, Seller
from marketplace.selectors import order_settled_total, order_total
from payouts.models import (
    OVER_REVERSED,
    Payout,
    PayoutItem,
    PayoutItemKind,
    PayoutStatus,
    ReleaseState,
    ReserveRelease,
    SellerTransfer,
    SellerTransferEvent,
    TransferCount,
    TransferCountKind,
    WebhookEvent,
    WebhookOutcome,
)
from payouts.transfer.transitions import EndReason, HeldReason, TransferStatus

# A refund's reversals normally finish within a few beat ticks; a row still waiting after this
# long is stuck behind Stripe errors (or no worker is running) and a person should look.
STALE_REVERSAL_AFTER = timedelta(minutes=30)

# A seller is normally paid within a second of the payment. One still unpaid this long after
# their row was due (pending: no worker took it) or made (failed: Stripe keeps refusing) is
# waiting on something a person has to fix.
UNPAID_AFTER = timedelta(minutes=30)
# A reversal whose last attempts all failed (Stripe 5xx, or no answer) is still retried with
# backoff, but after this many in a row a person should know Stripe is failing it.
FAILING_AFTER_ATTEMPTS = 3


class Attention(StrEnum):
    """The reasons a transfer needs a person.

    Why a transfer needs a person: its seller is not paid, or its reversal is not done,
    beyond what the workers normally take. ``docs/console.md`` says what to do with each."""

    FAILING_NOW = "failing_now"
    UNPAID_PENDING = "unpaid_pending"
    UNPAID_FAILED = "unpaid_failed"
    HELD_ACCOUNT = "held_account"
    FAILING_REVERSAL = "failing_reversal"
    STALE_REVERSAL = "stale_reversal"
    REVERSAL_REFUSED = "reversal_refused"
    GAVE_UP_UNPAID = "gave_up_unpaid"
    GAVE_UP_REVERSAL = "gave_up_reversal"
    PERMANENTLY_FAILED = "permanently_failed"


def attention_conditions(*, now: datetime) -> dict[Attention, Q]:
    """The predicate of each attention reason.

    Each reason's predicate, in the order a row is labelled when several apply. Each one
    names its status, so it is served by that status's partial index."""
    account_held = Q(
        status=TransferStatus.HELD,
        held_reason__in=[HeldReason.ACCOUNT_RESTRICTED, HeldReason.ACCOUNT_DEAUTHORIZED],
    )
    gave_up = Q(status=TransferStatus.PERMANENTLY_FAILED, end_reason=EndReason.RETRIES_EXHAUSTED)
    return {
        # From the first failure, before the thresholds below call it stuck: a seller Stripe
        # refused a minute ago, a reversal whose last attempt failed, an account that just
        # stopped receiving. Each row leaves this group for a "stuck" one once it passes its
        # threshold, so the two never count a row twice.
        Attention.FAILING_NOW: Q(status=TransferStatus.FAILED, created_at__gte=now - UNPAID_AFTER)
        | Q(
            status=TransferStatus.REVERSAL_PENDING,
            retry_count__gte=1,
            retry_count__lt=FAILING_AFTER_ATTEMPTS,
            updated_at__gte=now - STALE_REVERSAL_AFTER,
        )
        | (account_held & Q(updated_at__gte=now - UNPAID_AFTER)),
        Attention.UNPAID_PENDING: Q(
            status=TransferStatus.PENDING, next_retry_at__lt=now - UNPAID_AFTER
        ),
        Attention.UNPAID_FAILED: Q(status=TransferStatus.FAILED, created_at__lt=now - UNPAID_AFTER),
        # Held on purpose for the order's hold is fine; held because the seller's account
        # cannot receive waits on the seller, who may not know.
        Attention.HELD_ACCOUNT: account_held & Q(updated_at__lt=now - UNPAID_AFTER),
        Attention.FAILING_REVERSAL: Q(
            status=TransferStatus.REVERSAL_PENDING, retry_count__gte=FAILING_AFTER_ATTEMPTS
        ),
        Attention.STALE_REVERSAL: Q(
            status=TransferStatus.REVERSAL_PENDING, updated_at__lt=now - STALE_REVERSAL_AFTER
        ),
        Attention.REVERSAL_REFUSED: Q(status=TransferStatus.REVERSAL_REFUSED),
        # Gave up after its retries: re-queued by staff once the cause is fixed, never paid or
        # reversed by hand as well (the re-queued worker would do it a second time). A row that
        # gave up paying has no Stripe transfer; one that gave up reversing has one.
        Attention.GAVE_UP_UNPAID: gave_up & Q(stripe_transfer_id=""),
        Attention.GAVE_UP_REVERSAL: gave_up & ~Q(stripe_transfer_id=""),
        # Ended for a final reason, to be handled by hand. A transfer cancelled because its
        # order was refunded before payment owes nothing to anyone: it ended as it should.
        Attention.PERMANENTLY_FAILED: Q(status=TransferStatus.PERMANENTLY_FAILED)
        & ~Q(end_reason__in=[EndReason.ORDER_REFUNDED, EndReason.RETRIES_EXHAUSTED]),
    }


def transfers_needing_attention(
    *, now: datetime, reason: str | None = None, queryset: QuerySet | None = None
) -> QuerySet:
    """The transfers a person must look at.

    Transfers a person must look at, for any reason or for ``reason`` (an ``Attention``
    value; anything else is a ``ValueError``)."""
    queryset = SellerTransfer.objects.all() if queryset is None else queryset
    conditions = attention_conditions(now=now)
    if reason is not None:
        return queryset.filter(conditions[Attention(reason)])
    anyone = Q()
    for condition in conditions.values():
        anyone |= condition
    return queryset.filter(anyone)


def transfers_with_attention(*, now: datetime, queryset: QuerySet) -> QuerySet:
    """``queryset`` with ``attention``: the row's first ``Attention`` reason, or ``""``."""
    whens = [
        When(condition, then=Value(reason.value))
        for reason, condition in attention_conditions(now=now).items()
    ]
    return queryset.annotate(attention=Case(*whens, default=Value(""), output_field=CharField()))


def attention_counts(*, now: datetime) -> dict[Attention, int]:
    """Rows per reason, in one statement (a row counts under every reason it meets)."""
    conditions = attention_conditions(now=now)
    counts = transfers_needing_attention(now=now).aggregate(
        **{reason.value: Count("pk", filter=condition) for reason, condition in conditions.items()}
    )
    return {reason: counts[reason.value] for reason in conditions}


def failed_webhook_events(*, limit: int) -> tuple[int, list[WebhookEvent]]:
    """How many Stripe events failed in handling, and the newest of them.

    A failure is a payment for an order we do not know, say. The newest ``limit`` are listed. Served
    by ``idx_webhook_open``; normally none."""
    failed = WebhookEvent.objects.filter(outcome=WebhookOutcome.FAILED)
    return failed.count(), list(failed.order_by("-id")[:limit])


def failed_reserve_releases(*, limit: int) -> tuple[int, list[ReserveRelease]]:
    """How many reserve releases gave up (``failed``), and the oldest of them.

    Each keeps its money in the seller's reserve account until staff send it again. Found
    through the ``release_due`` index (state first); normally none."""
    failed = ReserveRelease.objects.filter(state=ReleaseState.FAILED).select_related("seller")
    # The count rides on the rows (a window over the whole filter): one statement.
    rows = list(failed.annotate(failed=Window(Count("*"))).order_by("pk")[:limit])
    return (rows[0].failed if rows else 0), rows


def _counted(kind: str) -> list[tuple[str, str, int]]:
    """(from status, status, count) per key of one kind of counter: the sum of its rows."""
    rows = (
        TransferCount.objects.filter(kind=kind)
        .values_list("from_status", "status")
        .annotate(total=Sum("n"))
        .order_by()
    )
    return [(from_status, status, total) for from_status, status, total in rows if total]


def transfer_counts_by_status() -> dict[str, int]:
    """How many transfers are in each status.

    Rows per status, every known status present (zero when none), from the counters: what
    entered each status less what left it."""
    counts = dict.fromkeys(TransferStatus.values, 0)
    for from_status, status, n in _counted(TransferCountKind.ROWS):
        if status:
            counts[status] = counts.get(status, 0) + n
        if from_status:
            counts[from_status] = counts.get(from_status, 0) - n
    return counts


def transition_counts() -> dict[tuple[str, str], int]:
    """How many times each transition was made.

    Audit events per (from, to), from the counters: every successful transition ever made,
    same-state retries included. The events are append-only, so each count only grows."""
    return {(from_status, to): n for from_status, to, n in _counted(TransferCountKind.MOVES)}


def transfer_counts_by_status_recount() -> dict[str, int]:
    """What ``transfer_counts_by_status`` must say, counted row by row (reads the table)."""
    counts = dict.fromkeys(TransferStatus.values, 0)
    rows = SellerTransfer.objects.values_list("status").annotate(n=Count("id")).order_by()
    counts.update(dict(rows))
    return counts


def transition_counts_recount() -> dict[tuple[str, str], int]:
    """What ``transition_counts`` must say, counted from the audit trail (reads all of it)."""
    rows = (
        SellerTransferEvent.objects.values_list("from_status", "to_status")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {(from_status, to_status): n for from_status, to_status, n in rows}


# What a searched Stripe id names, by its prefix: an exact match on a uniquely indexed column.
_TRANSFER_SEARCH_BY_PREFIX = (
    ("trr_", "stripe_reversal_id"),
    ("tr_", "stripe_transfer_id"),
    ("ch_", "order__stripe_charge_id"),
    ("py_", "order__stripe_charge_id"),
    ("pi_", "order__stripe_payment_intent_id"),
    ("acct_", "seller__stripe_account_id"),
)


def transfer_search(term: str) -> Q:
    """Find transfers by a Stripe id, a transfer or order id, or a seller.

    The transfers a person searching for ``term`` means, found through indexes only: a
    Stripe id by its prefix, a number as a transfer or order id, anything else as part of a
    seller's name or email (sellers are few; their transfers are found by ``seller_id``)."""
    term = term.strip()
    for prefix, field in _TRANSFER_SEARCH_BY_PREFIX:
        if term.startswith(prefix):
            return Q(**{field: term})
    if term.startswith("re_"):
        return Q(order_id__in=Refund.objects.filter(stripe_refund_id=term).values("order_id"))
    if term.isdigit() and len(term) < 19:  # a bigint
        return Q(id=int(term)) | Q(order_id=int(term))
    sellers = Seller.objects.filter(Q(name__icontains=term) | Q(email__icontains=term))
    return Q(seller_id__in=sellers.values("id"))


# Each distinct value of an indexed column, one index probe per value (a "loose index scan"):
# what ``SELECT DISTINCT`` would read the whole index for. The admin's filter choices.
_DISTINCT_BY_PROBES = """
    WITH RECURSIVE v(value) AS (
        (SELECT {column} FROM {table} ORDER BY {column} LIMIT 1)
        UNION ALL
        SELECT (SELECT {column} FROM {table} WHERE {column} > v.value ORDER BY {column} LIMIT 1)
        FROM v WHERE v.value IS NOT NULL
    )
    SELECT value FROM v WHERE value IS NOT NULL
"""


def _distinct_values(model, column: str) -> list[str]:
    sql = _DISTINCT_BY_PROBES.format(table=model._meta.db_table, column=column)
    with connections[router.db_for_read(model)].cursor() as cursor:
        cursor.execute(sql)
        return [value for (value,) in cursor.fetchall()]


def transfer_currencies() -> list[str]:
    """The currencies seller transfers are in (served by ``idx_transfer_currency_id``)."""
    return _distinct_values(SellerTransfer, "currency")


def webhook_event_types() -> list[str]:
    """The event types the inbox holds (served by ``idx_webhook_type_id``)."""
    return _distinct_values(WebhookEvent, "type")


def due_transfer_counts(*, now: datetime) -> dict[str, int]:
    """Rows the workers would take now: due ``reversal_pending`` and due ``failed``."""
    return {
        status: SellerTransfer.objects.filter(status=status, next_retry_at__lte=now).count()
        for status in (TransferStatus.REVERSAL_PENDING, TransferStatus.FAILED)
    }


def over_reversed_count() -> int:
    """How many transfers Stripe reversed beyond their refund share.

    Transfers Stripe reversed beyond their share of the refunds (served by a partial
    index, normally empty)."""
    # The condition is the partial index's, which keeps this count cheap.
    return SellerTransfer.objects.filter(OVER_REVERSED).count()


def latest_check_run() -> CheckRun | None:
    """The latest finished ``ledger_check`` run, if any."""
    return CheckRun.objects.exclude(finished_at=None).order_by("-pk").first()


def ledger_breaks_last_run() -> int:
    """Breaks the latest ``ledger_check`` found (0 before any run)."""
    latest = latest_check_run()
    return latest.breaks_found if latest else 0


def _oldest_due_age(statuses: list[str], now: datetime) -> timedelta:
    oldest = SellerTransfer.objects.filter(status__in=statuses, next_retry_at__lte=now).aggregate(
        oldest=Min("next_retry_at")
    )["oldest"]
    return max(now - oldest, timedelta(0)) if oldest else timedelta(0)


def oldest_due_reversal_age(*, now: datetime) -> timedelta:
    """How long the longest-waiting due ``reversal_pending`` row has been due (zero if none)."""
    return _oldest_due_age([TransferStatus.REVERSAL_PENDING], now)


def oldest_due_send_age(*, now: datetime) -> timedelta:
    """How long the longest-waiting due unpaid row (``pending`` or ``failed``) has been due."""
    return _oldest_due_age([TransferStatus.PENDING, TransferStatus.FAILED], now)


def dispute_recovery_amount(*, order) -> int:
    """The part of the order's chargeback recovered from its sellers now.

    How much of the order's chargeback is recovered from its sellers now, by the policy
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


# --- Sellers' bank payouts ------------------------------------------------------------------


def seller_payouts_page(
    *, seller_id: int, before_id: int | None, limit: int
) -> tuple[list[Payout], int | None]:
    """A page of the seller's bank payouts, newest first.

    With the id to continue before (``None`` on the last page). Keyset on the id, served by
    ``idx_payout_seller``."""
    payouts = Payout.objects.filter(seller_id=seller_id)
    if before_id is not None:
        payouts = payouts.filter(pk__lt=before_id)
    page = list(payouts.order_by("-pk")[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return page, (page[-1].pk if more else None)


def seller_payout(*, seller_id: int, stripe_payout_id: str) -> Payout | None:
    return Payout.objects.filter(seller_id=seller_id, stripe_payout_id=stripe_payout_id).first()


@dataclass(frozen=True, slots=True)
class OrderInPayout:
    """One order whose money a payout carried.

    What was paid in it and taken back, and the refunds and disputes behind what was taken back."""

    order_id: int
    transfer_id: int
    stripe_transfer_id: str
    currency: str
    transferred: int  # the order's transfer lines in this payout
    reversed: int  # its reversal lines (negative)
    refunds: list[Refund]
    disputes: list[Dispute]


@dataclass(frozen=True, slots=True)
class PayoutContents:
    payout: Payout
    items: list[PayoutItem]
    orders: list[OrderInPayout]
    unmatched: list[PayoutItem]
    transfers_total: int
    reversals_total: int
    unmatched_total: int


def payout_contents(*, payout: Payout) -> PayoutContents:
    """What the payout carried, as last read at Stripe.

    Every line, per order, and what could not be placed."""
    items = list(payout.items.select_related("transfer").order_by("pk"))
    order_ids = {item.order_id for item in items if item.order_id}
    refunds: dict[int, list[Refund]] = {}
    for refund in Refund.objects.filter(order_id__in=order_ids).order_by("pk"):
        refunds.setdefault(refund.order_id, []).append(refund)
    disputes: dict[int, list[Dispute]] = {}
    for dispute in Dispute.objects.filter(order_id__in=order_ids).order_by("pk"):
        disputes.setdefault(dispute.order_id, []).append(dispute)
    by_transfer: dict[int, list[PayoutItem]] = {}
    for item in items:
        if item.transfer_id:
            by_transfer.setdefault(item.transfer_id, []).append(item)
    orders = []
    for lines in by_transfer.values():
        row = lines[0].transfer
        orders.append(
            OrderInPayout(
                order_id=row.order_id,
                transfer_id=row.pk,
                stripe_transfer_id=row.stripe_transfer_id,
                currency=lines[0].currency,
                transferred=sum(i.net for i in lines if i.kind == PayoutItemKind.TRANSFER),
                reversed=sum(i.net for i in lines if i.kind == PayoutItemKind.REVERSAL),
                refunds=refunds.get(row.order_id, []),
                disputes=disputes.get(row.order_id, []),
            )
        )
    unmatched = [item for item in items if item.kind == PayoutItemKind.UNMATCHED]

    def total(kind: str) -> int:
        return sum(item.net for item in items if item.kind == kind)

    return PayoutContents(
        payout=payout,
        items=items,
        orders=sorted(orders, key=lambda entry: entry.order_id),
        unmatched=unmatched,
        transfers_total=total(PayoutItemKind.TRANSFER),
        reversals_total=total(PayoutItemKind.REVERSAL),
        unmatched_total=total(PayoutItemKind.UNMATCHED),
    )


# Payouts that need a person: the bank refused them, or what they carried could not be read
# or does not add up.
PAYOUT_ATTENTION = (
    Q(status=PayoutStatus.FAILED)
    | ~Q(reconcile_error="")
    | (Q(items_total__isnull=False) & ~Q(items_total=F("amount")))
)


def payouts_needing_attention(*, limit: int) -> tuple[int, list[Payout]]:
    """How many payouts need a person, and the newest ``limit`` of them."""
    payouts = Payout.objects.filter(PAYOUT_ATTENTION)
    return payouts.count(), list(payouts.select_related("seller").order_by("-pk")[:limit])


def payout_statement_lines(
    *, seller_id: int, start: datetime | None, end: datetime | None
) -> list[StatementLine]:
    """The seller's bank deposits as lines of their statement.

    A line per deposit, not the book's money (the payout moves the seller's own Stripe balance to
    their bank), so under the account ``bank`` and never in the balances. Dated when it arrives (or,
    without that, when Stripe made it)."""
    payouts = Payout.objects.filter(seller_id=seller_id).annotate(
        dated=Coalesce("arrival_date", "stripe_created", "created_at")
    )
    if start is not None:
        payouts = payouts.filter(dated__gte=start)
    if end is not None:
        payouts = payouts.filter(dated__lt=end)
    return [
        StatementLine(
            posted_at=payout.dated,
            kind="payout" if payout.status != PayoutStatus.FAILED else "payout_failed",
            account="bank",
            currency=payout.currency,
            amount=payout.amount,
            order_id=None,
            transfer_id=None,
            stripe_id=payout.stripe_payout_id,
            memo=_deposit_memo(payout),
        )
        for payout in payouts.order_by("dated", "pk")
    ]


def _deposit_memo(payout: Payout) -> str:
    if payout.status == PayoutStatus.FAILED:
        reason = payout.failure_message or "no reason given"
        return f"bank deposit failed ({payout.failure_code or 'unknown'}): {reason}"
    return f"bank deposit, {payout.status}"


def seller_dispute_record(*, seller_id: int, since: datetime) -> tuple[int, int]:
    """The seller's disputed orders and paid orders since ``since``: ``(disputed, paid)``.

    Paid: orders that made a transfer row for the seller since then; disputed: those of the
    seller's orders with a dispute recorded since then (a dispute on an older order counts,
    as the bank's claim is what is new)."""
    paid = SellerTransfer.objects.filter(seller_id=seller_id, created_at__gte=since)
    disputed = Dispute.objects.filter(
        order__transfers__seller_id=seller_id, created_at__gte=since
    ).values("order_id")
    return disputed.distinct().count(), paid.values("order_id").distinct().count()


def risk_held_sellers() -> list[dict]:
    """The sellers with transfers held for risk: seller, rows, amount per currency, oldest."""
    held = SellerTransfer.objects.filter(status=TransferStatus.HELD, held_reason=HeldReason.RISK)
    rows = held.values("seller_id", "seller__name", "currency").annotate(
        transfers=Count("pk"), amount=Sum("amount"), since=Min("created_at")
    )
    return list(rows.order_by("since", "seller_id"))


def reserves_held_by_currency() -> dict[str, tuple[int, int]]:
    """The sellers' rolling reserves not sent yet, per currency: (transfers, amount held).

    What each reserve kept less what refunds and chargebacks took from it, until the release
    that carries it is sent; and what released reserves gave back, until each give-back is
    sent. One statement (the two parts joined by ``UNION ALL``)."""
    taken = F("reserve_refund") + F("reserve_dispute") + F("reserve_given_back")
    kept = (
        # ``amount_reserved > 0`` first: the partial index of the transfers that kept a reserve.
        SellerTransfer.objects.filter(amount_reserved__gt=0)
        .filter(amount_reserved__gt=taken)
        .exclude(reserve_release__state=ReleaseState.SENT)
        .values_list("currency")
        .annotate(n=Count("*"), total=Sum(F("amount_reserved") - taken))
        .order_by()
    )
    given_back = (
        ReserveRelease.objects.filter(given_back_for__isnull=False)
        .exclude(state=ReleaseState.SENT)
        .values_list("currency")
        .annotate(n=Count("*"), total=Sum("amount"))
        .order_by()
    )
    held: dict[str, tuple[int, int]] = {}
    for currency, n, total in kept.union(given_back, all=True):
        before = held.get(currency, (0, 0))
        held[currency] = (before[0] + n, before[1] + total)
    return dict(sorted(held.items()))
