"""Does the book agree with itself, with the seller transfer rows, and with Stripe?

Six checks, each a break per difference (stored, so the admin lists them, and printed by
``manage.py ledger_check``):

1. every entry balances in each currency (the database refuses any other at commit; this is a
   second look);
2. each seller's payable and debt in the book equal what their transfer rows say: owed for
   each payment, less what was sent, netted or cancelled, plus the refund shares, less what was
   reversed or became debt; the debt is what became debt, less what was netted or written off;
3. for each transfer, the money the book says went out and came back equals the row's;
4. for each transfer paid at Stripe, Stripe's amount and amount reversed equal the row's, and
   the transfers Stripe holds that gave money back to the seller add up to the row's
   ``amount_returned`` (read through the gateway in pages of 100 by creation time, on the
   checks' share of the shared rate limit; ``payouts/services/stripe_reads.py``);
5. for each order of those transfers, the platform's cash in the book equals what Stripe's
   balance transactions of the order moved: the charge's net, its refunds (and their failures),
   its disputes' funds, and every transfer of its transfer group less what was reversed;
6. no money is stranded or paid twice by the rows' own arithmetic (without Stripe): a transfer
   cancelled because its order was refunded in full while the order is not (any more), an
   attempt to pay that failed while the kept-back shares exceed what is left to send, and a
   seller given back in new transfers more debt than they ever paid (by netting) beyond what
   was reversed or kept back.

Two modes. **Full** (the default, weekly in beat) reads the whole book and every transfer row.
**Incremental** (daily in beat) reads only what changed since the last clean run (less an hour,
for transactions still open when it started): the transfers updated since then, each against
the book's lines of its own order on its own seller's accounts (the seller check, one order at
a time: the per-seller sums are sums of these), the entries of their orders and the sellers'
entries posted since (balance), and those transfers at Stripe. Its cost follows a day's changes,
not the size of the book. A row changed without moving ``updated_at`` (raw SQL) is found by the
next full run; with no clean run yet, an incremental run is a full one.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import F, Min, QuerySet, Sum
from django.utils import timezone

from ledger.models import AccountKind, Break, BreakKind, CheckRun, Entry, EntryKind, Line
from marketplace.models import Order, OrderStatus
from payouts.conf import DAILY_CHECK_WINDOW, WEEKLY_CHECK_WINDOW
from payouts.models import (
    GIVEN_BACK_AGAINST_DEBT,
    LEFT_AFTER_SHARES,
    AccountDebit,
    DebitState,
    SellerTransfer,
)
from payouts.services.stripe_reads import TransfersAtStripe
from payouts.services.transfers import transfer_group
from payouts.stripe_api.gateway import (
    GatewayError,
    StripeGateway,
    StripeTransfer,
    TransferNotFound,
    get_gateway,
)
from payouts.transfer import money
from payouts.transfer.transitions import PAID_STATUSES, EndReason, TransferStatus


@dataclass(frozen=True)
class Found:
    kind: str
    detail: str
    seller_id: int | None = None
    transfer_id: int | None = None
    currency: str = ""

    def __str__(self) -> str:
        where = f"transfer {self.transfer_id}: " if self.transfer_id else ""
        if self.seller_id and self.transfer_id:
            where = f"transfer {self.transfer_id} (seller {self.seller_id}, {self.currency}): "
        elif self.seller_id:
            where = f"seller {self.seller_id} ({self.currency}): "
        return f"{self.kind} {where}{self.detail}"


# Transactions are short (Stripe is called outside them), so one that stamped ``updated_at``
# before a run started and committed after the run read is well within this much.
INCREMENTAL_OVERLAP = timedelta(hours=1)


def ledger_check(
    *,
    stripe: bool = True,
    since: timedelta | None = None,
    stripe_since: timedelta | None = None,
    gateway: StripeGateway | None = None,
    incremental: bool = False,
    cash: bool | None = None,
) -> tuple[CheckRun, list[Found]]:
    """Run the ledger check, full or incremental, and store its breaks.

    Run every check and store the run and its breaks. Full: the whole book, and the
    per-transfer ones over transfers changed within ``since`` (or all). ``incremental``: only
    what changed since the last clean run, at most a week and a day back (``since`` is then
    ignored; breaks that stay unfixed longer are the weekly full run's). At Stripe, the checked
    transfers changed within ``stripe_since`` (or all of them); and, unless ``cash`` is False
    (by default: in full runs, not incremental ones), each of their orders' platform cash
    against Stripe's balance transactions, a few reads per order."""
    changed_since = _last_clean_run_start() if incremental else None
    if changed_since is not None:
        changed_since = max(changed_since, timezone.now() - WEEKLY_CHECK_WINDOW)
    run = CheckRun.objects.create()
    if changed_since is None:
        found, transfers = _full_checks(since)
    else:
        found, transfers = _incremental_checks(changed_since - INCREMENTAL_OVERLAP)
    found += _stranded(transfers) + _given_back_uncollected(transfers)
    if stripe:
        at_stripe = transfers
        if stripe_since is not None:
            at_stripe = transfers.filter(updated_at__gte=timezone.now() - stripe_since)
        gateway = gateway or get_gateway(for_checks=True)
        found += _transfers_at_stripe(at_stripe, gateway, window=stripe_since)
        if cash if cash is not None else not incremental:
            found += _orders_at_stripe(at_stripe, gateway)
    _run_finished(run, found, checked=transfers.count())
    return run, found


def _run_finished(run: CheckRun, found: list[Found], *, checked: int) -> None:
    """Store the run's breaks, and when and how much it checked."""
    Break.objects.bulk_create(
        Break(
            run=run,
            kind=f.kind,
            seller_id=f.seller_id,
            transfer_id=f.transfer_id,
            currency=f.currency,
            detail=f.detail,
        )
        for f in found
    )
    run.finished_at = timezone.now()
    run.transfers_checked = checked
    run.breaks_found = len(found)
    run.save(update_fields=["finished_at", "transfers_checked", "breaks_found"])


def ledger_check_daily() -> dict[str, int]:
    """The daily ledger check.

    Beat's daily run: what changed since the last clean run, and at Stripe what changed in
    the last day (a break left unfixed does not make every later day read more at Stripe)."""
    run, found = ledger_check(incremental=True, stripe_since=DAILY_CHECK_WINDOW)
    return {"run": run.pk, "transfers": run.transfers_checked, "breaks": len(found)}


def ledger_check_weekly() -> dict[str, int]:
    """The weekly ledger check.

    Beat's weekly run: the whole book and every row, and at Stripe the transfers changed in
    the last week (and a day)."""
    run, found = ledger_check(stripe_since=WEEKLY_CHECK_WINDOW)
    return {"run": run.pk, "transfers": run.transfers_checked, "breaks": len(found)}


def _last_clean_run_start() -> datetime | None:
    """When the latest finished run without breaks started (everything before it was clean)."""
    clean = CheckRun.objects.filter(breaks_found=0).exclude(finished_at=None).order_by("-pk")
    latest = clean.only("started_at").first()
    return latest.started_at if latest else None


def _full_checks(since: timedelta | None) -> tuple[list[Found], QuerySet]:
    found = _unbalanced_entries() + _seller_accounts()
    cutoff = None if since is None else timezone.now() - since
    transfers = SellerTransfer.objects.all()
    if cutoff is not None:
        transfers = transfers.filter(updated_at__gte=cutoff)
    return found + _transfers_in_the_book(cutoff), transfers


def _incremental_checks(cutoff: datetime) -> tuple[list[Found], QuerySet]:
    found = _unbalanced_entries_since(cutoff) + _changed_transfers_by_order(cutoff)
    return found, SellerTransfer.objects.filter(updated_at__gte=cutoff)


def _rows(sql: str, params: list | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall()


def _unbalanced_entries() -> list[Found]:
    rows = _rows(
        "SELECT entry_id, currency, sum(amount) FROM ledger_line "
        "GROUP BY entry_id, currency HAVING sum(amount) <> 0"
    )
    return [
        Found(BreakKind.UNBALANCED_ENTRY, f"entry {entry} leaves {total} {currency} over")
        for entry, currency, total in rows
    ]


# What a transfer row says the seller's payable account holds for it (debit positive): owed at
# payment, then netted, sent (and given back), charged refund and chargeback shares, reversed,
# made debt, cancelled (what was not kept back already). ``money.row_payable`` in SQL, for one
# set-based query over every row; tests/test_money_sql.py checks the two agree.
# The transfer's part of the seller's share: all of it but the rolling reserve, which its own
# account holds (``money.Facts.of``).
_ROW_PAYABLE = """
    - (t.amount - t.amount_reserved) + t.amount_netted + {sent} + t.amount_returned
    + t.reversal_target + t.dispute_target - t.amount_reversed - t.amount_owed
    + CASE WHEN t.end_reason = 'order_refunded'
      THEN t.amount - t.amount_reserved - t.reversal_target - t.dispute_target ELSE 0 END
"""
_SENT = """
    CASE WHEN t.stripe_transfer_id <> '' OR t.status = ANY(%(paid)s)
    THEN t.amount - t.amount_reserved - t.amount_netted - t.amount_withheld ELSE 0 END
"""

# What a transfer row adds to the seller's debt: made debt, less what it netted, and what they
# owe of its released reserve (with what of that, once paid, was given back to them).
_ROW_DEBT = """
    t.amount_owed - t.amount_netted
    + t.reserve_owed_refund + t.reserve_owed_dispute + t.reserve_owed_given_back
"""

_BOOK_BY_SELLER = """
    SELECT a.seller_id, l.currency, a.kind, sum(l.amount)
    FROM ledger_line l JOIN ledger_account a ON a.id = l.account_id
    WHERE a.kind IN ('seller_payable', 'seller_debt', 'seller_reserve')
    GROUP BY a.seller_id, l.currency, a.kind
"""
# The reserve account holds what each reserve kept and not taken by shares (at its release:
# with what it gave back since), until the release that carries it is sent (a credit: owed to
# the seller); and what released reserves gave back, until each give-back is sent.
_ROWS_BY_SELLER = f"""
    SELECT t.seller_id, t.currency,
           sum({_ROW_PAYABLE.format(sent=_SENT)}),
           sum({_ROW_DEBT}),
           -sum(CASE WHEN r.state IS DISTINCT FROM 'sent'
                THEN t.amount_reserved - t.reserve_refund - t.reserve_dispute
                     - t.reserve_given_back ELSE 0 END)
    FROM payouts_sellertransfer t
    LEFT JOIN payouts_reserverelease r ON r.id = t.reserve_release_id
    GROUP BY t.seller_id, t.currency
"""
_GIVE_BACKS_UNSENT = """
    SELECT seller_id, currency, -sum(amount) FROM payouts_reserverelease
    WHERE given_back_for_id IS NOT NULL AND state <> 'sent'
    GROUP BY seller_id, currency
"""
_SELLER_BREAKS = {
    "seller_payable": BreakKind.SELLER_PAYABLE,
    "seller_debt": BreakKind.SELLER_DEBT,
    "seller_reserve": BreakKind.SELLER_RESERVE,
}
_WRITTEN_OFF = """
    SELECT e.seller_id, l.currency, -sum(l.amount)
    FROM ledger_entry e JOIN ledger_line l ON l.entry_id = e.id
    JOIN ledger_account a ON a.id = l.account_id
    WHERE e.kind IN ('debt_written_off', 'write_off_reversed', 'debt_debited')
      AND a.kind = 'seller_debt'
    GROUP BY e.seller_id, l.currency
"""


def _seller_accounts() -> list[Found]:
    book: dict[tuple, int] = {}
    for seller_id, currency, kind, total in _rows(_BOOK_BY_SELLER):
        book[(seller_id, currency, kind)] = total
    written_off = {(s, c): total for s, c, total in _rows(_WRITTEN_OFF)}
    expected: dict[tuple, int] = {}
    paid = {"paid": list(PAID_STATUSES)}
    given_back = {(s, c): total for s, c, total in _rows(_GIVE_BACKS_UNSENT)}
    for seller_id, currency, payable, debt, reserve in _rows(_ROWS_BY_SELLER, paid):
        expected[(seller_id, currency, "seller_payable")] = payable
        reserve += given_back.get((seller_id, currency), 0)
        if reserve:
            expected[(seller_id, currency, "seller_reserve")] = reserve
        off = written_off.get((seller_id, currency), 0)
        expected[(seller_id, currency, "seller_debt")] = debt - off
    found = []
    for key in sorted(set(book) | set(expected), key=str):
        ours, theirs = book.get(key, 0), expected.get(key, 0)
        if ours != theirs:
            seller_id, currency, kind = key
            found.append(
                Found(
                    _SELLER_BREAKS[kind],
                    f"{kind} is {ours} in the book, {theirs} by the transfer rows",
                    seller_id=seller_id,
                    currency=currency,
                )
            )
    return found


# An incremental run reads the book one changed order at a time, through the indexes on
# ledger_entry.order_id and ledger_line.entry_id: a LATERAL subquery with an aggregate is run
# per order, never turned into a join over the whole book, so its cost follows the day's
# changes and not the size of the book.
_CHANGED_ORDERS = """
    SELECT DISTINCT order_id FROM payouts_sellertransfer WHERE updated_at >= %(since)s
"""

# Balance: every entry of the changed orders, and the entries without an order posted since
# (a debt written off).
_UNBALANCED_SINCE = f"""
    SELECT x.entry_id, x.currency, x.total FROM ({_CHANGED_ORDERS}) c
    CROSS JOIN LATERAL (
        SELECT l.entry_id, l.currency, sum(l.amount) AS total
        FROM ledger_entry e JOIN ledger_line l ON l.entry_id = e.id
        WHERE e.order_id = c.order_id
        GROUP BY l.entry_id, l.currency HAVING sum(l.amount) <> 0
    ) x
    UNION ALL
    SELECT l.entry_id, l.currency, sum(l.amount)
    FROM ledger_entry e JOIN ledger_line l ON l.entry_id = e.id
    WHERE e.order_id IS NULL AND e.posted_at >= %(since)s
    GROUP BY l.entry_id, l.currency HAVING sum(l.amount) <> 0
"""


def _unbalanced_entries_since(since: datetime) -> list[Found]:
    return [
        Found(BreakKind.UNBALANCED_ENTRY, f"entry {entry} leaves {total} {currency} over")
        for entry, currency, total in _rows(_UNBALANCED_SINCE, {"since": since})
    ]


# Each changed transfer against its own order's lines: the payable and debt lines of its seller
# (what the per-seller check sums, one order at a time: a transfer is unique per order and seller,
# and every seller line but a write-off's names its order), and the cash its seller's transfer
# and reversal entries moved (what the per-transfer check reads). A write-off reversed names its
# order but, as the write-off it undoes, is the seller's (the full check's). Only disagreements
# come back.
_BY_ORDER = f"""
    WITH rows AS (
        SELECT t.* FROM payouts_sellertransfer t WHERE t.updated_at >= %(since)s
    ), book AS (
        SELECT c.order_id, x.* FROM (SELECT DISTINCT order_id FROM rows) c
        CROSS JOIN LATERAL (
            SELECT coalesce(a.seller_id, e.seller_id) AS seller_id, l.currency,
                coalesce(sum(l.amount) FILTER (WHERE a.kind = 'seller_payable'), 0) AS payable,
                coalesce(sum(l.amount) FILTER (
                    WHERE a.kind = 'seller_debt' AND e.kind <> 'write_off_reversed'), 0) AS debt,
                -coalesce(sum(l.amount) FILTER (
                    WHERE a.kind = 'platform_cash' AND e.kind = 'transfer'), 0) AS sent,
                coalesce(sum(l.amount) FILTER (
                    WHERE a.kind = 'platform_cash' AND e.kind = 'reversal'), 0) AS reversed
            FROM ledger_entry e JOIN ledger_line l ON l.entry_id = e.id
            JOIN ledger_account a ON a.id = l.account_id
            WHERE e.order_id = c.order_id
            GROUP BY 1, 2
        ) x
    ), compared AS (
        SELECT t.id, t.order_id, t.seller_id, t.currency,
               {_ROW_PAYABLE.format(sent=_SENT)} AS payable,
               {_ROW_DEBT} AS debt,
               {_SENT} + t.amount_returned AS sent, t.amount_reversed AS reversed,
               coalesce(b.payable, 0) AS book_payable, coalesce(b.debt, 0) AS book_debt,
               coalesce(b.sent, 0) AS book_sent, coalesce(b.reversed, 0) AS book_reversed
        FROM rows t LEFT JOIN book b
        ON (b.order_id, b.seller_id, b.currency) = (t.order_id, t.seller_id, t.currency)
    )
    SELECT * FROM compared
    WHERE (payable, debt, sent, reversed)
        IS DISTINCT FROM (book_payable, book_debt, book_sent, book_reversed)
    ORDER BY id
"""


def _changed_transfers_by_order(since: datetime) -> list[Found]:
    found = []
    params = {"paid": list(PAID_STATUSES), "since": since}
    for row in _rows(_BY_ORDER, params):
        pk, order_id, seller_id, currency, payable, debt, sent, reversed_ = row[:8]
        book_payable, book_debt, book_sent, book_back = row[8:]
        for kind, ours, theirs in (
            (BreakKind.SELLER_PAYABLE, book_payable, payable),
            (BreakKind.SELLER_DEBT, book_debt, debt),
        ):
            if ours != theirs:
                detail = f"{kind} for order {order_id} is {ours} in the book, {theirs} by the row"
                found.append(Found(kind, detail, seller_id, pk, currency))
        if (sent, reversed_) != (book_sent, book_back):
            detail = (
                f"sent/reversed {sent}/{reversed_} on the row, {book_sent}/{book_back} in the book"
            )
            found.append(Found(BreakKind.TRANSFER_BOOK, detail, seller_id, pk, currency))
    return found


# One pass over the transfers (changed since %(since)s, when given) and their cash lines: only
# the transfers whose row and book disagree come back.
_TRANSFER_VS_BOOK = f"""
    WITH rows AS (
        SELECT t.* FROM payouts_sellertransfer t
        WHERE %(since)s::timestamptz IS NULL OR t.updated_at >= %(since)s
    ), book AS (
        SELECT e.transfer_id,
               -coalesce(sum(l.amount) FILTER (WHERE e.kind = 'transfer'), 0) AS sent,
               coalesce(sum(l.amount) FILTER (WHERE e.kind = 'reversal'), 0) AS reversed
        FROM ledger_entry e JOIN ledger_line l ON l.entry_id = e.id
        JOIN ledger_account a ON a.id = l.account_id AND a.kind = 'platform_cash'
        WHERE e.transfer_id IN (SELECT id FROM rows)
        GROUP BY e.transfer_id
    )
    SELECT t.id, t.seller_id, t.currency, {_SENT} + t.amount_returned AS sent, t.amount_reversed,
           coalesce(b.sent, 0), coalesce(b.reversed, 0)
    FROM rows t LEFT JOIN book b ON b.transfer_id = t.id
    WHERE ({_SENT} + t.amount_returned, t.amount_reversed)
        IS DISTINCT FROM (coalesce(b.sent, 0), coalesce(b.reversed, 0))
    ORDER BY t.id
"""


def _transfers_in_the_book(since) -> list[Found]:
    params = {"paid": list(PAID_STATUSES), "since": since}
    return [
        Found(
            BreakKind.TRANSFER_BOOK,
            f"sent/reversed {sent}/{reversed_} on the row, {book_sent}/{book_back} in the book",
            seller_id=seller_id,
            transfer_id=pk,
            currency=currency,
        )
        for pk, seller_id, currency, sent, reversed_, book_sent, book_back in _rows(
            _TRANSFER_VS_BOOK, params
        )
    ]


def _transfers_at_stripe(
    transfers, gateway: StripeGateway, *, window: timedelta | None = None
) -> list[Found]:
    """Compare each transfer with Stripe's figures, read in pages.

    The pages list the transfers Stripe created in the last ``window`` (all: since the earliest
    checked row's creation); only rows the pages did not return are read one at a time."""
    paid = transfers.exclude(stripe_transfer_id="")
    created_from = timezone.now() - window if window is not None else _earliest(paid)
    at_stripe = TransfersAtStripe.read(
        ids=paid.values_list("stripe_transfer_id", flat=True).iterator(chunk_size=10_000),
        created_from=created_from,
        gateway=gateway,
    )
    found = []
    for row in paid.order_by("pk").iterator(chunk_size=2000):
        problem = _compare_at_stripe(row, at_stripe)
        if problem:
            found.append(
                Found(
                    BreakKind.TRANSFER_STRIPE,
                    f"{row.stripe_transfer_id}: {problem}",
                    seller_id=row.seller_id,
                    transfer_id=row.pk,
                    currency=row.currency,
                )
            )
    return found


def _earliest(transfers) -> datetime | None:
    return transfers.aggregate(first=Min("created_at"))["first"]


def _compare_at_stripe(row: SellerTransfer, at_stripe: TransfersAtStripe) -> str | None:
    sent = row.sent
    try:
        amount, amount_reversed = at_stripe.transfer(
            row.stripe_transfer_id, ours=(sent, row.amount_reversed)
        )
    except TransferNotFound:
        return "missing at Stripe"
    except GatewayError as error:
        return f"could not be read: {error.describe()}"
    if (amount, amount_reversed) != (sent, row.amount_reversed):
        return (
            f"amount/reversed {sent}/{row.amount_reversed} here, "
            f"{amount}/{amount_reversed} at Stripe"
        )
    return None


# --- Money stranded or paid twice by the rows' own arithmetic ------------------------------------


def _stranded(transfers: QuerySet) -> list[Found]:
    """Transfers whose money nothing will ever move as things stand.

    Cancelled because the order was refunded in full while it is not (a refund failed after): the
    seller is owed their share and nothing pays it; an attempt to pay failed while more is kept back
    than is left to send: it asked Stripe for a negative transfer, and the rest is never
    recovered."""
    found = []
    cancelled = transfers.filter(
        status=TransferStatus.PERMANENTLY_FAILED, end_reason=EndReason.ORDER_REFUNDED
    ).exclude(order__status=OrderStatus.REFUNDED)
    for row in cancelled.select_related("order").order_by("pk"):
        detail = (
            f"cancelled as its order was refunded in full, but the order is {row.order.status}: "
            f"{money.unpaid_share(row.facts)} owed to the seller is never paid"
        )
        found.append(
            Found(BreakKind.TRANSFER_STRANDED, detail, row.seller_id, row.pk, row.currency)
        )
    found += _reserve_kept_when_cancelled(transfers)
    unpaid = (
        transfers.filter(stripe_transfer_id="")
        .filter(status__in=[TransferStatus.FAILED, TransferStatus.PERMANENTLY_FAILED])
        .exclude(end_reason=EndReason.ORDER_REFUNDED)
        .annotate(left=LEFT_AFTER_SHARES)
        .filter(left__lt=0)
    )
    for row in unpaid.order_by("pk"):
        detail = (
            f"{row.status}, keeps back {row.kept_back} of shares from "
            f"{row.amount - row.amount_reserved - row.amount_netted} left to send: "
            f"{money.owed_at_send(row.facts)} "
            "the seller owes "
            "can never be sent nor taken back"
        )
        found.append(
            Found(BreakKind.TRANSFER_STRANDED, detail, row.seller_id, row.pk, row.currency)
        )
    return found


def _reserve_kept_when_cancelled(transfers: QuerySet) -> list[Found]:
    """Transfers cancelled with their order whose reserve still keeps money for the seller.

    The order was refunded in full, so the reserve pays its part of the refund; a reserve
    left kept is owed to the seller in the book and never released (only paid transfers'
    reserves are)."""
    kept = transfers.filter(
        status=TransferStatus.PERMANENTLY_FAILED,
        end_reason=EndReason.ORDER_REFUNDED,
        amount_reserved__gt=F("reserve_refund") + F("reserve_dispute"),
    )
    return [
        Found(
            BreakKind.TRANSFER_STRANDED,
            f"cancelled as its order was refunded in full, but its reserve keeps "
            f"{row.amount_reserved - row.reserve_refund - row.reserve_dispute} for the seller "
            "that no release will send",
            row.seller_id,
            row.pk,
            row.currency,
        )
        for row in kept.order_by("pk")
    ]


def _given_back_uncollected(transfers: QuerySet) -> list[Found]:
    """Sellers paid back a debt they never paid.

    Per seller: money sent back in new transfers beyond what was reversed or kept back from
    them gives back a debt, which they can only have paid by netting or by an account debit.
    More than they netted and were debited is a debt they never paid (written off, or still
    owed) paid out to them."""
    sellers = transfers.filter(amount_returned__gt=0).values("seller_id")
    rows = SellerTransfer.objects.filter(seller_id__in=sellers).values("seller_id", "currency")
    totals = rows.annotate(
        against_debt=Sum(GIVEN_BACK_AGAINST_DEBT),
        netted=Sum("amount_netted"),
    ).filter(against_debt__gt=F("netted"))
    found = []
    for t in totals.order_by("seller_id", "currency"):
        debited = AccountDebit.objects.filter(
            seller_id=t["seller_id"], currency=t["currency"], state=DebitState.SUCCEEDED
        ).aggregate(total=Sum("amount"))["total"]
        collected = t["netted"] + (debited or 0)
        if t["against_debt"] <= collected:
            continue
        detail = (
            f"{t['against_debt']} given back in new transfers against debt, {collected} of it "
            f"ever netted or debited: {t['against_debt'] - collected} paid out for a debt "
            "never paid"
        )
        found.append(
            Found(
                BreakKind.GIVEN_BACK_UNCOLLECTED,
                detail,
                seller_id=t["seller_id"],
                currency=t["currency"],
            )
        )
    return found


# --- The platform's cash and the give-backs at Stripe ---------------------------------------------


def _orders_at_stripe(transfers: QuerySet, gateway: StripeGateway) -> list[Found]:
    """Each order of the checked transfers, compared with Stripe.

    One list of its transfer group (the sellers' transfers and the give-backs), then its charge,
    refunds and disputes."""
    found = []
    order_ids = transfers.order_by("order_id").values_list("order_id", flat=True).distinct()
    for order_id in order_ids.iterator(chunk_size=2000):
        found += _order_at_stripe(Order.objects.get(pk=order_id), gateway)
    return found


def _order_at_stripe(order: Order, gateway: StripeGateway) -> list[Found]:
    rows = list(SellerTransfer.objects.filter(order=order).order_by("pk"))
    currency = order.settlement_currency or order.currency
    try:
        group = gateway.find_transfers(transfer_group=transfer_group(order))
        found = _given_back_at_stripe(rows, group)
        charge_id = _charge_booked(order)
        if not charge_id or _settlement_awaited(order):
            # Paid before the book, or never paid at Stripe: no cash to compare. A refund (or
            # the payment) whose balance transaction is still to be read is booked when it is.
            return found
        cash = _cash_at_stripe(charge_id, rows, group, gateway)
    except GatewayError as error:
        detail = f"order {order.pk} could not be read at Stripe: {error.describe()}"
        return [Found(BreakKind.PLATFORM_CASH, detail, currency=currency)]
    booked = Line.objects.filter(
        entry__order=order, account__kind=AccountKind.PLATFORM_CASH, currency=currency
    ).aggregate(total=Sum("amount"))["total"]
    if cash is not None and cash != (booked or 0):
        sellers = sorted({row.seller_id for row in rows})
        detail = (
            f"order {order.pk} (sellers {', '.join(map(str, sellers))}): platform cash "
            f"{booked or 0} in the book, {cash} by Stripe's balance transactions "
            f"({cash - (booked or 0):+} at Stripe)"
        )
        seller_id = sellers[0] if len(sellers) == 1 else None
        found.append(Found(BreakKind.PLATFORM_CASH, detail, seller_id=seller_id, currency=currency))
    return found


def _settlement_awaited(order: Order) -> bool:
    return (
        order.settlement_due_at is not None
        or order.refunds.exclude(settlement_due_at=None).exists()
    )


def _charge_booked(order: Order) -> str:
    """The charge the book's payment of the order names (empty when none)."""
    payment = Entry.objects.filter(order=order, kind=EntryKind.PAYMENT).exclude(stripe_id="")
    return payment.values_list("stripe_id", flat=True).first() or ""


def _given_back_at_stripe(rows: list[SellerTransfer], group: list[StripeTransfer]) -> list[Found]:
    """What Stripe gave back to each seller, against the row's ``amount_returned``.

    The transfers that gave money back to each seller: our metadata names the row and how much
    was given back before."""
    found = []
    for row in rows:
        at_stripe = sum(
            t.amount - t.amount_reversed
            for t in group
            if t.metadata.get("seller_transfer_id") == str(row.pk)
            and "given_back_after" in t.metadata
        )
        if at_stripe != row.amount_returned:
            detail = f"given back {row.amount_returned} here, {at_stripe} at Stripe"
            found.append(
                Found(BreakKind.TRANSFER_STRIPE, detail, row.seller_id, row.pk, row.currency)
            )
    return found


def _cash_at_stripe(charge_id, rows, group, gateway: StripeGateway) -> int | None:
    """What the order moved on the platform's balance at Stripe.

    ``None`` while the charge has no balance transaction yet."""
    settlement = gateway.charge_settlement(charge_id)
    if settlement is None:
        return None
    cash = settlement.net
    cash += sum(
        gateway.refund_cash(refund.id) for refund in gateway.list_refunds(charge_id=charge_id)
    )
    for dispute in gateway.list_disputes(charge_id=charge_id):
        cash += sum(move.net for move in dispute.balance_moves)
    listed = {t.id for t in group}
    transfers = list(group) + [
        gateway.retrieve_transfer(row.stripe_transfer_id)
        for row in rows
        if row.stripe_transfer_id and row.stripe_transfer_id not in listed
    ]
    return cash - sum(t.amount - t.amount_reversed for t in transfers)
