"""The checks read Stripe's transfers in pages of 100 by creation time, and one at a time only
the rows the pages did not return; counted at the sandbox, through the real client."""

import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from ledger.models import BreakKind
from payouts.conf import RateBudgets
from payouts.models import SellerTransfer
from payouts.services.ledger_check import ledger_check
from payouts.services.reconciliation import transfers_compare_with_stripe
from payouts.services.stripe_reads import CLOCK_MARGIN, TransfersAtStripe
from payouts.stripe_api.gateway import get_gateway
from tests.builders import paid_order


@dataclass(frozen=True)
class Reads:
    pages: int
    single: int


def reads_since(sandbox, before: Reads | None = None) -> Reads:
    now = Reads(len(sandbox.calls("transfers.list")), len(sandbox.calls("transfers.retrieve")))
    if before is None:
        return now
    return Reads(now.pages - before.pages, now.single - before.single)


@pytest.fixture
def hundred_and_five_paid(client, sandbox, stripe_client):
    """One order of 105 sellers, each paid at the sandbox: two pages of transfers."""
    order, rows = paid_order(stripe_client, [100 + i for i in range(105)], webhook=client)
    assert {row.status for row in rows} == {"completed"}
    return order, rows


@pytest.mark.django_db
def test_a_check_of_105_transfers_takes_two_pages_and_no_single_read(
    sandbox, hundred_and_five_paid
):
    before = reads_since(sandbox)

    run, breaks = ledger_check(cash=False)

    assert breaks == []
    assert run.transfers_checked == 105
    assert reads_since(sandbox, before) == Reads(pages=2, single=0)


@pytest.mark.django_db
def test_a_row_the_pages_did_not_return_is_read_on_its_own(sandbox, hundred_and_five_paid):
    _, rows = hundred_and_five_paid
    ghost = rows[0]
    SellerTransfer.objects.filter(pk=ghost.pk).update(stripe_transfer_id="tr_neverMadeAtStripe")
    before = reads_since(sandbox)

    _, breaks = ledger_check(stripe_since=timedelta(hours=1), cash=False)

    assert reads_since(sandbox, before) == Reads(pages=2, single=1)
    stripe_breaks = [b for b in breaks if b.kind == BreakKind.TRANSFER_STRIPE]
    assert [(b.transfer_id, b.detail) for b in stripe_breaks] == [
        (ghost.pk, "tr_neverMadeAtStripe: missing at Stripe")
    ]


@pytest.mark.django_db
def test_rows_created_before_the_listed_window_fall_back_to_single_reads(
    sandbox, client, stripe_client
):
    _, rows = paid_order(stripe_client, [1000, 2000, 3000], webhook=client)
    ids = [row.stripe_transfer_id for row in rows]
    before = reads_since(sandbox)

    # A window that opens after these transfers were made: the page returns none of them.
    at_stripe = TransfersAtStripe.read(
        ids=ids,
        created_from=timezone.now() + timedelta(minutes=6),
        gateway=get_gateway(for_checks=True),
        now=timezone.now() + timedelta(minutes=6),
    )
    figures = [at_stripe.transfer(stripe_id) for stripe_id in ids]

    assert figures == [(row.amount, 0) for row in rows]
    assert reads_since(sandbox, before) == Reads(pages=1, single=3)
    assert (at_stripe.counts.pages, at_stripe.counts.listed, at_stripe.counts.single_reads) == (
        1,
        0,
        3,
    )


@pytest.mark.django_db
def test_reconciliation_repairs_a_dashboard_reversal_from_the_page(sandbox, hundred_and_five_paid):
    _, rows = hundred_and_five_paid
    row = rows[7]
    sandbox.reverse_out_of_band(row.stripe_transfer_id, amount=40)
    before = reads_since(sandbox)

    differences = transfers_compare_with_stripe(repair=True, since=timedelta(days=1))

    assert [(d.transfer_id, d.repaired) for d in differences] == [(row.pk, True)]
    # The page's figure differed from ours, so it was read once more before being believed.
    assert reads_since(sandbox, before) == Reads(pages=2, single=1)
    row.refresh_from_db()
    assert row.amount_reversed == 40


@pytest.mark.django_db
def test_nothing_to_check_reads_nothing_at_stripe(sandbox):
    before = reads_since(sandbox)

    transfers_compare_with_stripe(repair=False, since=timedelta(days=1))

    assert reads_since(sandbox, before) == Reads(pages=0, single=0)


@pytest.mark.django_db
def test_a_listed_figure_made_stale_by_a_reversal_during_the_check_is_not_a_break(
    sandbox, client, stripe_client
):
    _, [row] = paid_order(stripe_client, [1000], webhook=client)
    at_stripe = TransfersAtStripe.read(
        ids=[row.stripe_transfer_id],
        created_from=row.created_at,
        gateway=get_gateway(for_checks=True),
    )
    # A reversal made after the page was read, and recorded on our row.
    sandbox.reverse_out_of_band(row.stripe_transfer_id, amount=250)

    figures = at_stripe.transfer(row.stripe_transfer_id, ours=(row.amount, 250))

    assert figures == (row.amount, 250)
    assert (at_stripe.counts.single_reads, at_stripe.counts.confirmations) == (1, 1)


def events_listed(sandbox) -> int:
    return len(sandbox.calls("events.list"))


@pytest.mark.django_db
def test_a_transfer_made_before_the_window_and_reversed_within_it_comes_from_the_events(
    sandbox, client, stripe_client
):
    _, [row] = paid_order(stripe_client, [1000], webhook=client)
    made = stripe_client.v1.transfers.retrieve(row.stripe_transfer_id).created
    time.sleep(1.1)  # the reversal's event a second after the transfer, inside the window
    sandbox.reverse_out_of_band(row.stripe_transfer_id, amount=300)
    before, events_before = reads_since(sandbox), events_listed(sandbox)

    at_stripe = TransfersAtStripe.read(
        ids=[row.stripe_transfer_id],
        # The listed window opens a second after the transfer was made.
        created_from=datetime.fromtimestamp(made + 1, tz=UTC) + CLOCK_MARGIN,
        gateway=get_gateway(for_checks=True),
    )

    assert at_stripe.transfer(row.stripe_transfer_id, ours=(row.amount, 300)) == (row.amount, 300)
    assert reads_since(sandbox, before) == Reads(pages=1, single=0)
    assert events_listed(sandbox) - events_before == 1
    assert (at_stripe.counts.listed, at_stripe.counts.from_events) == (0, 1)


@pytest.mark.django_db
def test_events_are_not_listed_when_the_pages_returned_every_row(sandbox, hundred_and_five_paid):
    events_before = events_listed(sandbox)

    ledger_check(cash=False)

    assert events_listed(sandbox) == events_before


@pytest.mark.django_db
def test_the_checks_read_stripe_on_their_own_smaller_share(
    sandbox, settings, hundred_and_five_paid
):
    # A budget of its own (the limiter's keys follow the API key), the checks' share at 1/s.
    settings.STRIPE_SECRET_KEY = f"sk_test_{uuid.uuid4().hex}"
    settings.PAYOUTS = replace(
        settings.PAYOUTS,
        stripe=replace(
            settings.PAYOUTS.stripe,
            budgets=RateBudgets(
                global_per_second=1000, default_per_second=1000, checks_per_second=1
            ),
        ),
    )
    started = time.monotonic()

    ledger_check(cash=False)

    # Two pages at one a second: the second waited for the checks' window, though the global
    # and the operation's had room.
    assert time.monotonic() - started >= 1.0


@pytest.mark.django_db
def test_a_page_stripe_cannot_answer_leaves_the_rest_to_single_reads(
    sandbox, client, stripe_client
):
    _, rows = paid_order(stripe_client, [1000, 2000], webhook=client)
    sandbox.script("transfers.list", [{"action": "error_500"}])
    sandbox.script("events.list", [{"action": "error_500"}])
    before = reads_since(sandbox)

    run, breaks = ledger_check(cash=False)

    assert breaks == []
    assert run.transfers_checked == 2
    assert reads_since(sandbox, before) == Reads(pages=1, single=2)
