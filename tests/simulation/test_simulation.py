"""The simulator's budget in the normal run: a fixed list of histories (about a minute on two
cores), each played against the real service and the sandbox, settled, and checked against the
reference model (docs/simulation.md). ``make simulate`` runs as many as asked.

The seeds are fixed so the run is the same every time: seeds 0-42 of the ``default`` profile and
a handful of the ``risk`` profile's. Before the audit's fixes, seeds 3 and 39
failed (finding 7) and seed 20 (finding 1); the shrunk histories of the findings the simulator
found are in ``test_audit_findings.py``."""

import pytest

from tests.simulation.history import generate
from tests.simulation.world import Environment, run

pytestmark = pytest.mark.django_db

CI_SEEDS = list(range(43))
# Seeds of the ``risk`` profile (reserves, fees, debits, risk holds): 0-13, and the seeds past
# them that found gaps of the rolling reserve, kept since those were fixed: a share that falls
# (0, 32) or rises (9, 27, 110, 146) after its reserve was released, and the reserve of a
# transfer cancelled before it was sent (6, 12, 21, 53, 83, 84).
CI_RISK_SEEDS = list(range(14)) + [21, 27, 32, 53, 83, 84, 110, 146]
# Seeds of the ``ladder`` profile (the debt-recovery ladder); each of 0, 2, 7, 11, 12 and 14
# makes an account debit that succeeds. Kept since what they found was fixed: 3, 20, 53, 96, 131
# and 132 the reference model tying or using up a write-off out of step with the service (the
# model's mistakes), 5 a give-back paid out for a debt a refused debit left unpaid, 97 a debit made
# behind a killed worker and refused once consent was withdrawn though Stripe had made it (the
# service's: test_found_histories and tests/test_debt_recovery.py keep them).
CI_LADDER_SEEDS = [0, 1, 2, 3, 4, 5, 7, 11, 12, 14, 20, 53, 96, 97, 131]


@pytest.fixture
def environment(sandbox, stripe_client, settings):
    return Environment(sandbox, stripe_client, settings.PAYOUTS)


@pytest.mark.slow  # the whole budget, about a minute: CI runs it, the inner loop does not
def test_the_budget_of_histories_ends_with_every_seller_holding_what_they_are_owed(environment):
    failed = {}
    budget = [("default", seed) for seed in CI_SEEDS] + [("risk", seed) for seed in CI_RISK_SEEDS]
    budget += [("ladder", seed) for seed in CI_LADDER_SEEDS]
    for profile, seed in budget:
        outcome = run(generate(seed, profile=profile), environment)
        if outcome.failed:
            failed[(profile, seed)] = outcome.failures
    assert failed == {}, "\n\n".join(
        f"seed {seed} (replay: PROFILE={profile} SEED={seed} make simulate):\n"
        + "\n".join(failures)
        for (profile, seed), failures in failed.items()
    )
