"""Reads of the book: balances and seller statements."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import Coalesce

from ledger.models import AccountKind, EntryKind, Line

K = AccountKind


def account_balance(*, kind: str, seller_id: int | None = None, currency: str) -> int:
    """The balance of one account in ``currency`` (debit positive)."""
    lines = Line.objects.filter(account__kind=kind, currency=currency)
    lines = (
        lines.filter(account__seller_id=seller_id)
        if seller_id
        else lines.filter(account__seller__isnull=True)
    )
    return lines.aggregate(total=Coalesce(Sum("amount"), 0))["total"]


def seller_written_off(*, seller_id: int, currency: str) -> int:
    """The seller's debt in ``currency`` that stands written off.

    Written off by staff, less what was revived because the seller no longer owed it (their shares
    fell)."""
    lines = Line.objects.filter(
        account__kind=K.SELLER_DEBT,
        account__seller_id=seller_id,
        currency=currency,
        entry__kind__in=[EntryKind.DEBT_WRITTEN_OFF, EntryKind.WRITE_OFF_REVERSED],
    )
    return -lines.aggregate(total=Coalesce(Sum("amount"), 0))["total"]


def _seller_lines(seller_id: int) -> QuerySet:
    return Line.objects.filter(
        account__seller_id=seller_id,
        account__kind__in=[K.SELLER_PAYABLE, K.SELLER_DEBT, K.SELLER_RESERVE],
    )


# How a statement names each of the seller's accounts.
_ACCOUNT_NAMES = {K.SELLER_PAYABLE: "payable", K.SELLER_DEBT: "debt", K.SELLER_RESERVE: "reserve"}


def _as_seller_sees(kind: str, total: int) -> int:
    # The payable and reserve accounts are the platform's liabilities: a credit (negative) is
    # owed to the seller. The debt account is an asset: a debit (positive) is owed by them.
    return total if kind == K.SELLER_DEBT else -total


def seller_balances(*, seller_id: int, before: datetime | None = None) -> dict[str, dict]:
    """What the platform owes the seller and what the seller owes it, per currency.

    ``{currency: {"payable": owed to the seller, "debt": owed by the seller}}``, every
    currency the seller has lines in (as of ``before``, when given); with ``"reserve"`` (their
    rolling reserve, owed to them once its days pass) in a currency they have had one in."""
    lines = _seller_lines(seller_id)
    if before is not None:
        lines = lines.filter(entry__posted_at__lt=before)
    totals = lines.values_list("currency", "account__kind").annotate(total=Sum("amount"))
    balances: dict[str, dict] = {}
    for currency, kind, total in totals.order_by("currency"):
        entry = balances.setdefault(currency, {"payable": 0, "debt": 0})
        entry[_ACCOUNT_NAMES[kind]] = _as_seller_sees(kind, total)
    return balances


@dataclass(frozen=True, slots=True)
class StatementLine:
    posted_at: datetime
    kind: str
    account: str  # "payable", "debt" or "reserve"; another app's own (a bank deposit: "bank")
    currency: str
    amount: int  # as the seller sees it: payable owed to them, or debt owed by them
    order_id: int | None
    transfer_id: int | None
    stripe_id: str
    memo: str


def seller_statement_lines(
    *, seller_id: int, start: datetime | None, end: datetime | None
) -> list[StatementLine]:
    """Every line of the seller's accounts posted in ``[start, end)``, oldest first."""
    period = Q()
    if start is not None:
        period &= Q(entry__posted_at__gte=start)
    if end is not None:
        period &= Q(entry__posted_at__lt=end)
    lines = _seller_lines(seller_id).filter(period).select_related("entry", "account")
    book = [
        StatementLine(
            posted_at=line.entry.posted_at,
            kind=line.entry.kind,
            account=_ACCOUNT_NAMES[line.account.kind],
            currency=line.currency,
            amount=_as_seller_sees(line.account.kind, line.amount),
            order_id=line.entry.order_id,
            transfer_id=line.entry.transfer_id,
            stripe_id=line.entry.stripe_id,
            memo=line.entry.memo,
        )
        for line in lines.order_by("entry__posted_at", "entry_id", "pk")
    ]
    others = [
        line
        for source in _STATEMENT_SOURCES
        for line in source(seller_id=seller_id, start=start, end=end)
    ]
    # A stable sort: the book's own order is kept among lines of the same moment.
    return sorted(book + others, key=lambda line: line.posted_at) if others else book


# Lines other apps add to a seller's statement that are not the book's money (a bank deposit
# of the seller's own Stripe balance): each source gives its lines of ``[start, end)``, with an
# ``account`` of its own, never counted in the balances. The book does not import those apps;
# they register their source when they load (``AppConfig.ready``).
StatementSource = Callable[..., list[StatementLine]]
_STATEMENT_SOURCES: list[StatementSource] = []


def statement_source_register(source: StatementSource) -> None:
    if source not in _STATEMENT_SOURCES:
        _STATEMENT_SOURCES.append(source)


# What other apps have under way against a seller's debt (an account debit sent to Stripe and
# not answered yet): that part will be settled by it, so nothing else may settle it meanwhile.
# Registered when those apps load, as the statement sources are.
DebtClaim = Callable[..., int]
_DEBT_CLAIMS: list[DebtClaim] = []


def debt_claim_register(claim: DebtClaim) -> None:
    if claim not in _DEBT_CLAIMS:
        _DEBT_CLAIMS.append(claim)


def seller_debt_claimed(*, seller_id: int, currency: str) -> int:
    """The part of the seller's debt in ``currency`` something under way will settle."""
    return sum(claim(seller_id=seller_id, currency=currency) for claim in _DEBT_CLAIMS)


@dataclass(frozen=True, slots=True)
class AgedDebt:
    """One seller's debt in one currency, and how much of it is older than the age asked."""

    seller_id: int
    currency: str
    owed: int
    aged: int


def seller_debts_aged(*, now: datetime, older_than: timedelta) -> list[AgedDebt]:
    """Every seller's debt, with the part of it older than ``older_than``.

    Whatever reduces a debt (netting, a debit, a write-off) pays its oldest part first, so the
    part older than the age is what is owed now less what became debt since then (never below
    zero). Read from the debt accounts' lines only, through their account index."""
    since = now - older_than
    rows = (
        Line.objects.filter(account__kind=K.SELLER_DEBT)
        .values_list("account__seller_id", "currency")
        .annotate(
            owed=Sum("amount"),
            recent=Coalesce(Sum("amount", filter=Q(amount__gt=0, entry__posted_at__gt=since)), 0),
        )
        .filter(owed__gt=0)
        .order_by("currency", "account__seller_id")
    )
    return [
        AgedDebt(seller_id, currency, owed, max(owed - recent, 0))
        for seller_id, currency, owed, recent in rows
    ]


# The ages the console and /metrics count debts by (days).
DEBT_AGES = (30, 60, 90)


def debt_aging(*, now: datetime) -> dict[int, dict[str, tuple[int, int]]]:
    """Per age in ``DEBT_AGES``, per currency: how many sellers owe debt that old, and its total.

    One statement: each debt account's balance and what became debt within each age (as in
    ``seller_debts_aged``, the oldest part is what is left once the recent part is taken)."""
    recent = {
        f"recent_{days}": Coalesce(
            Sum("amount", filter=Q(amount__gt=0, entry__posted_at__gt=now - timedelta(days))), 0
        )
        for days in DEBT_AGES
    }
    rows = (
        Line.objects.filter(account__kind=K.SELLER_DEBT)
        .values("account__seller_id", "currency")
        .annotate(owed=Sum("amount"), **recent)
        .filter(owed__gt=0)
    )
    aging: dict[int, dict[str, tuple[int, int]]] = {days: {} for days in DEBT_AGES}
    for row in rows:
        for days in DEBT_AGES:
            aged = row["owed"] - row[f"recent_{days}"]
            if aged > 0:
                count, total = aging[days].get(row["currency"], (0, 0))
                aging[days][row["currency"]] = (count + 1, total + aged)
    return aging
