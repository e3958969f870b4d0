"""Read-only figures of the console: its dashboard and "needs attention" page.

What the operator's console shows: the admin's first page (the dashboard) and its "needs
attention" page. Reads only; the admin site renders them (``console/admin_site.py``).

Every query here is served by a partial index whose size follows the backlog (rows still to
send or to reverse, rows a person must look at) or reads the counters the database keeps (rows
per status, moves per hour), so the page costs the same at millions of settled rows and events
as at a thousand.
"""

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Count, F, Sum

import ledger.selectors
from config.money import format_money
from ledger.models import Account, AccountKind, Break, CheckRun, Line
from marketplace.models import CLOSED_DISPUTE_STATUSES, Dispute
from payouts import selectors
from payouts.models import (
    TO_TAKE_BACK,
    UNSENT,
    Payout,
    ReleaseState,
    ReserveRelease,
    SellerTransfer,
    TransferCount,
    TransferCountKind,
    WebhookEvent,
    WebhookOutcome,
)
from payouts.selectors import Attention
from payouts.transfer.transitions import TransferStatus

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Window:
    key: str
    label: str
    span: timedelta


WINDOWS = {
    window.key: window
    for window in (
        Window("24h", "last 24 hours", timedelta(hours=24)),
        Window("7d", "last 7 days", timedelta(days=7)),
    )
}
DEFAULT_WINDOW = WINDOWS["24h"]

# --- Money at risk ------------------------------------------------------------------------


@dataclass(frozen=True)
class Debt:
    seller_id: int
    seller_name: str
    currency: str
    amount: int


def seller_debts() -> list[Debt]:
    """The sellers' debts to the platform, from the book's debt accounts.

    Every seller who owes the platform, per currency, largest first. Read from the book's
    debt accounts (made only for sellers who ever owed), whose lines are only the refused
    reversals, nettings and write-offs: fetched by account, through the lines' account index,
    never by reading every line of the book."""
    accounts = list(
        Account.objects.filter(kind=AccountKind.SELLER_DEBT).values_list("pk", flat=True)
    )
    rows = (
        Line.objects.filter(account_id__in=accounts)
        .values_list("account__seller_id", "account__seller__name", "currency")
        .annotate(owed=Sum("amount"))
        .filter(owed__gt=0)
        .order_by("currency", "-owed", "account__seller_id")
    )
    return [Debt(seller, name, currency, owed) for seller, name, currency, owed in rows]


@dataclass(frozen=True)
class Risk:
    """Money not yet where it belongs, in one currency, and the rows holding it.

    Money that is not where it should end up yet, per currency (minor units), with how many
    rows (transfers, or sellers for debts) hold it."""

    key: str
    label: str
    amounts: dict[str, int]
    rows: dict[str, int]
    # Where the rows are listed: a query of the transfer list, or a "needs attention" anchor.
    listed: str = ""


def money_at_risk(*, debts: list[Debt]) -> list[Risk]:
    """The dashboard's money at risk, per currency and kind.

    Reversals still to make, payments Stripe keeps refusing or that wait on purpose, and the
    sellers' debts."""
    return [
        _per_currency(
            "reversals_pending",
            "Reversals pending (to take back from sellers)",
            TransferStatus.REVERSAL_PENDING,
            TO_TAKE_BACK,
        ),
        _per_currency(
            "transfers_failing",
            "Transfers failing (sellers not paid yet)",
            TransferStatus.FAILED,
            UNSENT,
        ),
        _per_currency(
            "held", "Held (sellers not paid yet, on purpose)", TransferStatus.HELD, UNSENT
        ),
        _seller_debt_risk(debts),
        _disputes_risk(),
        _reserves_risk(),
    ]


def _per_currency(key: str, label: str, status: str, amount) -> Risk:
    rows = (
        SellerTransfer.objects.filter(status=status)
        .values_list("currency")
        .annotate(n=Count("*"), total=Sum(amount))
        .order_by("currency")
    )
    return Risk(
        key=key,
        label=label,
        amounts={currency: total for currency, _, total in rows},
        rows={currency: n for currency, n, _ in rows},
        listed=f"?status__exact={status}",
    )


def _seller_debt_risk(debts: list[Debt]) -> Risk:
    amounts: dict[str, int] = defaultdict(int)
    sellers: dict[str, int] = defaultdict(int)
    for debt in debts:
        amounts[debt.currency] += debt.amount
        sellers[debt.currency] += 1
    label = "Seller debts (owed to the platform)"
    return Risk("seller_debts", label, dict(amounts), dict(sellers), listed="#debts")


def _disputes_risk() -> Risk:
    open_disputes = selectors.open_disputes_by_currency()
    return Risk(
        "disputes_open",
        "Disputes open (the buyers' banks are disputing)",
        {currency: amount for currency, (_, amount) in open_disputes.items()},
        {currency: count for currency, (count, _) in open_disputes.items()},
        listed="#disputes",
    )


def _reserves_risk() -> Risk:
    held = selectors.reserves_held_by_currency()
    return Risk(
        "reserves_held",
        "Reserves held (kept back from sellers until their days pass)",
        {currency: amount for currency, (_, amount) in held.items()},
        {currency: count for currency, (count, _) in held.items()},
    )


def disputes_open(*, limit: int) -> list[Dispute]:
    """The disputes still open, most urgent first.

    Open disputes, those whose evidence is due soonest first (the table holds only the
    disputes there ever were: a few per thousand payments)."""
    return list(
        Dispute.objects.exclude(status__in=CLOSED_DISPUTE_STATUSES)
        .select_related("order")
        .order_by(F("evidence_due_by").asc(nulls_last=True), "pk")[:limit]
    )


# --- Rows per status ----------------------------------------------------------------------


@dataclass(frozen=True)
class StatusCount:
    status: str
    now: int  # rows in the status now (the trigger-kept counters)
    entered: int  # rows moved into it during the window


# --- Moves by hour, and the backlog they leave ---------------------------------------------

Moves = dict[datetime, dict[tuple[str, str], int]]


def moves_by_hour(*, since: datetime) -> Moves:
    """Transfer moves per hour and per (from, to) status, from the hourly counters.

    Audit events since ``since`` per hour (UTC) and (from, to), from the counters the
    triggers keep per hour (``TransferCount``): a few thousand rows however many events the
    hours hold. ``since`` is at most ``HOURLY_FOR`` ago."""
    rows = (
        TransferCount.objects.filter(kind=TransferCountKind.MOVES, hour__gte=since)
        .values_list("hour", "from_status", "status")
        .annotate(n=Sum("n"))
        .order_by()
    )
    moves: Moves = defaultdict(dict)
    for hour, from_status, to_status, n in rows:
        if n:
            moves[hour.astimezone(UTC)][(from_status, to_status)] = n
    return moves


# How the chart groups the moves: (key, label), drawn in this order.
MOVE_KINDS = (
    ("paid", "paid"),
    ("scheduled", "reversal scheduled"),
    ("reversed", "reversed"),
    ("retried", "attempt failed or updated"),
    ("ended", "gave up or refused"),
    ("other", "other"),
)


def move_kind(from_status: str, to_status: str) -> str:
    if from_status == to_status or to_status == TransferStatus.FAILED:
        return "retried"
    if to_status == TransferStatus.COMPLETED:
        return "paid"
    if to_status == TransferStatus.REVERSAL_PENDING:
        return "scheduled"
    if to_status in (TransferStatus.REVERSED, TransferStatus.PARTIALLY_REVERSED):
        return "reversed"
    if to_status in (TransferStatus.PERMANENTLY_FAILED, TransferStatus.REVERSAL_REFUSED):
        return "ended"
    return "other"


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    values: list[int]


@dataclass(frozen=True)
class Chart:
    title: str
    hours: list[datetime]  # the start of each hour; the last one is the hour now running
    series: list[Series]


def window_hours(*, now: datetime, window: Window) -> list[datetime]:
    """The start of each hour of the window, in UTC, the last one the hour now running."""
    current = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    count = int(window.span / HOUR)
    return [current - HOUR * (count - 1 - i) for i in range(count)]


def moves_chart(hours: list[datetime], moves: Moves) -> Chart:
    totals = {key: [0] * len(hours) for key, _ in MOVE_KINDS}
    for index, hour in enumerate(hours):
        for (from_status, to_status), n in moves.get(hour, {}).items():
            totals[move_kind(from_status, to_status)][index] += n
    series = [Series(key, label, totals[key]) for key, label in MOVE_KINDS]
    return Chart("Moves per hour", hours, series)


# The backlog the chart draws: rows waiting for a worker (a reversal to make, a payment to
# retry). Rows waiting on purpose, or for a person, are counted elsewhere.
BACKLOG = (
    (TransferStatus.REVERSAL_PENDING, "reversals pending"),
    (TransferStatus.FAILED, "transfers failed"),
)


def backlog_chart(hours: list[datetime], moves: Moves, now_counts: dict[str, int]) -> Chart:
    """The chart of each status's row count over the last hours.

    Each status's rows at the end of each hour, walked back from the count now: an hour's
    moves into the status added rows, its moves out of it removed them."""
    series = []
    for status, label in BACKLOG:
        level = now_counts.get(status, 0)
        values = []
        for hour in reversed(hours):
            values.append(level)
            level = max(level - _net_inflow(status, moves.get(hour, {})), 0)
        series.append(Series(status, label, values[::-1]))
    return Chart("Backlog", hours, series)


def _net_inflow(status: str, edges: dict[tuple[str, str], int]) -> int:
    into = sum(n for (a, b), n in edges.items() if b == status and a != status)
    out_of = sum(n for (a, b), n in edges.items() if a == status and b != status)
    return into - out_of


def entered_in_window(moves: Moves) -> dict[str, int]:
    entered: dict[str, int] = defaultdict(int)
    for edges in moves.values():
        for (from_status, to_status), n in edges.items():
            if from_status != to_status:
                entered[to_status] += n
    return entered


# --- The pages ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dashboard:
    now: datetime
    window: Window
    risks: list[Risk]
    statuses: list[StatusCount]
    oldest_due_reversal: timedelta
    oldest_due_send: timedelta
    attention: dict[Attention, int]
    debtors: int
    # Sellers whose transfers are held for their disputes until staff release them.
    risk_held_sellers: int
    # Per age in days (30, 60, 90), per currency: (sellers, minor units) of debt that old.
    debt_aging: dict[int, dict[str, tuple[int, int]]]
    open_disputes: int
    failed_webhooks: int
    check: CheckRun | None
    moves: Chart
    backlog: Chart


def dashboard(*, now: datetime, window: Window = DEFAULT_WINDOW) -> Dashboard:
    debts = seller_debts()
    hours = window_hours(now=now, window=window)
    moves = moves_by_hour(since=hours[0])
    now_counts = selectors.transfer_counts_by_status()
    entered = entered_in_window(moves)
    statuses = [
        StatusCount(status, now_counts.get(status, 0), entered.get(status, 0))
        for status in TransferStatus.values
    ]
    risks = money_at_risk(debts=debts)
    disputes = next(risk for risk in risks if risk.key == "disputes_open")
    return Dashboard(
        now=now,
        window=window,
        risks=risks,
        statuses=statuses,
        oldest_due_reversal=selectors.oldest_due_reversal_age(now=now),
        oldest_due_send=selectors.oldest_due_send_age(now=now),
        attention=selectors.attention_counts(now=now),
        debtors=len({debt.seller_id for debt in debts}),
        risk_held_sellers=len({row["seller_id"] for row in selectors.risk_held_sellers()}),
        debt_aging=ledger.selectors.debt_aging(now=now),
        open_disputes=sum(disputes.rows.values()),
        failed_webhooks=selectors.failed_webhook_events(limit=0)[0],
        check=selectors.latest_check_run(),
        moves=moves_chart(hours, moves),
        backlog=backlog_chart(hours, moves, now_counts),
    )


# How each reason's rows are listed: the most urgent first. Each reason names its status, so
# its rows are found through that status's partial index, then sorted.
_ATTENTION_ORDER = {
    Attention.FAILING_NOW: "-updated_at",
    Attention.UNPAID_PENDING: "next_retry_at",
    Attention.UNPAID_FAILED: "created_at",
    Attention.HELD_ACCOUNT: "updated_at",
    Attention.FAILING_REVERSAL: "updated_at",
    Attention.STALE_REVERSAL: "updated_at",
    Attention.REVERSAL_REFUSED: "-updated_at",
    Attention.GAVE_UP_UNPAID: "-updated_at",
    Attention.GAVE_UP_REVERSAL: "-updated_at",
    Attention.PERMANENTLY_FAILED: "-updated_at",
}


BREAKS_SHOWN = 50
WEBHOOKS_SHOWN = 20
DISPUTES_SHOWN = 50
PAYOUTS_SHOWN = 50
RELEASES_SHOWN = 50


@dataclass(frozen=True)
class AttentionGroup:
    reason: Attention
    count: int
    rows: list[SellerTransfer]


@dataclass(frozen=True)
class NeedsAttention:
    now: datetime
    groups: list[AttentionGroup]
    debts: list[Debt]
    risk_held: list[dict]  # per seller and currency: rows held for risk, amount, since
    debt_aging: dict[int, dict[str, tuple[int, int]]]
    check: CheckRun | None
    breaks: list[Break]  # the latest check's first breaks
    disputes: list[Dispute]  # the open disputes whose evidence is due soonest
    # Sellers' bank payouts the bank refused, or whose contents could not be read or do not add
    # up: how many, and the newest.
    payouts_count: int
    payouts: list[Payout]
    failed_webhooks: int  # Stripe events whose handling failed
    webhooks: list[WebhookEvent]  # the newest of them
    # Reserve releases that gave up after their retries: how many, and the oldest.
    failed_releases: int
    releases: list[ReserveRelease]


def needs_attention(*, now: datetime, rows_per_reason: int = 10) -> NeedsAttention:
    counts = selectors.attention_counts(now=now)
    groups = []
    for reason, count in counts.items():
        rows = (
            selectors.transfers_needing_attention(now=now, reason=reason)
            .select_related("order", "seller")
            .order_by(_ATTENTION_ORDER[reason], "pk")[:rows_per_reason]
        )
        groups.append(AttentionGroup(reason, count, list(rows) if count else []))
    payouts_count, payouts = selectors.payouts_needing_attention(limit=PAYOUTS_SHOWN)
    check = selectors.latest_check_run()
    breaks = (
        list(check.breaks.select_related("seller").order_by("pk")[:BREAKS_SHOWN]) if check else []
    )
    failed_webhooks, webhooks = selectors.failed_webhook_events(limit=WEBHOOKS_SHOWN)
    failed_releases, releases = selectors.failed_reserve_releases(limit=RELEASES_SHOWN)
    return NeedsAttention(
        now=now,
        failed_webhooks=failed_webhooks,
        webhooks=webhooks,
        failed_releases=failed_releases,
        releases=releases,
        groups=groups,
        debts=seller_debts(),
        risk_held=selectors.risk_held_sellers(),
        debt_aging=ledger.selectors.debt_aging(now=now),
        check=check,
        breaks=breaks,
        disputes=disputes_open(limit=DISPUTES_SHOWN),
        payouts_count=payouts_count,
        payouts=payouts,
    )


# --- "Needs attention" as rows, for its CSV export ------------------------------------------

ATTENTION_CSV_HEADER = (
    "section",
    "reason",
    "id",
    "order",
    "seller",
    "status",
    "amount",
    "attempts",
    "next attempt",
    "updated",
    "detail",
)


def needs_attention_rows(*, now: datetime, label) -> Iterator[tuple]:
    """Every row "needs attention" stands for, one tuple each in ``ATTENTION_CSV_HEADER``'s order.

    Not only the first ten of each reason: the transfers with their reason (``label`` names
    it), the sellers in debt, the open disputes, Stripe's failed events and the latest ledger
    check's breaks. Amounts as the console shows them."""
    yield from _transfer_rows(now=now, label=label)
    yield from _debt_rows()
    yield from _dispute_rows()
    yield from _failed_event_rows()
    yield from _failed_release_rows()
    yield from _break_rows()


def _csv_row(section: str, **cells) -> tuple:
    """One row of the export: ``cells`` by column name (underscores for spaces), blank if absent."""
    named = {"section": section, **{key.replace("_", " "): value for key, value in cells.items()}}
    return tuple(named.get(column, "") for column in ATTENTION_CSV_HEADER)


def _transfer_rows(*, now: datetime, label) -> Iterator[tuple]:
    transfers = selectors.transfers_with_attention(
        now=now, queryset=selectors.transfers_needing_attention(now=now)
    ).select_related("seller")
    for row in transfers.order_by("-id").iterator(chunk_size=2000):
        yield _csv_row(
            "transfer",
            reason=label(row.attention),
            id=row.pk,
            order=row.order_id,
            seller=row.seller.name,
            status=row.status,
            amount=format_money(row.amount, row.currency),
            attempts=row.retry_count,
            next_attempt=row.next_retry_at.isoformat() if row.next_retry_at else "",
            updated=row.updated_at.isoformat(),
            detail=": ".join(p for p in (row.end_reason, row.held_reason, row.error_message) if p),
        )


def _debt_rows() -> Iterator[tuple]:
    for debt in seller_debts():
        yield _csv_row(
            "seller in debt",
            id=debt.seller_id,
            seller=debt.seller_name,
            amount=format_money(debt.amount, debt.currency),
        )


def _dispute_rows() -> Iterator[tuple]:
    for dispute in disputes_open(limit=10_000):
        due = dispute.evidence_due_by.isoformat() if dispute.evidence_due_by else ""
        yield _csv_row(
            "dispute open",
            reason=dispute.reason,
            id=dispute.stripe_dispute_id,
            order=dispute.order_id,
            status=dispute.status,
            amount=format_money(dispute.amount, dispute.currency),
            updated=dispute.updated_at.isoformat(),
            detail=f"evidence due by {due}" if due else "",
        )


def _failed_event_rows() -> Iterator[tuple]:
    failed = WebhookEvent.objects.filter(outcome=WebhookOutcome.FAILED).order_by("-id")
    for event in failed.iterator(chunk_size=2000):
        yield _csv_row(
            "Stripe event failed",
            reason=event.type,
            id=event.stripe_event_id,
            status=event.outcome,
            attempts=event.attempts,
            updated=event.received_at.isoformat(),
            detail=event.error,
        )


def _failed_release_rows() -> Iterator[tuple]:
    failed = ReserveRelease.objects.filter(state=ReleaseState.FAILED).select_related("seller")
    for release in failed.order_by("pk").iterator(chunk_size=2000):
        yield _csv_row(
            "reserve release failed",
            reason="give-back" if release.given_back_for_id else "release",
            id=release.pk,
            seller=release.seller.name,
            status=release.state,
            amount=format_money(release.amount, release.currency),
            attempts=release.retry_count,
            updated=release.updated_at.isoformat(),
            detail=release.error_message,
        )


def _break_rows() -> Iterator[tuple]:
    check = selectors.latest_check_run()
    if check is None:
        return
    for item in check.breaks.select_related("seller").order_by("pk").iterator():
        yield _csv_row(
            "ledger break",
            reason=item.kind,
            id=item.transfer_id or "",
            seller=item.seller.name if item.seller_id else "",
            updated=check.finished_at.isoformat(),
            detail=f"{item.currency.upper()}: {item.detail}" if item.currency else item.detail,
        )
