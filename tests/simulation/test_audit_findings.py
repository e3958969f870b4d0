"""The audit's findings, as the simulator found them on the code before their fixes.

Each is a shrunk history (``SEED=<seed> make simulate`` prints and shrinks the original) that
failed on that code and passes since the fix: a regression test written by the simulator."""

import pytest

from tests.simulation.history import History, Step
from tests.simulation.world import Environment, run

pytestmark = pytest.mark.django_db


def assert_passes(history: History, sandbox, stripe_client, settings) -> None:
    outcome = run(history, Environment(sandbox, stripe_client, settings.PAYOUTS))
    assert not outcome.failed, history.describe() + "\n" + "\n".join(outcome.failures)


def test_finding_1_a_full_refund_during_the_hold_that_fails_pays_the_sellers(
    sandbox, stripe_client, settings
):
    # Found by seed 20: the hold keeps both sellers' transfers back; the full refund cancels
    # them; when it fails, the order is paid again but the rows stay cancelled.
    history = History(
        seed=20,
        hold=True,
        dispute_recovery="on_loss",
        steps=(
            Step("pay", ("usd", (2, 3), (2982, 4993))),
            Step("refund", (421, 1.0)),
            Step("write_off", (0,)),  # seller 0 owes nothing: only the workers run first
            Step("fail_refund", (879,)),
        ),
    )
    assert_passes(history, sandbox, stripe_client, settings)


def test_finding_2_a_give_back_whose_answer_was_lost_is_not_kept_when_a_new_refund_comes(
    sandbox, stripe_client, settings
):
    # Found by seed 305 of the ``money`` profile (in jpy): a refund failed, so the reversal
    # worker gave the sellers' shares back; it died after Stripe made the give-back, before
    # recording it; a new refund raised the shares, the worker took the reversal path, never
    # read the give-back and kept it: the seller holds the given-back share too.
    history = History(
        seed=305,
        hold=False,
        dispute_recovery="on_loss",
        steps=(
            Step("pay", ("jpy", (2, 3), (8812, 3138))),
            Step("refund", (481, 0.5)),
            Step("refund", (748, 0.25)),
            Step("write_off", (640,)),  # nobody owes: only the workers run first
            Step("refund", (506, 0.5)),
            Step("refund", (655, 0.1)),
            Step("fail_refund", (776,)),
            Step("deliver_events", (494, False)),
            Step("kill_after_stripe", ("create_transfer",)),
            Step("run_workers", ()),
            Step("refund", (543, 0.5)),
        ),
    )
    assert_passes(history, sandbox, stripe_client, settings)


def test_finding_3_a_written_off_debt_is_not_paid_out_again_when_the_dispute_is_won(
    sandbox, stripe_client, settings
):
    # Found by seed 405 (in jpy, zero-decimal): the seller paid their balance out, so the
    # chargeback's reversal was refused and became debt; staff wrote it off; the dispute was
    # won and the seller was sent their share again, holding twice what they are owed.
    history = History(
        seed=405,
        hold=False,
        dispute_recovery="on_open",
        steps=(
            Step("pay", ("jpy", (1,), (1943,))),
            Step("deliver_events", (569, True)),
            Step("run_workers", ()),
            Step("seller_pays_out", (985,)),
            Step("open_dispute", (69,)),
            Step("write_off", (822,)),
            Step("close_dispute", (120, "won")),
        ),
    )
    assert_passes(history, sandbox, stripe_client, settings)


def test_finding_4_a_refund_during_the_hold_of_a_netted_transfer_leaves_debt_not_a_failure(
    sandbox, stripe_client, settings
):
    """Found by seed 17 of the ``netting`` profile (``PROFILE=netting SEED=17 make
    simulate``), the 18th history of that profile, shrunk from 33 steps to these 9 (hold on)::

        pay('usd', (0, 1), (2672, 1731)), quiet_hour(), release(0), quiet_hour(),
        seller_pays_out(978), refund(-2, 1.0), quiet_hour(),
        pay('usd', (0, 1), (712, 4209)), refund(-1, 0.25)

    Seller 0 is paid 24.05 for the first order and pays it out; the order is refunded in full,
    the reversal is refused and 24.05 becomes debt. Their 6.41 share of the second order is
    netted in full against it while held; a quarter of that order is refunded during the hold,
    so 1.60 is to be kept back from a transfer with nothing left to send: to send is -1.60,
    Stripe refuses it, and after its retries the row ends ``permanently_failed``
    (retries_exhausted). The seller holds 24.05 where 22.45 is owed (their share left, 4.81, and
    the open debt, 17.64): the 1.60 should have stayed as debt and the row completed with
    nothing sent."""
    history = History(
        seed=17,
        hold=True,
        dispute_recovery="on_loss",
        steps=(
            Step("pay", ("usd", (0, 1), (2672, 1731))),
            Step("quiet_hour", ()),
            Step("release", (0,)),
            Step("quiet_hour", ()),
            Step("seller_pays_out", (978,)),
            Step("refund", (-2, 1.0)),  # -2 of one order: the first, the only one yet
            Step("quiet_hour", ()),
            Step("pay", ("usd", (0, 1), (712, 4209))),
            Step("refund", (-1, 0.25)),  # -1: the newest order, still held
        ),
    )
    assert_passes(history, sandbox, stripe_client, settings)
