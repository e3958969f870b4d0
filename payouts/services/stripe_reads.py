"""How the checks read many transfers at Stripe: in pages, not one call each.

Reconciliation and ``ledger_check`` compare a day (or a week) of transfers with Stripe. Read one
at a time that is a call per transfer (312,000 a day at 300,000 transfers a day, three and a half
hours of a 25/s operation's budget); listed by creation time, a hundred to a call, it is about a
hundredth of that. ``TransfersAtStripe`` lists every transfer Stripe created in the checked
window and keeps the figures of the ones asked about. A transfer created before the window but
changed within it is almost always one reversed since (a refund of an earlier day's order): if
any is left, the window's ``transfer.reversed`` events are listed too (a hundred to a call, each
carrying its transfer; the newest per transfer wins). Only what neither returned (a transfer
missing at Stripe, one changed otherwise) is read on its own, and so is a listed figure that
differs from ours, to confirm the difference before reporting it.
"""

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from payouts.stripe_api.gateway import GatewayError, StripeGateway, StripeTransfer

logger = logging.getLogger(__name__)

# Our clock and Stripe's may differ, and a row's ``created_at`` comes before its transfer is sent:
# the window opens this much before the earliest row and closes this much after now.
CLOCK_MARGIN = timedelta(minutes=5)


@dataclass
class ReadCounts:
    pages: int = 0  # transfer list requests
    listed: int = 0  # transfers the pages returned
    event_pages: int = 0  # transfer.reversed event list requests
    from_events: int = 0  # wanted transfers the events gave (not in the transfer pages)
    single_reads: int = 0  # one-transfer requests: what the pages did not return, or confirm
    confirmations: int = 0  # of those, re-reads of a page's figures that differed from ours

    @property
    def calls(self) -> int:
        return self.pages + self.event_pages + self.single_reads


class TransfersAtStripe:
    """The Stripe figures of a set of transfers, read a page of 100 at a time by creation
    window; ``transfer(id)`` answers from the pages, else with one read of its own (raising the
    gateway's ``TransferNotFound`` or ``GatewayError`` as ``retrieve_transfer`` does)."""

    def __init__(self, gateway: StripeGateway):
        self._gateway = gateway
        self._figures: dict[str, tuple[int, int]] = {}
        self.counts = ReadCounts()

    @classmethod
    def read(
        cls,
        *,
        ids: Iterable[str],
        created_from: datetime | None,
        gateway: StripeGateway,
        now: datetime | None = None,
    ) -> "TransfersAtStripe":
        """List the transfers created from ``created_from`` (less a margin) until now and keep
        those in ``ids``. ``None``: nothing is listed (no row to check)."""
        reader = cls(gateway)
        wanted = set(ids)
        if not wanted or created_from is None:
            return reader
        now = now or timezone.now()
        start = int((created_from - CLOCK_MARGIN).timestamp())
        end = int((now + CLOCK_MARGIN).timestamp())
        for page in reader._pages(gateway.transfers_created_between(start=start, end=end)):
            reader.counts.pages += 1
            reader.counts.listed += len(page)
            for transfer in page:
                if transfer.id in wanted:
                    reader._figures[transfer.id] = (transfer.amount, transfer.amount_reversed)
        left = wanted - reader._figures.keys()
        if left:
            reader._read_reversal_events(left, start=start, end=end)
        return reader

    def _read_reversal_events(self, left: set[str], *, start: int, end: int) -> None:
        # Newest first: the first event seen for a transfer carries its latest amount reversed
        # (a reversal made after this read is caught by the confirming read of a difference).
        pages = self._gateway.transfers_reversed_between(start=start, end=end)
        for page in self._pages(pages):
            self.counts.event_pages += 1
            for transfer in page:
                if transfer.id in left and transfer.id not in self._figures:
                    self._figures[transfer.id] = (transfer.amount, transfer.amount_reversed)
                    self.counts.from_events += 1

    @staticmethod
    def _pages(pages: Iterator[list[StripeTransfer]]) -> Iterator[list[StripeTransfer]]:
        """The pages until one cannot be read: then what is left is read one at a time (each
        row's own error, if any, becomes its own difference) rather than the check failing."""
        try:
            yield from pages
        except GatewayError as error:
            logger.warning(
                "listing at Stripe failed; the rest is read one at a time",
                extra={"error": error.describe()},
            )

    def transfer(
        self, stripe_transfer_id: str, *, ours: tuple[int, int] | None = None
    ) -> tuple[int, int]:
        """``(amount, amount_reversed)`` at Stripe: from the pages, else read now. A page's
        figures that differ from ``ours`` are read again before they are believed: the page
        may predate a reversal made while the check ran (a check of a busy day lists for
        minutes), and a false difference would send staff after nothing."""
        figures = self._figures.get(stripe_transfer_id)
        if figures is not None and (ours is None or figures == ours):
            return figures
        if figures is not None:
            self.counts.confirmations += 1
        self.counts.single_reads += 1
        read = self._gateway.retrieve_transfer(stripe_transfer_id)
        return read.amount, read.amount_reversed
