"""Random histories: a seeded generator of steps, each a small named action with its
arguments. Arguments name things by position (the third order paid so far, the second seller),
resolved when the step runs, so a history with steps removed (shrinking) still means something:
a step whose order or refund does not exist (yet) does nothing."""

import random
from dataclasses import dataclass, replace

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
# The worker is killed after Stripe answers, before it records the answer: a seller's transfer
# or a reserve release (``create_transfer``), a reversal or give-back, an account debit.
KILLABLE = ("create_transfer", "reverse_transfer", "debit_account")
# What the profiles written before reserves and debits kill (their seeds keep their histories).
KILLABLE_SHARES = KILLABLE[:2]


@dataclass(frozen=True)
class Step:
    name: str
    args: tuple = ()

    def __str__(self) -> str:
        return f"{self.name}({', '.join(map(repr, self.args))})"


@dataclass(frozen=True)
class Terms:
    """One seller's payout policy, set by staff before the history starts."""

    reserve_bps: int = 0  # the rolling reserve kept back from each share (0: none)
    reserve_days: int = 30  # and how long it is kept
    fee_bps: int | None = None  # the platform's fee for this seller (None: PLATFORM_FEE_BPS)
    debits: bool = False  # account debits allowed (with the date the consent was recorded)

    def __str__(self) -> str:
        parts = [f"reserve {self.reserve_bps}bps/{self.reserve_days}d"] if self.reserve_bps else []
        parts += [f"fee {self.fee_bps}bps"] if self.fee_bps is not None else []
        parts += ["debits"] if self.debits else []
        return ", ".join(parts) or "defaults"


@dataclass(frozen=True)
class History:
    seed: int
    hold: bool  # TRANSFER_HOLD of a week, or none
    dispute_recovery: str  # on_open | on_loss
    steps: tuple[Step, ...]
    terms: tuple[Terms, ...] = ()  # per seller, by position (none given: every default)
    risk: bool = False  # risk thresholds so low that one dispute holds the seller's next orders

    def without(self, indices: set[int]) -> "History":
        kept = tuple(step for i, step in enumerate(self.steps) if i not in indices)
        return replace(self, steps=kept)

    def describe(self) -> str:
        head = f"seed {self.seed}: hold={self.hold} dispute_recovery={self.dispute_recovery}"
        if self.risk:
            head += " risk=True"
        lines = [head, *(f"  seller {i}: {terms}" for i, terms in enumerate(self.terms))]
        return "\n".join([*lines, *(f"  {i:2}. {step}" for i, step in enumerate(self.steps))])


def generate(seed: int, *, profile: str = "default") -> History:
    """The history of ``seed`` under ``profile`` (``PROFILES``): its steps, whether orders are
    held, and the dispute recovery policy."""
    rng = random.Random(seed)
    weights = PROFILES[profile]
    names = list(weights)
    steps = _as_steps(FIRST_PAY.get(profile, _pay)(rng))  # every history starts with a payment
    for _ in range(rng.randint(8, 36)):
        name = rng.choices(names, weights=[weights[n] for n in names])[0]
        steps += _as_steps(MAKERS[name](rng))
    history = History(
        seed=seed,
        hold=rng.random() < HELD_SHARE.get(profile, 0.5),
        dispute_recovery=rng.choice(("on_open", "on_loss")),
        steps=tuple(steps),
    )
    # The sellers' policies and the risk thresholds come from a generator of their own, so
    # the steps of a seed are the same as before policies were drawn.
    knobs = random.Random(f"terms-{seed}")
    if knobs.random() < TERMS_SHARE.get(profile, 0.0):
        terms = TERMS.get(profile, _terms)
        history = replace(history, terms=tuple(terms(knobs) for _ in range(SELLERS)))
    return replace(history, risk=knobs.random() < RISK_SHARE.get(profile, 0.0))


def _terms(rng: random.Random) -> Terms:
    reserve = rng.random() < 0.6
    return Terms(
        reserve_bps=rng.choice((500, 1000, 2000)) if reserve else 0,
        reserve_days=rng.choice((7, 14, 30, 60)),
        fee_bps=rng.choice((0, 500, 1500, 2500)) if rng.random() < 0.4 else None,
        debits=rng.random() < 0.5,
    )


def _as_steps(made: Step | tuple[Step, ...]) -> list[Step]:
    """A maker makes one step, or a run of them (``_into_debt``)."""
    return list(made) if isinstance(made, tuple) else [made]


def _into_debt(rng: random.Random) -> tuple[Step, ...]:
    """A run of ordinary steps that often ends in debt: an order of one or two sellers is paid
    and sent, a seller pays their balance out to their bank, and the newest order is refunded
    (half or all of what is left): its reversal is refused for the balance."""
    sellers = tuple(sorted(rng.sample(range(SELLERS), rng.randint(1, 2))))
    currency = rng.choice(CURRENCIES)
    amounts = tuple(rng.randint(1000, 6000) for _ in sellers)
    return (
        Step("pay", (currency, sellers, amounts)),
        Step("quiet_hour", ()),
        Step("seller_pays_out", (_pick(rng),)),
        Step("refund", (-1, rng.choice((0.5, 1.0)))),
        Step("quiet_hour", ()),
    )


def _ladder_terms(rng: random.Random) -> Terms:
    """Account debits allowed, no reserve (the ladder is about debt), sometimes a fee."""
    return Terms(fee_bps=rng.choice((0, 1500)) if rng.random() < 0.3 else None, debits=True)


def _pay(rng: random.Random) -> Step:
    sellers = tuple(sorted(rng.sample(range(SELLERS), rng.randint(1, 4))))
    currency = rng.choice(CURRENCIES)
    low, high = (300, 6000) if currency == "usd" else (300, 9000)
    amounts = tuple(rng.randint(low, high) for _ in sellers)
    return Step("pay", (currency, sellers, amounts))


def _pick(rng: random.Random) -> int:
    return rng.randrange(1000)  # taken modulo how many there are when the step runs


MAKERS = {
    "pay": _pay,
    "refund": lambda rng: Step("refund", (_pick(rng), rng.choice((0.1, 0.25, 0.5, 1.0)))),
    "fail_refund": lambda rng: Step("fail_refund", (_pick(rng),)),
    "open_dispute": lambda rng: Step("open_dispute", (_pick(rng),)),
    "close_dispute": lambda rng: Step("close_dispute", (_pick(rng), rng.choice(("won", "lost")))),
    "release": lambda rng: Step("release", (_pick(rng),)),
    "restrict_account": lambda rng: Step("restrict_account", (rng.randrange(SELLERS),)),
    "fix_account": lambda rng: Step("fix_account", (rng.randrange(SELLERS),)),
    "seller_pays_out": lambda rng: Step("seller_pays_out", (_pick(rng),)),
    "deliver_events": lambda rng: Step("deliver_events", (rng.randrange(1000), rng.random() < 0.3)),
    "run_workers": lambda rng: Step("run_workers", ()),
    "reconcile": lambda rng: Step("reconcile", ()),
    "advance": lambda rng: Step("advance", (rng.choice((1, 10, 60, 360, 2 * 24 * 60)),)),
    "stripe_fault": lambda rng: Step(
        "stripe_fault", (rng.choice(FAULTY_OPERATIONS), rng.choice(FAULTS))
    ),
    "kill_after_stripe": lambda rng: Step("kill_after_stripe", (rng.choice(KILLABLE_SHARES),)),
    "stripe_forgets_keys": lambda rng: Step("stripe_forgets_keys", ()),
    "staff_retry": lambda rng: Step("staff_retry", (_pick(rng),)),
    "staff_requeue": lambda rng: Step("staff_requeue", (_pick(rng),)),
    "write_off": lambda rng: Step("write_off", (_pick(rng),)),
    "run_worker": lambda rng: Step("run_worker", (rng.choice(WORKERS),)),
    "quiet_hour": lambda rng: Step("quiet_hour", ()),
    # The same steps aimed by age rather than anywhere: a negative position counts from the
    # newest order (-1 % n is the last), 0 is the oldest. The newest order is the one a new
    # share was netted from against debt and is still held; the oldest, the one already paid
    # out that a refund turns into debt.
    "refund_recent": lambda rng: Step("refund", (-rng.randint(1, 2), rng.choice((0.25, 0.5, 1.0)))),
    "release_oldest": lambda rng: Step("release", (0,)),
    "pay_few": lambda rng: _pay_few(rng),
    # Reserves, debits and risk holds (the ``risk`` profile; the others' seeds never draw them).
    "days_pass": lambda rng: Step("days_pass", (rng.choice((4, 8, 31)),)),
    "run_any_worker": lambda rng: Step("run_worker", (rng.choice(ALL_WORKERS),)),
    "kill_any": lambda rng: Step("kill_after_stripe", (rng.choice(KILLABLE),)),
    "risk_release": lambda rng: Step("risk_release", (rng.randrange(SELLERS),)),
    "change_policy": lambda rng: Step(
        "change_policy", (rng.randrange(SELLERS), rng.choice(POLICY_CHANGES))
    ),
    "seller_earns": lambda rng: Step(
        "seller_earns", (rng.randrange(SELLERS), rng.choice(CURRENCIES), rng.randint(500, 8000))
    ),
    "money_fault": lambda rng: Step(
        "stripe_fault", (rng.choice(("transfers.create", "transfers.list")), rng.choice(FAULTS))
    ),
    # The debt-recovery ladder (the ``ladder`` profile): a seller who owes has money at Stripe
    # again (sometimes too little for the debit), days pass past DEBT_DEBIT_AFTER, the debit
    # sweep runs alone, dies behind a debit, staff withdraw or give consent, and staff write
    # off a debt without waiting for the workers (a debit may be pending: refused).
    "debtor_earns": lambda rng: _debtor_earns(rng),
    "debt_ages": lambda rng: Step("days_pass", (rng.choice((1, 4, 4, 8)),)),
    "debit_sweep": lambda rng: Step("run_worker", ("debit_sweep",)),
    "kill_debit": lambda rng: Step("kill_after_stripe", ("debit_account",)),
    "consent": lambda rng: Step(
        "change_policy", (rng.randrange(SELLERS), rng.choice(("forbid_debits", "allow_debits")))
    ),
    "write_off_now": lambda rng: Step("write_off_now", (_pick(rng),)),
    # Runs of the steps above that climb the ladder often: debt falls due with money there to
    # take; the sweep meets a fault of the calls it makes, or dies behind its debit.
    "into_debt": lambda rng: _into_debt(rng),
    "ripen": lambda rng: (_debtor_earns(rng), Step("days_pass", (4,))),
    "faulty_debit": lambda rng: (
        MAKERS["money_fault"](rng),
        Step("run_worker", ("debit_sweep",)),
    ),
    "killed_debit": lambda rng: (
        Step("kill_after_stripe", ("debit_account",)),
        Step("run_worker", ("debit_sweep",)),
    ),
}


def _debtor_earns(rng: random.Random) -> Step:
    """A seller who owes has money at Stripe again: half, once, twice or four times the debt."""
    return Step("debtor_earns", (_pick(rng), rng.choice((0.5, 1.0, 1.0, 2.0, 4.0))))


def _pay_few(rng: random.Random) -> Step:
    """An order of one or two of the first two sellers, in usd: the same seller's debt in the
    same currency keeps meeting their next order."""
    sellers = tuple(sorted(rng.sample(range(2), rng.randint(1, 2))))
    return Step("pay", ("usd", sellers, tuple(rng.randint(300, 6000) for _ in sellers)))


WORKERS = ("send", "release_sweep", "reverse")
# With the rolling reserve's release sweep and the account debit sweep.
ALL_WORKERS = (*WORKERS, "reserve_sweep", "debit_sweep")
# What staff change of a seller's policy mid-history (never the fee: an order's fee is the one
# in force when its transfers are made, which the reference model does not follow).
POLICY_CHANGES = ("allow_debits", "forbid_debits", "reserve_none", "reserve_1000_14")

# How often each step is drawn. ``default`` walks everything; ``money`` dwells on what moves a
# seller's money both ways (refunds failing, debt, holds, write-offs, lost answers) and runs
# one worker at a time, so a fault meets whichever call that worker makes next; ``debt`` on
# sellers who owe, paid again while their orders are held, with quiet hours (every event
# arrives, the workers catch up) so such long chains happen often; ``netting`` on the end of
# that chain: the oldest order released and paid out, the seller spending it, a refund of it
# refused (debt), a new order of that seller netted against the debt while held, and then a
# refund or chargeback of the newest orders before their hold ends; ``risk`` on the seller-risk
# features: every seller has a policy (a rolling reserve, a fee, account debits), half the
# histories hold a seller after one dispute, days pass (past a debt's DEBT_DEBIT_AFTER and a
# reserve's days) while the reserve and debit sweeps run alone, killed or faulted, staff release
# risk holds and change policies, and sellers' balances grow from elsewhere (a debit can take
# from them); ``ladder`` on the debt-recovery ladder after netting: every seller allows account
# debits, few orders (netting would clear the debt), sellers pay out so refunds become debt,
# sellers who owe have money at Stripe again, days pass, and the debit sweep runs alone while
# Stripe faults, loses answers and forgets keys, the worker dies behind a debit, refunds fail,
# staff write off (while a debit may be pending) and withdraw or give consent.
PROFILES = {
    "default": {
        "pay": 10, "refund": 10, "fail_refund": 6, "open_dispute": 4, "close_dispute": 4,
        "release": 5, "restrict_account": 3, "fix_account": 3, "seller_pays_out": 5,
        "deliver_events": 14, "run_workers": 14, "reconcile": 2, "advance": 6,
        "stripe_fault": 8, "kill_after_stripe": 3, "stripe_forgets_keys": 2, "staff_retry": 2,
        "staff_requeue": 2, "write_off": 3,
    },
    "money": {
        "pay": 10, "refund": 12, "fail_refund": 8, "open_dispute": 3, "close_dispute": 3,
        "release": 6, "seller_pays_out": 8, "deliver_events": 16, "run_workers": 8,
        "run_worker": 10, "advance": 3, "stripe_fault": 4, "kill_after_stripe": 3,
        "write_off": 3,
    },
    "debt": {
        "pay": 12, "refund": 12, "fail_refund": 3, "release": 8, "seller_pays_out": 10,
        "deliver_events": 8, "run_worker": 6, "quiet_hour": 16, "write_off": 1,
    },
    "netting": {
        "pay_few": 8, "refund_recent": 12, "open_dispute": 2, "release_oldest": 10,
        "seller_pays_out": 10, "deliver_events": 4, "run_worker": 3, "quiet_hour": 18,
    },
    "risk": {
        "pay": 12, "refund": 10, "fail_refund": 5, "open_dispute": 6, "close_dispute": 5,
        "release": 3, "seller_pays_out": 8, "seller_earns": 4, "deliver_events": 10,
        "run_workers": 8, "run_any_worker": 8, "quiet_hour": 6, "days_pass": 7,
        "advance": 2, "money_fault": 4, "stripe_fault": 2, "kill_any": 3,
        "stripe_forgets_keys": 1, "risk_release": 3, "change_policy": 2, "write_off": 1,
    },
    "ladder": {
        "into_debt": 3, "pay": 1, "refund": 3, "fail_refund": 2, "seller_pays_out": 1,
        "quiet_hour": 5, "deliver_events": 2, "ripen": 7, "debtor_earns": 2, "seller_earns": 1,
        "debt_ages": 3, "debit_sweep": 6, "faulty_debit": 4, "killed_debit": 2,
        "run_workers": 2, "money_fault": 2, "kill_debit": 1, "stripe_forgets_keys": 3,
        "consent": 2, "write_off_now": 3, "write_off": 1,
    },
}  # fmt: skip
# The first payment's maker, by profile (``pay`` unless named).
FIRST_PAY = {"netting": _pay_few, "ladder": _into_debt}
# The share of histories whose orders are held (``TRANSFER_HOLD``), by profile: ``debt``
# and ``netting`` dwell on debt netted into transfers still on hold.
HELD_SHARE = {"debt": 0.9, "netting": 0.9, "ladder": 0.1}
# The share of histories whose sellers get payout policies of their own (``Terms``: reserves,
# fees, debits), and of those whose risk thresholds make one dispute hold a seller.
TERMS_SHARE = {"default": 0.25, "risk": 1.0, "ladder": 1.0}
RISK_SHARE = {"default": 0.1, "risk": 0.5}
# The sellers' policies' maker, by profile (``_terms`` unless named).
TERMS = {"ladder": _ladder_terms}
