"""The payouts app's settings, read and checked from the environment at start-up.

The payouts app's settings: every knob read from the environment once, typed and range-checked,
into one frozen object (``settings.PAYOUTS``).

A bad value stops start-up with ``ImproperlyConfigured`` naming the variable, so a typo in a
deployment never turns into a silently different retry policy or a negative lease. The
variables, their defaults and their meaning are listed in ``.env.template`` and
``docs/configuration.md``.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation

import environ
from django.core.exceptions import ImproperlyConfigured

from config.durations import parse_duration
from config.money import currency_decimals

# Stripe replays an idempotency key's first answer for 24 hours, then forgets it. A retry that
# reuses a key after an unseen outcome must come well inside that window.
STRIPE_KEY_MEMORY = timedelta(hours=24)
# The longest backoff that still leaves an hour of margin before Stripe forgets a kept key.
LONGEST_BACKOFF = STRIPE_KEY_MEMORY - timedelta(hours=1)
# Stripe retries an undelivered event for up to 3 days; the inbox's event id is what makes a
# retry a duplicate. Processed events are kept at least that long plus margin (a late retry, a
# person replaying from the Dashboard after a weekend).
STRIPE_RETRY_WINDOW = timedelta(days=3)
# What the scheduled checks (reconciliation, ledger_check) read at Stripe, in pages of 100
# transfers by creation time: daily the last day and an hour for a late start, weekly the last
# week and a day for a daily run that did not happen.
DAILY_CHECK_WINDOW = timedelta(hours=25)
WEEKLY_CHECK_WINDOW = timedelta(days=8)
SHORTEST_WEBHOOK_RETENTION = STRIPE_RETRY_WINDOW + timedelta(days=4)
# The single global rate of earlier versions, replaced by STRIPE_RATE_LIMITS.
RETIRED_RATE_VARIABLE = "STRIPE_MAX_REQUESTS_PER_SECOND"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a worker runs and how it backs off after a failed attempt."""

    enabled: bool
    max_retries: int
    check_interval: timedelta
    backoff_base: timedelta
    backoff_max: timedelta

    def delay_after_failure(self, attempt: int) -> timedelta | None:
        """The backoff before a retry, or ``None`` once the retries are spent.

        Delay before retry number ``attempt`` (1 for the first retry):
        ``min(base × 2^(attempt−1), max)``; ``None`` when ``attempt`` exceeds ``max_retries``
        and the row must give up."""
        if attempt > self.max_retries:
            return None
        return min(self.backoff_base * 2 ** (attempt - 1), self.backoff_max)


# Stripe's documented request budgets: live mode allows 100 requests a second in all and 25 a
# second on each named operation; a sandbox (test keys) allows 25 a second in all.
LIVE_GLOBAL_PER_SECOND = 100
OPERATION_PER_SECOND = 25
SANDBOX_GLOBAL_PER_SECOND = 25
# The checks (reconciliation, ledger_check) take at most this share of the global budget when
# STRIPE_RATE_LIMITS does not say `checks=`: 20/s live, 5/s in a sandbox, less than what paying
# or reversing each may use, so a backlog drains at full speed while a check runs.
CHECKS_SHARE_OF_GLOBAL = 5
# The names STRIPE_RATE_LIMITS accepts besides `global`, `default` and `checks`: the operations
# the gateway calls (a typo must stop start-up, not silently fall back to `default`).
STRIPE_OPERATIONS = frozenset(
    {
        "accounts.retrieve",
        "charges.retrieve",
        "events.list",
        "refunds.create",
        "refunds.list",
        "refunds.retrieve",
        "reversals.create",
        "reversals.list",
        "transfers.create",
        "transfers.list",
        "transfers.retrieve",
    }
)
_BUDGET = re.compile(r"^\s*([a-z_]+(?:\.[a-z_]+)?)\s*=\s*(\d+)\s*/\s*s\s*$")
MAX_PER_SECOND = 10_000


@dataclass(frozen=True, slots=True)
class RateBudgets:
    """The rate budgets of requests to Stripe.

    Requests a second every process together may send to Stripe (one limiter in Redis):
    ``global_per_second`` in all, ``per_operation`` on a named operation (else
    ``default_per_second``), and ``checks_per_second`` for reconciliation and ``ledger_check``
    together, on top of the other two."""

    global_per_second: int
    default_per_second: int
    checks_per_second: int
    per_operation: tuple[tuple[str, int], ...] = ()

    def for_operation(self, operation: str) -> int:
        return dict(self.per_operation).get(operation, self.default_per_second)


def parse_rate_budgets(raw: str, *, live: bool, name: str = "STRIPE_RATE_LIMITS") -> RateBudgets:
    """Parse ``STRIPE_RATE_LIMITS`` into rate budgets.

    For example ``global=100/s,default=25/s,checks=20/s,transfers.create=25/s`` (any subset, any
    order); what is not named takes Stripe's default for the key's mode (``live``)."""
    given: dict[str, int] = {}
    for part in raw.split(","):
        if not part.strip():
            continue
        found = _BUDGET.match(part)
        if not found:
            raise ImproperlyConfigured(
                f"{name}: {part.strip()!r} is not NAME=N/s (e.g. global=100/s,default=25/s)"
            )
        key, value = found.group(1), int(found.group(2))
        if key not in {"global", "default", "checks"} and key not in STRIPE_OPERATIONS:
            known = ", ".join(["global", "default", "checks", *sorted(STRIPE_OPERATIONS)])
            raise ImproperlyConfigured(f"{name}: unknown name {key!r}; known: {known}")
        if key in given:
            raise ImproperlyConfigured(f"{name}: {key} is given twice")
        if not 1 <= value <= MAX_PER_SECOND:
            raise ImproperlyConfigured(f"{name}: {key}={value}/s is outside 1..{MAX_PER_SECOND}")
        given[key] = value
    whole = given.pop("global", LIVE_GLOBAL_PER_SECOND if live else SANDBOX_GLOBAL_PER_SECOND)
    default = given.pop("default", OPERATION_PER_SECOND)
    checks = given.pop("checks", max(1, whole // CHECKS_SHARE_OF_GLOBAL))
    return RateBudgets(
        global_per_second=whole,
        default_per_second=default,
        checks_per_second=checks,
        per_operation=tuple(sorted(given.items())),
    )


def is_live_key(secret_key: str) -> bool:
    """Whether the Stripe key is a live one.

    Live secret and restricted keys are; anything else (test keys, the local sandbox's) gets a
    sandbox's budget."""
    return secret_key.startswith(("sk_live_", "rk_live_"))


@dataclass(frozen=True, slots=True)
class StripeLimits:
    """How the gateway talks to Stripe."""

    timeout: timedelta
    max_network_retries: int
    # Requests a second every process together may send (a Redis-shared limiter); None: off.
    budgets: RateBudgets | None


# The staff money actions that may wait for a second person, and when they do by default. A new
# kind (a payout policy change, say) is one entry here, plus its action in the approvals app's
# registry. A rule is "always", "never", or amounts in major units above which a second person
# must approve: "500.00" for any currency, "usd 1000.00" for one (it wins over the any-currency
# amount), several separated by commas.
APPROVAL_DEFAULTS = {
    "staff_refund": "500.00",
    "write_off": "always",
    "release": "never",
    "requeue": "never",
    "policy_change": "never",
    "risk_release": "never",
    "reserve_resend": "never",
}


@dataclass(frozen=True, slots=True)
class ApprovalRule:
    """When one kind of staff action waits for a second person's approval.

    Always, or above an amount in major units (per currency, else the any-currency amount); never
    when neither is set."""

    always: bool = False
    above: Decimal | None = None
    above_in: Mapping[str, Decimal] = field(default_factory=dict)

    def needs_approval(self, *, amount: int, currency: str) -> bool:
        if self.always:
            return True
        limit = self.above_in.get(currency.lower(), self.above)
        if limit is None:
            return False
        # Compared in major units, so "500.00" means 500 yen and 500 dollars alike.
        return Decimal(amount).scaleb(-currency_decimals(currency)) > limit

    def describe(self) -> str:
        if self.always:
            return "always"
        parts = [] if self.above is None else [f"above {self.above} in any currency"]
        parts += [f"above {limit} {code.upper()}" for code, limit in sorted(self.above_in.items())]
        return ", ".join(parts) or "never"


def parse_approval_rule(text: str) -> ApprovalRule:
    """``always``, ``never``, or ``500.00, jpy 50000``; raises ``ValueError`` saying why not."""
    text = text.strip().lower()
    if text in ("always", "never"):
        return ApprovalRule(always=text == "always")
    above, above_in = None, {}
    for part in text.split(","):
        words = part.split()
        if len(words) == 1:
            currency, amount = None, words[0]
        elif len(words) == 2 and len(words[0]) == 3 and words[0].isalpha():
            currency, amount = words
        else:
            raise ValueError(f"{part.strip()!r} is not an amount or a currency and an amount")
        try:
            limit = Decimal(amount)
        except InvalidOperation:
            raise ValueError(f"{amount!r} is not an amount") from None
        if not limit.is_finite() or limit < 0:
            raise ValueError(f"{amount!r} is not an amount")
        if currency is None:
            if above is not None:
                raise ValueError("two amounts for any currency")
            above = limit
        elif currency in above_in:
            raise ValueError(f"two amounts for {currency}")
        else:
            above_in[currency] = limit
    return ApprovalRule(above=above, above_in=above_in)


@dataclass(frozen=True, slots=True)
class ApprovalPolicy:
    """The four-eyes rules for staff actions.

    Which staff actions wait for a second person, and how long a request waits before it expires."""

    rules: Mapping[str, ApprovalRule]
    expires_after: timedelta

    def needs_approval(self, *, kind: str, amount: int, currency: str) -> bool:
        return self.rules[kind].needs_approval(amount=amount, currency=currency)


@dataclass(frozen=True, slots=True)
class PayoutsConfig:
    platform_fee_bps: int
    reversal: RetryPolicy
    transfer_retry: RetryPolicy
    stripe: StripeLimits
    # Stripe calls one reversal worker run keeps in flight at once (threads).
    reversal_concurrency: int
    # Added to the longest possible Stripe call to make a worker's claim lease.
    claim_lease_margin: timedelta
    # How long a paid order's seller transfers wait before they are sent (0: at once); staff
    # or the marketplace release them earlier (on fulfilment, say).
    transfer_hold: timedelta
    # When a chargeback's sellers' shares are recovered: "on_open" (when Stripe withdraws the
    # funds) or "on_loss" (only once the dispute is lost).
    dispute_recovery: str
    # Who bears Stripe's dispute fee: "platform", or "sellers" (in proportion, with the amount).
    dispute_fee_borne_by: str
    # How long a processed webhook event stays in the inbox (payouts/services/retention.py).
    webhook_retention: timedelta
    # Which staff money actions wait for a second person (the approvals app).
    approvals: ApprovalPolicy
    # A seller's new transfers are held (reason ``risk``) when, over ``risk_window``, they had
    # at least ``risk_dispute_count`` disputed orders AND disputed / paid orders reached
    # ``risk_dispute_ratio`` (both conditions: one dispute among two orders is not a pattern).
    risk_dispute_count: int
    risk_dispute_ratio: Decimal
    risk_window: timedelta
    # A seller's debt this old is taken from their connected account (an account debit), when
    # their policy allows it; ``debt_debit_retry`` backs off a debit Stripe could not make.
    debt_debit_after: timedelta
    debt_debit_retry: RetryPolicy
    # The rolling reserve of a seller whose policy leaves it empty: ``reserve_bps`` of each
    # transfer kept back at payment, sent to the seller ``reserve_days`` later.
    reserve_bps: int
    reserve_days: int

    @property
    def claim_lease(self) -> timedelta:
        """How long a worker's claim on a row lasts.

        Longer than the longest Stripe call stripe-python can make (timeout × attempts),
        with a margin, so a live worker never loses its row to the next tick."""
        attempts = self.stripe.max_network_retries + 1
        return self.stripe.timeout * attempts + self.claim_lease_margin


class _Reader:
    """Reads one variable at a time, with the defaults a settings module chose."""

    def __init__(self, env: environ.Env, defaults: Mapping[str, str]):
        self._env = env
        self._defaults = defaults

    def raw(self, name: str, default: str) -> str:
        return self._env.str(name, default=self._defaults.get(name, default)).strip()

    def duration(
        self,
        name: str,
        default: str,
        *,
        high: timedelta | None = None,
        low: timedelta | None = None,
        zero_allowed=False,
    ) -> timedelta:
        raw = self.raw(name, default)
        try:
            value = parse_duration(raw, zero_allowed=zero_allowed)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {exc}") from None
        if high is not None and value > high:
            raise ImproperlyConfigured(f"{name}: {raw} is longer than the maximum, {high}")
        if low is not None and value < low:
            raise ImproperlyConfigured(f"{name}: {raw} is shorter than the minimum, {low}")
        return value

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        raw = self.raw(name, str(default))
        try:
            value = int(raw)
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {raw!r} is not an integer") from None
        if not low <= value <= high:
            raise ImproperlyConfigured(f"{name}: {value} is outside {low}..{high}")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        raw = self.raw(name, default).lower()
        if raw not in choices:
            raise ImproperlyConfigured(f"{name}: {raw!r} is not one of {', '.join(choices)}")
        return raw

    def ratio(self, name: str, default: str) -> Decimal:
        """A fraction between 0 and 1 (``0.01`` is one in a hundred)."""
        raw = self.raw(name, default)
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise ImproperlyConfigured(f"{name}: {raw!r} is not a number") from None
        if not Decimal(0) <= value <= Decimal(1):
            raise ImproperlyConfigured(f"{name}: {raw} is outside 0..1")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.raw(name, str(default)).lower()
        if raw in {"1", "true", "yes", "on"}:
            return True
        if raw in {"0", "false", "no", "off"}:
            return False
        raise ImproperlyConfigured(f"{name}: {raw!r} is not a boolean (true/false)")

    def retry_policy(self, prefix: str, *, switch: str) -> RetryPolicy:
        policy = RetryPolicy(
            enabled=self.boolean(switch, True),
            max_retries=self.integer(f"{prefix}_MAX_RETRIES", 5, low=0, high=100),
            check_interval=self.duration(f"{prefix}_CHECK_INTERVAL", "1m", high=LONGEST_BACKOFF),
            backoff_base=self.duration(f"{prefix}_BACKOFF_BASE", "1m", high=LONGEST_BACKOFF),
            backoff_max=self.duration(f"{prefix}_BACKOFF_MAX", "1h", high=LONGEST_BACKOFF),
        )
        if policy.backoff_max < policy.backoff_base:
            raise ImproperlyConfigured(
                f"{prefix}_BACKOFF_MAX must not be shorter than {prefix}_BACKOFF_BASE"
            )
        return policy

    def approval_policy(self) -> ApprovalPolicy:
        """The four-eyes rules, read from the ``APPROVAL_RULES`` setting.

        ``kind=rule`` entries separated by ``;`` (see ``APPROVAL_DEFAULTS``); a kind not named keeps
        its default."""
        texts = dict(APPROVAL_DEFAULTS)
        raw = self.raw("APPROVAL_RULES", "")
        for entry in filter(None, (part.strip() for part in raw.split(";"))):
            kind, equals, rule = entry.partition("=")
            kind = kind.strip().lower()
            if not equals or kind not in APPROVAL_DEFAULTS:
                known = ", ".join(APPROVAL_DEFAULTS)
                raise ImproperlyConfigured(
                    f"APPROVAL_RULES: {entry!r} is not <kind>=<rule> with a kind among {known}"
                )
            texts[kind] = rule
        rules = {}
        for kind, text in texts.items():
            try:
                rules[kind] = parse_approval_rule(text)
            except ValueError as exc:
                raise ImproperlyConfigured(f"APPROVAL_RULES: {kind}: {exc}") from None
        return ApprovalPolicy(
            rules=rules,
            expires_after=self.duration(
                "APPROVAL_EXPIRES_AFTER",
                "7d",
                low=timedelta(minutes=1),
                high=timedelta(days=90),
            ),
        )

    def stripe_limits(self) -> StripeLimits:
        if self.raw(RETIRED_RATE_VARIABLE, ""):
            # One number could not say Stripe's per-operation limits; a deployment still setting
            # it must learn that its number no longer applies rather than be silently ignored.
            raise ImproperlyConfigured(
                f"{RETIRED_RATE_VARIABLE} is no longer read: set STRIPE_RATE_LIMITS instead "
                "(e.g. global=100/s,default=25/s, or off)"
            )
        raw = self.raw("STRIPE_RATE_LIMITS", "")
        live = is_live_key(self.raw("STRIPE_SECRET_KEY", ""))
        return StripeLimits(
            timeout=self.duration("STRIPE_TIMEOUT", "20s", high=timedelta(minutes=5)),
            max_network_retries=self.integer("STRIPE_MAX_NETWORK_RETRIES", 2, low=0, high=10),
            budgets=None if raw.lower() == "off" else parse_rate_budgets(raw, live=live),
        )


def load_payouts_config(env: environ.Env, **defaults: str) -> PayoutsConfig:
    """Read the payouts settings from the environment.

    Parse every payouts knob; ``defaults`` replace the built-in default of a variable
    (a settings module for tests, say), never a value the environment sets."""
    read = _Reader(env, defaults)
    return PayoutsConfig(
        platform_fee_bps=read.integer("PLATFORM_FEE_BPS", 1000, low=0, high=10_000),
        reversal=read.retry_policy("REVERSAL", switch="REVERSAL_WORKER_ENABLED"),
        transfer_retry=read.retry_policy("TRANSFER_RETRY", switch="TRANSFER_RETRY_WORKER_ENABLED"),
        stripe=read.stripe_limits(),
        reversal_concurrency=read.integer("REVERSAL_CONCURRENCY", 16, low=1, high=256),
        claim_lease_margin=read.duration("CLAIM_LEASE_MARGIN", "30s", high=timedelta(hours=1)),
        transfer_hold=read.duration(
            "TRANSFER_HOLD", "0", high=timedelta(days=365), zero_allowed=True
        ),
        dispute_recovery=read.choice("DISPUTE_RECOVERY", "on_open", ("on_open", "on_loss")),
        dispute_fee_borne_by=read.choice(
            "DISPUTE_FEE_BORNE_BY", "platform", ("platform", "sellers")
        ),
        webhook_retention=read.duration(
            "WEBHOOK_RETENTION",
            "90d",
            low=SHORTEST_WEBHOOK_RETENTION,
            high=timedelta(days=3650),
        ),
        approvals=read.approval_policy(),
        risk_dispute_count=read.integer("RISK_DISPUTE_COUNT", 3, low=1, high=1_000_000),
        risk_dispute_ratio=read.ratio("RISK_DISPUTE_RATIO", "0.01"),
        risk_window=read.duration("RISK_WINDOW", "90d", high=timedelta(days=365)),
        debt_debit_after=read.duration(
            "DEBT_DEBIT_AFTER", "3d", high=timedelta(days=365), zero_allowed=True
        ),
        debt_debit_retry=read.retry_policy("DEBT_DEBIT", switch="DEBT_DEBIT_WORKER_ENABLED"),
        reserve_bps=read.integer("RESERVE_BPS", 0, low=0, high=10_000),
        reserve_days=read.integer("RESERVE_DAYS", 30, low=0, high=180),
    )
