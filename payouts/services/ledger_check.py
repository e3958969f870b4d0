"""Does the book agree with itself, with the seller transfer rows, and with Stripe?

Four checks, each a break per difference (stored, so the admin lists them, and printed by
``manage.py ledger_check``):

1. every entry balances in each currency (the database refuses any other at commit; this is a
   second look);
2. each seller's payable and debt in the book equal what their transfer rows say: owed for
   each payment, less what was sent, netted or cancelled, plus the refund shares, less what was
   reversed or became debt; the debt is what became debt, less what was netted or written off;
3. for each transfer, the money the book says went out and came back equals the row's;
4. for each transfer paid at Stripe, Stripe's amount and amount reversed equal the row's (read
   through the gateway, so the shared rate limit applies).
"""

from dataclasses import dataclass
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from ledger.models import Break, BreakKind, CheckRun
from payouts.gateway import GatewayError, StripeGateway, TransferNotFound, get_gateway
from payouts.models import SellerTransfer
from payouts.services.shares import PAID


@dataclass(frozen=True)
class Found:
    kind: str
    detail: str
    seller_id: int | None = None
    transfer_id: int | None = None
    currency: str = ""

    def __str__(self) -> str:
        where = f"transfer {self.transfer_id}: " if self.transfer_id else ""
        if self.seller_id and not self.transfer_id:
            where = f"seller {self.seller_id} ({self.currency}): "
        return f"{self.kind} {where}{self.detail}"


def ledger_check(
    *, stripe: bool = True, since: timedelta | None = None, gateway: StripeGateway | None = None
) -> tuple[CheckRun, list[Found]]:
    """Run every check (the per-transfer ones over transfers changed within ``since``, or all)
    and store the run and its breaks."""
    run = CheckRun.objects.create()
    found = _unbalanced_entries() + _seller_accounts()
    cutoff = None if since is None else timezone.now() - since
    transfers = SellerTransfer.objects.all()
    if cutoff is not None:
        transfers = transfers.filter(updated_at__gte=cutoff)
    found += _transfers_in_the_book(cutoff)
    if stripe:
        found += _transfers_at_stripe(transfers, gateway or get_gateway())
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
    run.transfers_checked = transfers.count()
    run.breaks_found = len(found)
    run.save(update_fields=["finished_at", "transfers_checked", "breaks_found"])
    return run, found


def ledger_check_daily() -> dict[str, int]:
    """Beat's daily run: the whole book, and the transfers changed in the last 30 days."""
    run, found = ledger_check(since=timedelta(days=30))
    return {"run": run.pk, "breaks": len(found)}


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
# made debt, cancelled (what was not kept back already).
_ROW_PAYABLE = """
    - t.amount + t.amount_netted + {sent} + t.amount_returned
    + t.reversal_target + t.dispute_target - t.amount_reversed - t.amount_owed
    + CASE WHEN t.end_reason = 'order_refunded'
      THEN t.amount - t.reversal_target - t.dispute_target ELSE 0 END
"""
_SENT = """
    CASE WHEN t.stripe_transfer_id <> '' OR t.status = ANY(%(paid)s)
    THEN t.amount - t.amount_netted - t.amount_withheld ELSE 0 END
"""

_BOOK_BY_SELLER = """
    SELECT a.seller_id, l.currency, a.kind, sum(l.amount)
    FROM ledger_line l JOIN ledger_account a ON a.id = l.account_id
    WHERE a.kind IN ('seller_payable', 'seller_debt')
    GROUP BY a.seller_id, l.currency, a.kind
"""
_ROWS_BY_SELLER = f"""
    SELECT t.seller_id, t.currency,
           sum({_ROW_PAYABLE.format(sent=_SENT)}),
           sum(t.amount_owed - t.amount_netted)
    FROM payouts_sellertransfer t GROUP BY t.seller_id, t.currency
"""
_WRITTEN_OFF = """
    SELECT e.seller_id, l.currency, -sum(l.amount)
    FROM ledger_entry e JOIN ledger_line l ON l.entry_id = e.id
    JOIN ledger_account a ON a.id = l.account_id
    WHERE e.kind = 'debt_written_off' AND a.kind = 'seller_debt'
    GROUP BY e.seller_id, l.currency
"""


def _seller_accounts() -> list[Found]:
    book: dict[tuple, int] = {}
    for seller_id, currency, kind, total in _rows(_BOOK_BY_SELLER):
        book[(seller_id, currency, kind)] = total
    written_off = {(s, c): total for s, c, total in _rows(_WRITTEN_OFF)}
    expected: dict[tuple, int] = {}
    for seller_id, currency, payable, debt in _rows(_ROWS_BY_SELLER, {"paid": list(PAID)}):
        expected[(seller_id, currency, "seller_payable")] = payable
        off = written_off.get((seller_id, currency), 0)
        expected[(seller_id, currency, "seller_debt")] = debt - off
    found = []
    for key in sorted(set(book) | set(expected), key=str):
        ours, theirs = book.get(key, 0), expected.get(key, 0)
        if ours != theirs:
            seller_id, currency, kind = key
            found.append(
                Found(
                    BreakKind.SELLER_PAYABLE if kind == "seller_payable" else BreakKind.SELLER_DEBT,
                    f"{kind} is {ours} in the book, {theirs} by the transfer rows",
                    seller_id=seller_id,
                    currency=currency,
                )
            )
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
    params = {"paid": list(PAID), "since": since}
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


def _transfers_at_stripe(transfers, gateway: StripeGateway) -> list[Found]:
    found = []
    for row in transfers.exclude(stripe_transfer_id="").order_by("pk").iterator(chunk_size=2000):
        problem = _compare_at_stripe(row, gateway)
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


def _compare_at_stripe(row: SellerTransfer, gateway: StripeGateway) -> str | None:
    try:
        at_stripe = gateway.retrieve_transfer(row.stripe_transfer_id)
    except TransferNotFound:
        return "missing at Stripe"
    except GatewayError as error:
        return f"could not be read: {error.describe()}"
    sent = row.amount - row.amount_netted - row.amount_withheld
    if (at_stripe.amount, at_stripe.amount_reversed) != (sent, row.amount_reversed):
        return (
            f"amount/reversed {sent}/{row.amount_reversed} here, "
            f"{at_stripe.amount}/{at_stripe.amount_reversed} at Stripe"
        )
    return None
