"""Two workers sweeping releases or debits never send one row at once, slow calls or not.

Found by the reserve and debit chaos test (``tests/test_chaos.py``), reduced here. A sweep
used to claim a batch of rows under one lease and work through them one Stripe call at a time:
when the batch outlasted the lease, another worker claimed the row the first was still sending
and called Stripe with the same key (Stripe answered 409, the key in use); on the row's last
retry that recorded it failed, and the first worker's success was then skipped. An account
debit was taken twice (the book kept the debt, and the next debit took it again); a release
was paid while it said failed and the book kept the reserve. Each sweep now claims one row at
a time, its lease starting as its call does, and Stripe's success wins over a row given up."""

import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from django.db import connection

from ledger.selectors import seller_balances
from payouts.models import AccountDebit, DebitState, ReleaseState, ReserveRelease
from payouts.services.debits import debts_debit_due
from payouts.services.reserves import reserves_release_due
from tests.builders import debts_backlog, reserves_backlog

# Each Stripe call of the batch takes 1.5 s (under the 2 s timeout); the lease is the timeout
# and 0.2 s, so it runs out while the first worker's second call is in flight (1.5 s to 3 s).
CALL_SECONDS = 1.5
LEASE_MARGIN = timedelta(milliseconds=200)


@pytest.fixture
def short_lease_no_retries(settings):
    """A claim lease just over one call, and no retries left (a row on its last one)."""
    conf = settings.PAYOUTS
    settings.PAYOUTS = replace(
        conf,
        claim_lease_margin=LEASE_MARGIN,
        debt_debit_after=timedelta(0),
        debt_debit_retry=replace(conf.debt_debit_retry, max_retries=0),
        transfer_retry=replace(conf.transfer_retry, max_retries=0),
    )


def race(sweep, sandbox) -> list[dict]:
    """The first worker sweeps (claiming every due row, each call slow); the second sweeps
    again and again until it claims something, which it can once the lease ran out."""
    sandbox.set_faults("transfers.create", latency_ms=CALL_SECONDS * 1000)
    outcomes: list[dict] = []

    def first() -> None:
        try:
            outcomes.append(sweep())
        finally:
            connection.close()

    def second() -> None:
        try:
            deadline = time.monotonic() + 4 * CALL_SECONDS
            while time.monotonic() < deadline:
                done = sweep()
                if done:
                    outcomes.append(done)
                    return
                time.sleep(0.05)
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
        time.sleep(0.2)
    for thread in threads:
        thread.join()
    sandbox.clear_faults("transfers.create")
    return outcomes


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_debit_reclaimed_after_its_lease_is_made_once_and_the_book_takes_it_from_the_debt(
    client, sandbox, stripe_client, short_lease_no_retries
):
    sellers = debts_backlog(client, sandbox, stripe_client, 2, short_every=100)
    for seller in sellers:  # enough for the debt twice over: a second debit would be made
        sandbox.adjust_account(seller.stripe_account_id, 5000)
    debts = {s.pk: seller_balances(seller_id=s.pk)["usd"]["debt"] for s in sellers}

    race(debts_debit_due, sandbox)
    debts_debit_due()  # the next sweep

    debited: dict[str, int] = {}
    for debit in sandbox.state()["account_debits"]:
        debited[debit["source_account"]] = debited.get(debit["source_account"], 0) + debit["amount"]
    for seller in sellers:
        at_stripe = debited.get(seller.stripe_account_id, 0)
        assert at_stripe <= debts[seller.pk]
        assert seller_balances(seller_id=seller.pk)["usd"]["debt"] == debts[seller.pk] - at_stripe
    for debit in AccountDebit.objects.all():
        made = debit.stripe_transfer_id != ""
        assert made == (debit.state == DebitState.SUCCEEDED), (debit.pk, debit.state)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_release_reclaimed_after_its_lease_is_sent_once_and_recorded_sent(
    client, sandbox, stripe_client, short_lease_no_retries
):
    reserves_backlog(client, sandbox, stripe_client, 2, per_order=2)

    race(reserves_release_due, sandbox)

    releases = list(ReserveRelease.objects.order_by("pk"))
    at_stripe = [
        t["metadata"]["reserve_release_id"]
        for t in sandbox.state()["transfers"]
        if "reserve_release_id" in t["metadata"]
    ]
    for release in releases:
        assert at_stripe.count(str(release.pk)) == 1, release.pk
        assert release.state == ReleaseState.SENT, (release.pk, release.error_message)
    for seller_id in {release.seller_id for release in releases}:
        assert seller_balances(seller_id=seller_id)["usd"]["reserve"] == 0
