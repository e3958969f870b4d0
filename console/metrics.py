"""Prometheus metrics, exposed at ``GET /metrics``.

Two kinds:

- **Read at scrape time from the database** (``TransferStateCollector``): transitions by
  from/to and rows per status (from the counters database triggers keep in the same
  transaction as each change, so they are right whichever process made the move, and a scrape
  reads a few dozen rows however big the tables grow), due rows and the age of the oldest due
  reversal (on the workers' partial indexes). Every web process answers the same. With
  ``DATABASE_REPLICA_URL`` set these reads go to the replica (``config.db_router``).
- **Counted in the process that does the work** (``payouts.telemetry``): Stripe API calls by
  operation and outcome. The gateway runs in Celery workers as well as in the web app, so a
  scrape of one process sees only that process's calls unless Prometheus' multiprocess mode is
  on: set ``PROMETHEUS_MULTIPROC_DIR`` to one empty directory shared by the web app and the
  workers on a host (``make run`` does) and every process's counts are summed at scrape time.
  Without it the counter covers the answering process only.
"""

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from django.db import connections, transaction
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

import ledger.selectors
from config.db_router import replica_reads
from payouts import selectors, telemetry  # noqa: F401  (registers the counters)
from payouts.transfer.transitions import TransferStatus

# A scrape must never become the database's problem: its queries give up after this long.
SCRAPE_STATEMENT_TIMEOUT_MS = 5_000


def _family(kind, name: str, documentation: str, labels: list[str], items) -> Metric:
    family = kind(name, documentation, labels=labels)
    for label_values, value in sorted(items):
        family.add_metric(list(label_values), value)
    return family


@dataclass(frozen=True)
class _Figures:
    """What one scrape reads, in one short read-only transaction."""

    transitions: dict
    by_status: dict
    due: dict
    oldest_due: timedelta
    over_reversed: int
    ledger_breaks: int
    disputes: dict
    debt_aging: dict
    risk_held_sellers: int


def _read_figures(*, now) -> _Figures:
    with replica_reads() as alias, transaction.atomic(using=alias):
        with connections[alias].cursor() as cursor:
            cursor.execute(f"SET LOCAL statement_timeout = {SCRAPE_STATEMENT_TIMEOUT_MS}")
        return _Figures(
            transitions=selectors.transition_counts(),
            by_status=selectors.transfer_counts_by_status(),
            due=selectors.due_transfer_counts(now=now),
            oldest_due=selectors.oldest_due_reversal_age(now=now),
            over_reversed=selectors.over_reversed_count(),
            ledger_breaks=selectors.ledger_breaks_last_run(),
            disputes=selectors.open_disputes_by_currency(),
            debt_aging=ledger.selectors.debt_aging(now=now),
            risk_held_sellers=len({row["seller_id"] for row in selectors.risk_held_sellers()}),
        )


def _transfer_families(figures: _Figures) -> Iterator[Metric]:
    yield _family(
        CounterMetricFamily,
        "payouts_transfer_transitions",
        "Seller transfer transitions by from/to status, same-state retries included "
        "(one per audit event, counted as each is written).",
        ["from_status", "to_status"],
        figures.transitions.items(),
    )
    yield _family(
        GaugeMetricFamily,
        "payouts_transfers",
        "Seller transfer rows per status.",
        ["status"],
        (((status,), count) for status, count in figures.by_status.items()),
    )
    yield _family(
        GaugeMetricFamily,
        "payouts_transfers_due",
        "Rows a worker would take now (next_retry_at <= now): reversal_pending for the "
        "reversal worker, failed for the transfer retry worker.",
        ["status"],
        (((status,), count) for status, count in figures.due.items()),
    )
    yield GaugeMetricFamily(
        "payouts_oldest_due_reversal_age_seconds",
        f"Seconds the oldest due {TransferStatus.REVERSAL_PENDING} row has been due "
        "(0 when none is due). Growing means the reversal worker is not keeping up.",
        value=figures.oldest_due.total_seconds(),
    )
    yield GaugeMetricFamily(
        "payouts_transfers_over_reversed",
        "Seller transfers Stripe has reversed beyond their share of the order's refunds "
        "(a reversal made outside this service, or a key Stripe forgot). Alert on > 0.",
        value=figures.over_reversed,
    )


def _money_families(figures: _Figures) -> Iterator[Metric]:
    yield _family(
        GaugeMetricFamily,
        "payouts_open_disputes",
        "Disputes not closed yet, per currency.",
        ["currency"],
        (((currency,), count) for currency, (count, _) in figures.disputes.items()),
    )
    yield _family(
        GaugeMetricFamily,
        "payouts_disputed_amount_at_risk",
        "Minor units under open disputes (Stripe holds them from the platform), per currency.",
        ["currency"],
        (((currency,), amount) for currency, (_, amount) in figures.disputes.items()),
    )
    yield GaugeMetricFamily(
        "payouts_ledger_breaks",
        "Breaks the latest ledger_check found between the book, the transfer rows and "
        "Stripe (listed in the admin). Alert on > 0.",
        value=figures.ledger_breaks,
    )


def _risk_families(figures: _Figures) -> Iterator[Metric]:
    aging = [
        ((str(days), currency), figure)
        for days, by_currency in figures.debt_aging.items()
        for currency, figure in by_currency.items()
    ]
    yield _family(
        GaugeMetricFamily,
        "payouts_debtors_aged",
        "Sellers owing debt older than age_days (30, 60, 90), per currency: the recovery "
        "ladder (netting, account debits) did not settle it.",
        ["age_days", "currency"],
        ((labels, count) for labels, (count, _) in aging),
    )
    yield _family(
        GaugeMetricFamily,
        "payouts_debt_aged_amount",
        "Minor units of seller debt older than age_days (30, 60, 90), per currency.",
        ["age_days", "currency"],
        ((labels, amount) for labels, (_, amount) in aging),
    )
    yield GaugeMetricFamily(
        "payouts_risk_held_sellers",
        "Sellers with transfers held for their disputes (reason risk) until staff release them.",
        value=figures.risk_held_sellers,
    )


class TransferStateCollector:
    """Seller-transfer gauges and transition counters, read from Postgres on each scrape."""

    def collect(self) -> Iterator[Metric]:
        figures = _read_figures(now=timezone.now())
        yield from _transfer_families(figures)
        yield from _money_families(figures)
        yield from _risk_families(figures)


class _ProcessMetrics:
    """Prometheus collector adding this process's own metrics to a scrape.

    Forwards this process's own registry (the Stripe counter, process and platform
    metrics) into a scrape's registry."""

    def collect(self) -> Iterator[Metric]:
        return REGISTRY.collect()


def metrics_exposition() -> tuple[bytes, str]:
    """The text of one scrape and its content type."""
    registry = CollectorRegistry()
    registry.register(TransferStateCollector())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_ProcessMetrics())
    return generate_latest(registry), CONTENT_TYPE_LATEST
