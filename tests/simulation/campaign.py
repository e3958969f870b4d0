"""``make simulate``: run many histories and say what failed. Not collected by the normal run
(its name is not ``test_*``); ``make simulate`` names it.

    HISTORIES=10000 make simulate       # seeds 0..9999 (FIRST_SEED moves the start)
    SEED=1234 make simulate             # replay one seed: its history, its failures, shrunk
    PROFILE=money HISTORIES=2000 make simulate   # another mix of steps (history.PROFILES)
"""

import os
import sys
import time
from collections import Counter

import pytest

from tests.simulation.history import generate
from tests.simulation.shrink import kinds, shrink
from tests.simulation.world import Environment, run

pytestmark = pytest.mark.django_db


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def test_simulate(sandbox, stripe_client, settings):
    env = Environment(sandbox, stripe_client, settings.PAYOUTS)
    profile = os.environ.get("PROFILE", "default")
    if "SEED" in os.environ:
        replay(int(os.environ["SEED"]), env, profile)
        return
    first = int(os.environ.get("FIRST_SEED", "0"))
    count = int(os.environ.get("HISTORIES", "100"))
    started = time.monotonic()
    steps, failed, reached, debited = 0, [], Counter(), 0
    for seed in range(first, first + count):
        outcome = run(generate(seed, profile=profile), env)
        steps += outcome.steps_run
        reached.update(outcome.reached)
        debited += bool(outcome.reached.get("debits succeeded"))
        if outcome.failed:
            failed.append(seed)
            say(f"seed {seed} FAILED: {', '.join(kinds(outcome.failures))}")
            for failure in outcome.failures:
                if not failure.startswith("rows "):  # the rows table: SEED=<seed> shows it
                    say(f"    {failure.splitlines()[0]}")
    minutes = (time.monotonic() - started) / 60
    say(
        f"\n{count} histories, {steps} steps in {minutes:.1f} min: "
        f"{count / minutes:.0f} histories/min, {steps / minutes:.0f} steps/min"
    )
    say(f"reached: {', '.join(f'{what} {n}' for what, n in sorted(reached.items())) or '-'}")
    say(f"histories with a debit that succeeded: {debited} of {count}")
    say(f"failed: {len(failed)} {failed}")
    say(f"replay one: PROFILE={profile} SEED=<seed> make simulate")


def replay(seed: int, env: Environment, profile: str) -> None:
    history = generate(seed, profile=profile)
    outcome = run(history, env)
    say(history.describe())
    if not outcome.failed:
        say("passed")
        return
    say("\n".join(outcome.failures))
    shortest = shrink(history, lambda h: run(h, env).failures)
    say(f"\nshrunk to {len(shortest.steps)} steps:\n{shortest.describe()}")
    say("\n".join(run(shortest, env).failures))
