"""Random histories: a seeded generator of steps, each a small named action with its
arguments. Arguments name things by position (the third order paid so far, the second seller),
resolved when the step runs, so a history with steps removed (shrinking) still means something:
a step whose order or refund does not exist (yet) does nothing."""

import random
from dataclasses import dataclass

CURRENCIES = ("usd", "jpy")  # jpy: zero-decimal, settled as itself (the sandbox has no rate)
SELLERS = 4
# Stripe operations the faults are injected into, and what Stripe does to the call.
FAULTY_OPERATIONS = (
    "transfers.create",
    "reversals.create",
    "reversals.list",
    "transfers.list",
    "accounts.retrieve",
    "charges.retrieve",
)
FAULTS = ("timeout", "drop_after_perform", "error_500", "rate_limit")
# The worker is killed after Stripe answers, before it records the answer.
KILLABLE = ("create_transfer", "reverse_transfer")


@dataclass(frozen=True)
class Step:
    name: str
    args: tuple = ()

    def __str__(self) -> str:
        return f"{self.name}({', '.join(map(repr, self.args))})"


@dataclass(frozen=True)
class History:
    seed: int
    hold: bool  # TRANSFER_HOLD of a week, or none
    dispute_recovery: str  # on_open | on_loss
    steps: tuple[Step, ...]

    def without(self, indices: set[int]) -> "History":
        kept = tuple(step for i, step in enumerate(self.steps) if i not in indices)
        return History(self.seed, self.hold, self.dispute_recovery, kept)

    def describe(self) -> str:
        head = f"seed {self.seed}: hold={self.hold} dispute_recovery={self.dispute_recovery}"
        return "\n".join([head, *(f"  {i:2}. {step}" for i, step in enumerate(self.steps))])


def generate(seed: int, *, min_steps: int = 8, max_steps: int = 36) -> History:
    rng = random.Random(seed)
    makers = [(maker, weight) for maker, weight in _MAKERS.items()]
    steps = [_pay(rng)]  # every history starts with a payment
    for _ in range(rng.randint(min_steps, max_steps)):
        maker = rng.choices([m for m, _ in makers], weights=[w for _, w in makers])[0]
        steps.append(maker(rng))
    return History(
        seed=seed,
        hold=rng.random() < 0.5,
        dispute_recovery=rng.choice(("on_open", "on_loss")),
        steps=tuple(steps),
    )


def _pay(rng: random.Random) -> Step:
    sellers = tuple(sorted(rng.sample(range(SELLERS), rng.randint(1, 4))))
    currency = rng.choice(CURRENCIES)
    low, high = (300, 6000) if currency == "usd" else (300, 9000)
    amounts = tuple(rng.randint(low, high) for _ in sellers)
    return Step("pay", (currency, sellers, amounts))


def _pick(rng: random.Random) -> int:
    return rng.randrange(1000)  # taken modulo how many there are when the step runs


_MAKERS = {
    _pay: 10,
    lambda rng: Step("refund", (_pick(rng), rng.choice((0.1, 0.25, 0.5, 1.0)))): 10,
    lambda rng: Step("fail_refund", (_pick(rng),)): 6,
    lambda rng: Step("open_dispute", (_pick(rng),)): 4,
    lambda rng: Step("close_dispute", (_pick(rng), rng.choice(("won", "lost")))): 4,
    lambda rng: Step("release", (_pick(rng),)): 5,
    lambda rng: Step("restrict_account", (rng.randrange(SELLERS),)): 3,
    lambda rng: Step("fix_account", (rng.randrange(SELLERS),)): 3,
    lambda rng: Step("seller_pays_out", (_pick(rng),)): 5,
    lambda rng: Step("deliver_events", (rng.randrange(1000), rng.random() < 0.3)): 14,
    lambda rng: Step("run_workers", ()): 14,
    lambda rng: Step("reconcile", ()): 2,
    lambda rng: Step("advance", (rng.choice((1, 10, 60, 360, 2 * 24 * 60)),)): 6,
    lambda rng: Step("stripe_fault", (rng.choice(FAULTY_OPERATIONS), rng.choice(FAULTS))): 8,
    lambda rng: Step("kill_after_stripe", (rng.choice(KILLABLE),)): 3,
    lambda rng: Step("stripe_forgets_keys", ()): 2,
    lambda rng: Step("staff_retry", (_pick(rng),)): 2,
    lambda rng: Step("staff_requeue", (_pick(rng),)): 2,
    lambda rng: Step("write_off", (_pick(rng),)): 3,
}
