"""The simulator's budget in the normal run: a fixed list of histories (about a minute on two
cores), each played against the real service and the sandbox, settled, and checked against the
reference model (docs/simulation.md). ``make simulate`` runs as many as asked.

The seeds are fixed so the run is the same every time; each passes on the code as it is. The
histories that exhibit the audit's findings are in ``test_audit_findings.py``."""

import pytest

from tests.simulation.history import generate
from tests.simulation.world import Environment, run

pytestmark = pytest.mark.django_db

# Seeds below 43 whose histories fail on the code as it is, and why (see
# test_audit_findings.py); the others, about a minute on two cores, pass.
KNOWN_FAILING = {
    # A seller's account restricted then fixed, the events applied out of order: their
    # transfer stays held for an account Stripe says can receive (audit finding 7).
    3: "audit finding 7",
    20: "audit finding 1",
    # The same symptom as seed 3 (a transfer held for an account fixed at Stripe).
    39: "audit finding 7",
}
CI_SEEDS = [seed for seed in range(43) if seed not in KNOWN_FAILING]


@pytest.fixture
def environment(sandbox, stripe_client, settings):
    return Environment(sandbox, stripe_client, settings.PAYOUTS)


def test_the_budget_of_histories_ends_with_every_seller_holding_what_they_are_owed(environment):
    failed = {}
    for seed in CI_SEEDS:
        outcome = run(generate(seed), environment)
        if outcome.failed:
            failed[seed] = outcome.failures
    assert failed == {}, "\n\n".join(
        f"seed {seed} (replay: SEED={seed} make simulate):\n" + "\n".join(failures)
        for seed, failures in failed.items()
    )
