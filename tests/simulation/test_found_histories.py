"""Histories the simulator found failing, shrunk, each kept as a named regression test.

Each fails on the code before its fix and passes since; its docstring names the seed that
found it (``SEED=<seed> make simulate`` replays and shrinks the original)."""

import pytest

from tests.simulation.history import History, Step
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
