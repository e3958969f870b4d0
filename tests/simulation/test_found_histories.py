"""Histories the simulator found failing, shrunk, each kept as a named regression test.

Each fails on the code before its fix and passes since; its docstring names the seed that
found it (``SEED=<seed> make simulate`` replays and shrinks the original)."""

import pytest

from tests.simulation.history import History, Step, Terms
from tests.simulation.world import Environment, run

pytestmark = pytest.mark.django_db


def test_a_reversal_whose_answer_was_lost_is_given_back_when_the_dispute_is_won(
    sandbox, stripe_client, settings
):
    """Found by seed 1192 (hold=False, DISPUTE_RECOVERY=on_open).

    An order of two sellers is paid; a dispute opens and its chargeback is recovered; the
    reversal worker dies right after Stripe made the first seller's reversal, before recording
    it; the dispute is won. The seller was left ``reversed`` with nothing to give back: they
    held nothing at Stripe but were owed their whole transfer."""
    history = History(
        seed=1192,
        hold=False,
        dispute_recovery="on_open",
        steps=(
            Step("pay", ("usd", (0, 3), (3496, 2622))),
            Step("deliver_events", (878, True)),
            Step("kill_after_stripe", ("reverse_transfer",)),
            Step("open_dispute", (503,)),
            Step("deliver_events", (94, False)),
            Step("run_workers", ()),
            Step("close_dispute", (842, "won")),
        ),
    )
    outcome = run(history, Environment(sandbox, stripe_client, settings.PAYOUTS))
    assert not outcome.failed, history.describe() + "\n" + "\n".join(outcome.failures)


def test_a_write_off_given_back_by_a_failed_refund_is_counted_in_whole_units(
    sandbox, stripe_client, settings
):
    """Found by seed 5114 (hold=True, DISPUTE_RECOVERY=on_loss): a mistake of the reference
    model, not of the service.

    A quarter of an order is refunded; the second seller's share of it (305.93, paid as 306)
    cannot be taken back and is written off; the refund then fails. The service was right (the
    seller keeps their whole 1224); the model tied only 305 of the 306 written off to the order
    (it truncated) and forgave the last unit for good, so it said the seller was owed 1225."""
    history = History(
        seed=5114,
        hold=True,
        dispute_recovery="on_loss",
        steps=(
            Step("pay", ("usd", (0, 3), (2613, 1360))),
            Step("write_off", (936,)),
            Step("refund", (292, 0.25)),
            Step("seller_pays_out", (367,)),
            Step("write_off", (521,)),
            Step("fail_refund", (514,)),
        ),
    )
    outcome = run(history, Environment(sandbox, stripe_client, settings.PAYOUTS))
    assert not outcome.failed, history.describe() + "\n" + "\n".join(outcome.failures)


def test_a_full_refund_after_the_reserve_was_released_books_the_released_part_as_debt(
    sandbox, stripe_client, settings
):
    """Found by risk seed 9 (hold=False, DISPUTE_RECOVERY=on_loss).

    The second seller keeps 20 % of their share back for 7 days. The order is refunded in
    full, but the refund's event arrives only after the days passed and the reserve sweep
    released the 795 kept. The transfer part was reversed; the 795 the release had paid stayed
    with the seller, neither taken back nor owed: the seller held too much."""
    history = History(
        seed=9,
        hold=False,
        dispute_recovery="on_loss",
        risk=True,
        terms=(
            Terms(fee_bps=2500, debits=True),
            Terms(reserve_bps=2000, reserve_days=7),
            Terms(),
            Terms(reserve_bps=500, reserve_days=30, fee_bps=500),
        ),
        steps=(
            Step("pay", ("usd", (0, 1, 2, 3), (3071, 4418, 4098, 5253))),
            Step("quiet_hour", ()),
            Step("refund", (968, 1.0)),
            Step("days_pass", (8,)),
            Step("run_worker", ("reserve_sweep",)),
        ),
    )
    outcome = run(history, Environment(sandbox, stripe_client, settings.PAYOUTS))
    assert not outcome.failed, history.describe() + "\n" + "\n".join(outcome.failures)


def test_a_transfer_cancelled_before_it_was_sent_leaves_nothing_in_the_reserve(
    sandbox, stripe_client, settings
):
    """Found by risk seed 84 (hold=False, DISPUTE_RECOVERY=on_loss).

    The second seller keeps 20 % of their share back for 7 days; the order is refunded in full
    before their transfer was sent, so it is cancelled. The 791 its reserve kept stayed in the
    seller's reserve account for ever: the book owed them a reserve no release would send."""
    history = History(
        seed=84,
        hold=False,
        dispute_recovery="on_loss",
        risk=True,
        terms=(
            Terms(debits=True),
            Terms(reserve_bps=2000, reserve_days=7, debits=True),
            Terms(reserve_bps=1000, reserve_days=30, debits=True),
            Terms(reserve_bps=1000, reserve_days=30),
        ),
        steps=(
            Step("pay", ("usd", (1,), (4393,))),
            Step("refund", (793, 1.0)),
        ),
    )
    outcome = run(history, Environment(sandbox, stripe_client, settings.PAYOUTS))
    assert not outcome.failed, history.describe() + "\n" + "\n".join(outcome.failures)


def test_a_debit_refused_after_its_debt_was_given_back_leaves_no_give_back_uncollected(
    sandbox, stripe_client, settings
):
    """Found by seed 5 of the ``ladder`` profile (hold=False, DISPUTE_RECOVERY=on_open).

    The first seller is paid 4333, pays it out to their bank, and half the order is refunded:
    their reversal is refused, 2167 is their debt. The refund fails at Stripe (its event not
    yet heard of); four days pass; the debit sweep makes a debit of the 2167, which Stripe
    refuses for the balance, but the answer is lost (the row waits to retry under its key).
    The failed refund's event arrives: the debt's part is in a pending debit, so the 2167 is
    sent back to the seller instead of the debt being cancelled. The debit's retry gets
    Stripe's refusal replayed and is recorded refused. The seller keeps the give-back and the
    debt stays open: 2167 paid out against a debt never paid."""
    history = History(
        seed=5,
        hold=False,
        dispute_recovery="on_open",
        terms=(Terms(fee_bps=0, debits=True), *[Terms(debits=True)] * 3),
        steps=(
            Step("pay", ("usd", (2, 3), (4814, 3040))),
            Step("quiet_hour", ()),
            Step("seller_pays_out", (664,)),
            Step("refund", (-1, 0.5)),
            Step("quiet_hour", ()),
            Step("fail_refund", (380,)),
            Step("days_pass", (4,)),
            Step("stripe_fault", ("transfers.create", "drop_after_perform")),
            Step("run_worker", ("debit_sweep",)),
        ),
    )
    outcome = run(history, Environment(sandbox, stripe_client, settings.PAYOUTS))
    assert not outcome.failed, history.describe() + "\n" + "\n".join(outcome.failures)


def test_a_write_off_tied_by_a_book_that_lags_a_failed_refund_forgives_nothing_twice(
    sandbox, stripe_client, settings
):
    """Found by seed 53 of the ``ladder`` profile (hold=False, DISPUTE_RECOVERY=on_loss): a
    mistake of the reference model, not of the service.

    The seller's reversal of half their order is refused (886 of debt); the refund fails and
    its event arrives, but no worker has run when staff write the 886 off. The service later
    cancels the debt from the write-off (the seller keeps their 1771, owes nothing). The model
    tied the write-off to the book's entitlement (885) while its own facts already said 1771,
    and only a later rise would have used it up: it said the seller was owed 2657."""
    history = History(
        seed=53,
        hold=False,
        dispute_recovery="on_loss",
        terms=(Terms(debits=True), Terms(fee_bps=1500, debits=True), *[Terms(debits=True)] * 2),
        steps=(
            Step("pay", ("jpy", (1,), (2084,))),
            Step("quiet_hour", ()),
            Step("seller_pays_out", (267,)),
            Step("refund", (-1, 0.5)),
            Step("quiet_hour", ()),
            Step("fail_refund", (359,)),
            Step("write_off_now", (56,)),
        ),
    )
    outcome = run(history, Environment(sandbox, stripe_client, settings.PAYOUTS))
    assert not outcome.failed, history.describe() + "\n" + "\n".join(outcome.failures)
