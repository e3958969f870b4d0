"""Runs a history against the real service: its webhook endpoint, services, moves, book and
workers (called in this process, as the Celery tasks call them), and the Stripe sandbox over
HTTP. Only time is simulated (``clock``). Each history runs inside a savepoint rolled back at
its end, with a reset sandbox, so histories never see one another.

After the steps, ``finish`` lets the world settle as production would: faults stop, accounts
are fixed, every event is delivered (again), and the workers run, the clock moving past every
backoff, hold and lease, until nothing changes. Then ``checks`` compares it with the reference
model (``reference.py``).
"""

import json
import logging
import math
import random
import traceback
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

import stripe
from django.db import connection, transaction
from django.db.models import Count, F, Max
from django.test import Client, override_settings

from config.errors import DomainError
from ledger.selectors import seller_balances
from ledger.services import WriteOffRefused, debt_write_off
from marketplace.models import Seller
from payouts import selectors
from payouts.models import (
    AccountDebit,
    DebitState,
    ReleaseState,
    ReserveRelease,
    SellerPolicyChange,
    SellerTransfer,
)
from payouts.services.debits import debts_debit_due
from payouts.services.holds import holds_release_due, order_release
from payouts.services.ledger_check import ledger_check
from payouts.services.policies import seller_policy_set
from payouts.services.reconciliation import reconciliation_run
from payouts.services.requeue import transfer_requeue_by_staff
from payouts.services.reserves import release_resend_by_staff, reserves_release_due
from payouts.services.reversals import reversals_process_due
from payouts.services.risk import seller_risk_release
from payouts.services.transfers import transfer_retry_by_staff, transfers_send_due
from payouts.stripe_api.gateway import get_gateway
from payouts.transfer.actors import Actor
from payouts.transfer.transitions import PAID_STATUSES, HeldReason, TransferStatus
from stripe_sandbox.common import PLATFORM_ACCOUNT_ID
from stripe_sandbox.testing import SandboxControlError
from tests.builders import (
    CONNECT_WEBHOOK_SECRET,
    WEBHOOK_SECRET,
    connected_seller,
    paid_intent,
    seller_order,
    sign,
)
from tests.factories import UserFactory
from tests.simulation.clock import simulated_time
from tests.simulation.history import FAULTY_OPERATIONS, SELLERS, History, Terms
from tests.simulation.reference import ReferenceModel

# Rows that are done: nothing is due on them and nothing needs a person.
FINISHED = (TransferStatus.COMPLETED, TransferStatus.PARTIALLY_REVERSED, TransferStatus.REVERSED)
# The Stripe timeout of the simulated service, and how long an injected timeout holds the
# call: short, so a timeout costs a fraction of a second of wall time.
STRIPE_TIMEOUT = timedelta(milliseconds=250)
FAULT_HOLD_SECONDS = 0.4
# finish(): how many rounds of "time passes, every worker runs" at most before calling the
# history stuck, and how far the clock moves each round (past the longest backoff and lease).
SETTLE_ROUNDS = 14
SETTLE_STEP = timedelta(hours=2)
# A risky history's thresholds: one disputed order among five paid holds the seller.
RISK_THRESHOLDS = {"risk_dispute_count": 1, "risk_dispute_ratio": Decimal("0.2")}
HALF = Fraction(1, 2)
# The date staff recorded a seller's consent to account debits.
CONSENT_AT = "2026-01-01T00:00:00Z"


class WorkerKilled(BaseException):  # noqa: N818 - it stands for the process dying, not an error
    """The worker process died right after Stripe answered, before recording it. A
    ``BaseException``: nothing in the service may catch it, as nothing catches SIGKILL."""


class KillingGateway:
    """The service's own gateway, which can kill the worker once right after a chosen call
    returns (Stripe has done it; the worker never records it)."""

    def __init__(self, real):
        self._real = real
        self.armed: set[str] = set()

    def __getattr__(self, name):
        attribute = getattr(self._real, name)
        if not callable(attribute):
            return attribute

        def call(*args, **kwargs):
            result = attribute(*args, **kwargs)
            if name in self.armed:
                self.armed.discard(name)
                raise WorkerKilled(name)
            return result

        return call


@dataclass
class SimOrder:
    order: object
    currency: str
    refunds: list[str] = field(default_factory=list)
    disputes: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    history: History
    failures: list[str]
    steps_run: int
    # What the history reached (reserve releases sent, account debits by state, risk holds):
    # the campaign sums them, so a profile that never reaches a feature shows it.
    reached: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return bool(self.failures)


@dataclass
class Environment:
    """What a history runs against: the test's sandbox and Stripe client, and the settings."""

    sandbox: object  # SandboxControl
    stripe_client: stripe.StripeClient
    payouts: object  # settings.PAYOUTS as the test configured it


def run(history: History, env: Environment) -> Outcome:
    """Run ``history`` from a clean world, settle it, check it; roll everything back."""
    env.sandbox.reset()
    payouts = replace(
        env.payouts,
        transfer_hold=timedelta(days=7) if history.hold else timedelta(0),
        dispute_recovery=history.dispute_recovery,
        dispute_fee_borne_by="platform",
        stripe=replace(env.payouts.stripe, timeout=STRIPE_TIMEOUT, max_network_retries=0),
        debt_debit_after=timedelta(days=3),
        **(RISK_THRESHOLDS if history.risk else {}),
    )
    logging.disable(logging.CRITICAL)  # thousands of histories: the service's logs are noise
    try:
        return _run(history, env, payouts)
    finally:
        logging.disable(logging.NOTSET)
        env.sandbox.reset()


def _run(history: History, env: Environment, payouts) -> Outcome:
    with (
        override_settings(PAYOUTS=payouts, STRIPE_PLATFORM_ACCOUNT_ID=PLATFORM_ACCOUNT_ID),
        transaction.atomic(),
        simulated_time() as clock,
    ):
        world = World(history, env, clock)
        try:
            world.play()
            world.finish()
            failures = world.checks()
        except Exception:  # a crash of the service is a finding too
            failures = [f"crashed at {world.current}:\n{traceback.format_exc(limit=6)}"]
        reached = world.reached()
        transaction.set_rollback(True)
    return Outcome(history, failures, world.steps_run, reached)


class World:
    def __init__(self, history: History, env: Environment, clock):
        self.history = history
        self.sandbox = env.sandbox
        self.stripe = env.stripe_client
        self.clock = clock
        self.rng = random.Random(history.seed)  # choices made while steps run (event order)
        self.web = Client()
        self.staff = UserFactory(is_staff=True, is_superuser=True)
        self.gateway = KillingGateway(get_gateway())
        self.sellers = [connected_seller(self.stripe) for _ in range(SELLERS)]
        fees = {}
        for seller, terms in zip(self.sellers, history.terms, strict=False):
            self._set_policy(seller, _policy_of(terms))
            if terms.fee_bps is not None:
                fees[seller.pk] = terms.fee_bps
        self.model = ReferenceModel(
            fee_bps=env.payouts.platform_fee_bps,
            dispute_recovery=history.dispute_recovery,
            seller_fees=fees,
        )
        self.orders: list[SimOrder] = []
        self.delivered: list[dict] = []
        self.delivered_ids: set[str] = set()
        self.refused_events: dict[str, str] = {}
        self.current = "set-up"
        self.steps_run = 0
        self.counts: Counter[str] = Counter()  # what staff's steps did (``reached``)

    # --- running ---------------------------------------------------------------------------

    def play(self) -> None:
        for index, step in enumerate(self.history.steps):
            self.current = f"step {index} {step}"
            getattr(self, step.name)(*step.args)
            self.steps_run += 1

    def finish(self) -> None:
        """Faults stop; Stripe's retries of every event arrive, in any order; the accounts are
        fixed; the workers run, the clock moving past holds and backoffs, until idle."""
        self.current = "finish"
        self.gateway.armed.clear()
        for operation in FAULTY_OPERATIONS:
            self.sandbox.script(operation, [], replace=True)
        self.deliver(self.delivered + self.undelivered(), shuffle=True)
        for seller in self.sellers:
            self.sandbox.set_transfers_capability(seller.stripe_account_id, "active")
        self.deliver(self.undelivered(), shuffle=False)
        self.run_workers()
        if self.history.hold:
            self.clock.advance(timedelta(days=8))  # every order's hold has ended
        self.settle(rounds=SETTLE_ROUNDS)
        # Every reserve's days pass: what each has left is released (settling moves the clock
        # a day at a time while a reserve waits for the next day's release).
        latest = SellerTransfer.objects.filter(amount_reserved__gt=0).aggregate(
            latest=Max("reserve_release_at")
        )["latest"]
        if latest is not None and latest >= self.clock.now():
            self.clock.advance(latest - self.clock.now() + timedelta(minutes=1))
            self.settle(rounds=SETTLE_ROUNDS)

    def release_risk_holds(self) -> None:
        """Staff review each seller held for risk (their disputes passed the thresholds) and
        release them: what the reference model owes them is then paid."""
        held = SellerTransfer.objects.filter(
            status=TransferStatus.HELD, held_reason=HeldReason.RISK
        ).values_list("seller_id", flat=True)
        for seller_id in sorted(set(held)):
            with suppress(DomainError):  # released meanwhile: nothing held any more
                seller_risk_release(seller_id=seller_id, actor=Actor.staff(self.staff))

    def resend_given_up_releases(self) -> None:
        """Staff send each reserve release that gave up again (Stripe read first): the seller
        is paid it once, never twice, whatever an earlier attempt did."""
        failed = ReserveRelease.objects.filter(state=ReleaseState.FAILED).order_by("pk")
        for release_id in failed.values_list("pk", flat=True):
            with suppress(DomainError, WorkerKilled):  # not failed any more, or killed
                release_resend_by_staff(
                    release_id=release_id,
                    user=self.staff,
                    reason="simulated re-send",
                    gateway=self.gateway,
                )

    def settle(self, *, rounds: int) -> None:
        """Deliver every event and run every worker, moving the clock past backoffs and
        leases, until a round changes nothing (or ``rounds`` run out)."""
        before = None
        for _ in range(rounds):
            refused = [e for e in self.delivered if e["id"] in self.refused_events]
            self.deliver(refused + self.undelivered(), shuffle=False)  # Stripe retries a 4xx
            self.release_risk_holds()
            self.resend_given_up_releases()
            self.run_workers()
            self.reconcile()
            after = self.fingerprint()
            if after == before and not self.reserves_waiting().exists():
                return
            before = after
            self.clock.advance(self.until_next_due())

    def until_next_due(self) -> timedelta:
        """How far to move the clock so every row waiting for a time (a backoff, a lease, an
        order's hold that began while settling) is due: at least ``SETTLE_STEP``."""
        if self.reserves_waiting().exists():
            return timedelta(days=1)  # that day's release is made: the next day's takes them
        due = [
            SellerTransfer.objects.exclude(status__in=FINISHED),
            ReserveRelease.objects.filter(state=ReleaseState.PENDING),
            AccountDebit.objects.filter(state=DebitState.PENDING),
        ]
        times = [rows.aggregate(latest=Max("next_retry_at"))["latest"] for rows in due]
        latest = max((time for time in times if time is not None), default=None)
        if latest is None:
            return SETTLE_STEP
        return max(SETTLE_STEP, latest - self.clock.now() + timedelta(seconds=1))

    def reserves_waiting(self):
        """Paid transfers whose reserve is due with something left, not in a release yet."""
        return SellerTransfer.objects.filter(
            amount_reserved__gt=F("reserve_refund") + F("reserve_dispute"),
            reserve_release__isnull=True,
            reserve_release_at__lte=self.clock.now(),
            status__in=PAID_STATUSES,
        )

    def fingerprint(self) -> list:
        return [
            list(SellerTransfer.objects.order_by("pk").values_list("pk", "status", "updated_at")),
            list(ReserveRelease.objects.order_by("pk").values_list("pk", "state", "updated_at")),
            list(AccountDebit.objects.order_by("pk").values_list("pk", "state", "updated_at")),
        ]

    # --- steps: the buyer and Stripe -------------------------------------------------------

    def pay(self, currency: str, sellers: tuple, amounts: tuple) -> None:
        chosen = [self.sellers[i] for i in sellers]
        order = seller_order(self.stripe, list(amounts), sellers=chosen, currency=currency)
        intent = paid_intent(self.stripe, order)
        order.stripe_payment_intent_id = intent["id"]
        order.stripe_charge_id = intent["latest_charge"]
        self.orders.append(SimOrder(order, currency))
        items = {seller.pk: amount for seller, amount in zip(chosen, amounts, strict=True)}
        self.model.paid(order.pk, currency=currency, items=items)

    def refund(self, which: int, fraction: float) -> None:
        sim = self._order(which)
        if sim is None:
            return
        left = self.model.orders[sim.order.pk].total - sum(
            self.model.orders[sim.order.pk].refunds.values()
        )
        amount = left if fraction == 1.0 else max(int(left * fraction), 1)
        if amount <= 0:
            return
        try:
            refund = self.stripe.v1.refunds.create(
                params={"payment_intent": sim.order.stripe_payment_intent_id, "amount": amount}
            )
        except stripe.StripeError:
            return  # Stripe refused it (a disputed charge, say): nothing happened
        sim.refunds.append(refund.id)
        if refund.status == "succeeded":
            self.model.refunded(sim.order.pk, refund.id, refund.amount)

    def fail_refund(self, which: int) -> None:
        refunds = [(sim, r) for sim in self.orders for r in sim.refunds]
        if not refunds:
            return
        sim, refund_id = refunds[which % len(refunds)]
        if refund_id not in self.model.orders[sim.order.pk].refunds:
            return
        try:
            self.sandbox.fail_refund(refund_id, "expired_or_canceled_card")
        except SandboxControlError:
            return
        self.model.refund_failed(sim.order.pk, refund_id)

    def open_dispute(self, which: int) -> None:
        sim = self._order(which)
        if sim is None or sim.disputes:
            return
        try:
            dispute = self.sandbox.open_dispute(sim.order.stripe_charge_id)
        except SandboxControlError:
            return
        sim.disputes.append(dispute["id"])
        self.model.dispute(sim.order.pk, dispute["id"], dispute["amount"], dispute["status"])

    def close_dispute(self, which: int, result: str) -> None:
        disputes = [(sim, d) for sim in self.orders for d in sim.disputes]
        if not disputes:
            return
        sim, dispute_id = disputes[which % len(disputes)]
        amount, status = self.model.orders[sim.order.pk].disputes[dispute_id]
        if status in ("won", "lost"):
            return
        try:
            self.sandbox.advance_dispute(dispute_id, result)
        except SandboxControlError:
            return
        self.model.dispute(sim.order.pk, dispute_id, amount, result)

    def restrict_account(self, seller: int) -> None:
        self.sandbox.set_transfers_capability(self.sellers[seller].stripe_account_id, "inactive")

    def fix_account(self, seller: int) -> None:
        self.sandbox.set_transfers_capability(self.sellers[seller].stripe_account_id, "active")

    def seller_pays_out(self, which: int) -> None:
        """A seller with money at Stripe pays it all out to their bank: a reversal now finds
        nothing to take back (Stripe refuses it for an insufficient balance)."""
        balances = [
            (seller.stripe_account_id, balance)
            for seller in self.sellers
            for balance in self.sandbox.account_balance(seller.stripe_account_id)["available"]
            if balance["amount"] > 0
        ]
        if not balances:
            return
        account, balance = balances[which % len(balances)]
        self.sandbox.simulate_payout(account, balance["amount"], balance["currency"])

    def stripe_fault(self, operation: str, fault: str) -> None:
        entry = {"action": fault}
        if fault == "timeout":
            entry["timeout_seconds"] = FAULT_HOLD_SECONDS
        self.sandbox.script(operation, [entry])

    def stripe_forgets_keys(self) -> None:
        """A day passes with no worker running; Stripe forgets every idempotency key."""
        self.clock.advance(timedelta(hours=25))
        self.sandbox.forget_idempotency_keys()

    def advance(self, minutes: int) -> None:
        self.clock.advance(timedelta(minutes=minutes))

    def days_pass(self, days: int) -> None:
        """Days pass with no worker running: a debt grows old enough to debit, a reserve's
        days end."""
        self.clock.advance(timedelta(days=days))

    def seller_earns(self, seller: int, currency: str, amount: int) -> None:
        """The seller's balance at Stripe grows from elsewhere (not our transfers): a debit
        can take from it. What they hold of our money is unchanged."""
        self.sandbox.adjust_account(self.sellers[seller].stripe_account_id, amount, currency)

    def debtor_earns(self, which: int, factor: float) -> None:
        """A seller who owes (by position among those with open debt in the book) has money
        at Stripe again from elsewhere: ``factor`` times their debt, so a debit of it may be
        covered or refused for the balance."""
        owing = self._owing()
        if not owing:
            return
        seller, currency, debt = owing[which % len(owing)]
        amount = max(int(debt * factor), 1)
        self.sandbox.adjust_account(seller.stripe_account_id, amount, currency)

    # --- steps: webhooks -------------------------------------------------------------------

    def deliver_events(self, how_many: int, duplicate: bool) -> None:
        """Some of the events not delivered yet, in any order; perhaps one again."""
        waiting = self.undelivered()
        if not waiting:
            return
        chosen = self.rng.sample(waiting, 1 + how_many % len(waiting))
        if duplicate and self.delivered:
            chosen.append(self.rng.choice(self.delivered))
        self.deliver(chosen, shuffle=True)

    def undelivered(self) -> list[dict]:
        return [e for e in self.sandbox.events() if e["id"] not in self.delivered_ids]

    def deliver(self, events: list[dict], *, shuffle: bool) -> None:
        if shuffle:
            self.rng.shuffle(events)
        for event in events:
            connect = bool(event.get("account"))
            body = json.dumps(event).encode()
            secret = CONNECT_WEBHOOK_SECRET if connect else WEBHOOK_SECRET
            response = self.web.post(
                "/webhooks/stripe/connect/" if connect else "/webhooks/stripe/",
                data=body,
                content_type="application/json",
                HTTP_STRIPE_SIGNATURE=sign(body, secret),
            )
            if event["id"] not in self.delivered_ids:
                self.delivered_ids.add(event["id"])
                self.delivered.append(event)
            if response.status_code == 200:
                self.refused_events.pop(event["id"], None)
            else:
                self.refused_events[event["id"]] = (
                    f"{event['type']}: {response.status_code} {response.content[:300]!r}"
                )

    # --- steps: workers --------------------------------------------------------------------

    def run_workers(self) -> None:
        """One tick of each worker, as beat's sweeps start them."""
        for work in (self._send, holds_release_due, self._reverse, self._reserves, self._debits):
            # A killed worker's claimed row keeps its lease; a later tick takes it up.
            with suppress(WorkerKilled):
                work()

    def quiet_hour(self) -> None:
        """Every event arrives and the workers catch up, without time passing (holds stay)."""
        for _ in range(2):
            self.deliver(self.undelivered(), shuffle=False)
            self.run_workers()

    def run_worker(self, which: str) -> None:
        """One tick of one worker alone."""
        work = {
            "send": self._send,
            "release_sweep": holds_release_due,
            "reverse": self._reverse,
            "reserve_sweep": self._reserves,
            "debit_sweep": self._debits,
        }
        with suppress(WorkerKilled):
            work[which]()

    def _send(self) -> None:
        transfers_send_due(gateway=self.gateway)

    def _reverse(self) -> None:
        try:
            reversals_process_due(time_budget=timedelta(seconds=60), gateway=self.gateway)
        finally:
            # The service gave back what it has heard of: the model's facts, once every event
            # has arrived (a refund failed at Stripe but not heard of yet is not given back:
            # ``ladder`` seed 131).
            if not self.refused_events and not self.undelivered():
                self.model.workers_ran()

    def _reserves(self) -> None:
        reserves_release_due(gateway=self.gateway)

    def _debits(self) -> None:
        debts_debit_due(gateway=self.gateway)

    def reconcile(self) -> None:
        with suppress(WorkerKilled):
            reconciliation_run(since=None)

    def kill_after_stripe(self, operation: str) -> None:
        self.gateway.armed.add(operation)

    # --- steps: staff ----------------------------------------------------------------------

    def release(self, which: int) -> None:
        sim = self._order(which)
        if sim is None:
            return
        with suppress(DomainError):  # nothing to release: a 409, nothing changed
            order_release(order_id=sim.order.pk, actor=Actor.staff(self.staff))

    def risk_release(self, seller: int) -> None:
        """Staff review a seller held for their disputes and release them."""
        with suppress(DomainError):  # nothing held for risk: a 409, nothing changed
            seller_risk_release(seller_id=self.sellers[seller].pk, actor=Actor.staff(self.staff))

    def change_policy(self, seller: int, change: str) -> None:
        """Staff change a seller's policy: debits allowed or not, another reserve for the
        orders to come (a reserve already kept keeps its terms)."""
        self._set_policy(self.sellers[seller], POLICY_CHANGES[change])

    def _set_policy(self, seller: Seller, changes: dict) -> None:
        if changes:
            seller_policy_set(seller_id=seller.pk, changes=changes, user=self.staff)

    def staff_retry(self, which: int) -> None:
        self._staff_on(
            TransferStatus.FAILED,
            which,
            lambda row: transfer_retry_by_staff(
                transfer_id=row.pk, user=self.staff, gateway=self.gateway
            ),
        )

    def staff_requeue(self, which: int) -> None:
        self._staff_on(
            TransferStatus.PERMANENTLY_FAILED,
            which,
            lambda row: transfer_requeue_by_staff(
                transfer_id=row.pk, user=self.staff, reason="simulated staff re-queue"
            ),
        )

    def _staff_on(self, status: str, which: int, act) -> None:
        rows = list(SellerTransfer.objects.filter(status=status).order_by("pk"))
        if not rows:
            return
        with suppress(DomainError, WorkerKilled):  # refused with a 4xx: nothing changed
            act(rows[which % len(rows)])

    def write_off(self, which: int) -> None:
        """Once the workers are idle, staff write off all the debt of a seller who owes."""
        self.settle(rounds=4)
        self.write_off_now(which, settled=True)

    def write_off_now(self, which: int, *, settled: bool = False) -> None:
        """Staff write off all the debt the book shows for a seller who owes, without waiting
        for the workers: a debit may be pending, and a write-off of its part is refused (a
        400, nothing changed).

        Stripe's events arrive first (no worker runs): the reference model ties the write-off
        to what the seller keeps of each order by the facts it knows, so the book must know
        them too (a refund failed but not yet heard of would leave the debt of it forgiven for
        good in the model, while the service gives it back: seed 10 of ``ladder``)."""
        self.deliver(self.undelivered(), shuffle=False)
        owing = self._owing()
        if not owing:
            return
        seller, currency, debt = owing[which % len(owing)]
        kept = self._kept_per_order(seller, currency)
        entitled = None if settled else self._entitled_in_the_book(seller, currency)
        if entitled is not None:
            # The book may lag the facts (a failed refund's debt not cancelled yet): what the
            # seller keeps, and the entitlement a later rise is measured from, are the book's.
            held = self.held_at_stripe()
            kept = {
                order: round(held.get((seller.stripe_account_id, currency, order), 0) - owed)
                for order, owed in entitled.items()
            }
        try:
            debt_write_off(
                seller_id=seller.pk,
                currency=currency,
                amount=debt,
                reason="simulated write-off",
                user=self.staff,
            )
        except WriteOffRefused:
            self.counts["write-offs refused"] += 1
            return
        self.counts["write-offs"] += 1
        self.model.written_off(
            seller=seller.pk,
            currency=currency,
            amount=debt,
            kept=kept,
            settled=settled,
            entitled=entitled,
        )

    def _entitled_in_the_book(self, seller: Seller, currency: str) -> dict[int, int]:
        """What the service's rows say the seller is owed of each order now: their share less
        what was taken back and what is booked as their debt (the debt of a refund that failed
        stays booked until the workers cancel it)."""
        rows = SellerTransfer.objects.filter(seller=seller, currency=currency)
        return dict(
            rows.values_list("order_id", F("amount") - F("amount_reversed") - F("amount_owed"))
        )

    def _owing(self) -> list[tuple[Seller, str, int]]:
        """Each seller and currency with open debt in the book, and the debt."""
        return [
            (seller, currency, balance["debt"])
            for seller in self.sellers
            for currency, balance in seller_balances(seller_id=seller.pk).items()
            if balance["debt"] > 0
        ]

    # --- reading the world -----------------------------------------------------------------

    def _order(self, which: int) -> SimOrder | None:
        return self.orders[which % len(self.orders)] if self.orders else None

    def held_at_stripe(self) -> dict[tuple[str, str, int], int]:
        """What each (account, currency, order) holds at Stripe: transfers less reversals, less
        account debits. A reserve release (metadata ``reserve_release_id``) and an account
        debit (a transfer made as the seller's account to the platform's) belong to no order:
        they count under order 0."""
        state = self.sandbox.state()
        held: dict[tuple[str, str, int], int] = {}
        for transfer in state["transfers"]:
            order = int(transfer["metadata"].get("order_id", 0))
            key = (transfer["destination"], transfer["currency"], order)
            held[key] = held.get(key, 0) + transfer["amount"] - transfer["amount_reversed"]
        for debit in state["account_debits"]:
            key = (debit["source_account"], debit["currency"], 0)
            held[key] = held.get(key, 0) - debit["amount"] + debit["amount_reversed"]
        return held

    def _kept_per_order(self, seller: Seller, currency: str) -> dict[int, int]:
        """What the seller keeps of each order beyond what they are owed for it: its transfer
        at Stripe, and what its reserve has left (theirs, sent in a release or to be)."""
        held = self.held_at_stripe()
        reserves = dict(
            SellerTransfer.objects.filter(seller=seller, currency=currency).values_list(
                "order_id", F("amount_reserved") - F("reserve_refund") - F("reserve_dispute")
            )
        )
        kept = {}
        for order_id in self.model.orders:
            at_stripe = held.get((seller.stripe_account_id, currency, order_id), 0)
            at_stripe += max(reserves.get(order_id, 0), 0)
            # To the nearest unit, as production rounds the share: truncating 305.93 to 305 left
            # one unit of the write-off tied to no order, forgiven for good (seed 5114).
            # Half a unit up: production's split of a refund gives the odd unit to one seller
            # or another, and one kept 2704.5 by the model may have been left 2705 (its debt,
            # 2705, is then tied whole to the order, not 2704 and a unit for good: seed 6 of
            # ``ladder``).
            kept[order_id] = math.floor(at_stripe - self.model.owed(seller.pk, order_id) + HALF)
        return kept

    def reached(self) -> dict[str, int]:
        """How many reserve releases, account debits (by state), risk holds and write-offs
        (made or refused) it made."""
        counts = {
            f"releases {state}": n
            for state, n in ReserveRelease.objects.values_list("state").annotate(n=Count("pk"))
        }
        counts |= {
            f"debits {state}": n
            for state, n in AccountDebit.objects.values_list("state").annotate(n=Count("pk"))
        }
        risk = SellerPolicyChange.objects.filter(kind="risk_release").count()
        return counts | ({"risk releases": risk} if risk else {}) | dict(self.counts)

    # --- checks ----------------------------------------------------------------------------

    def checks(self) -> list[str]:
        self.current = "checks"
        failures = [f"event refused: {what}" for what in self.refused_events.values()]
        failures += self.check_sellers_hold_what_they_are_owed()
        failures += [f"ledger_check: {found}" for found in ledger_check()[1]]
        failures += self.check_unfinished_rows_need_attention()
        failures += self.check_reserves_released_and_debits_done()
        failures += self.check_book_balances()
        if failures:
            failures.append(self.rows_table())
        return failures

    def rows_table(self) -> str:
        fields = (
            "pk",
            "order_id",
            "seller_id",
            "currency",
            "status",
            "amount",
            "amount_netted",
            "amount_withheld",
            "reversal_target",
            "dispute_target",
            "amount_reversed",
            "amount_owed",
            "amount_returned",
            "amount_to_give_back",
            "end_reason",
            "held_reason",
        )
        rows = SellerTransfer.objects.order_by("pk").values_list(*fields)
        return "rows " + " ".join(fields) + "\n" + "\n".join(f"  {row}" for row in rows)

    def check_sellers_hold_what_they_are_owed(self) -> list[str]:
        held = self.held_at_stripe()
        failures = []
        for seller in self.sellers:
            for currency in ("usd", "jpy"):
                at_stripe = sum(
                    amount
                    for (account, cur, _), amount in held.items()
                    if account == seller.stripe_account_id and cur == currency
                )
                debt = seller_balances(seller_id=seller.pk).get(currency, {}).get("debt", 0)
                expected = self.model.expected(seller.pk, currency, open_debt=debt)
                if abs(at_stripe - expected.amount) > expected.slack:
                    how = "too much" if at_stripe > expected.amount else "too little"
                    failures.append(
                        f"seller holds {how}: seller {seller.pk} holds {at_stripe} {currency} "
                        f"at Stripe; owed "
                        f"{float(expected.amount):.2f} (open debt {debt}, rounding ±"
                        f"{expected.slack})"
                    )
        return failures

    def check_unfinished_rows_need_attention(self) -> list[str]:
        now = self.clock.now()
        attention = set(selectors.transfers_needing_attention(now=now).values_list("pk", flat=True))
        unfinished = SellerTransfer.objects.exclude(status__in=FINISHED).exclude(pk__in=attention)
        return [
            f"transfer {row.pk} left {row.status} ({row.end_reason or row.held_reason}) without "
            "a reason in needs attention"
            for row in unfinished
            if not _ended_as_it_should(row)
        ]

    def check_reserves_released_and_debits_done(self) -> list[str]:
        """Every reserve's days have passed: each seller's reserve account is empty, and no
        release or debit is left pending (nor a release given up: the seller never gets it)."""
        failures = [
            f"reserve left: seller {seller.pk} still has {balance.get('reserve')} {currency} in "
            "their reserve account"
            for seller in self.sellers
            for currency, balance in seller_balances(seller_id=seller.pk).items()
            if balance.get("reserve")
        ]
        failures += [
            f"release {state}: reserve release {pk} of seller {seller} ({amount}): {error}"
            for pk, seller, amount, state, error in ReserveRelease.objects.exclude(
                state=ReleaseState.SENT
            ).values_list("pk", "seller_id", "amount", "state", "error_message")
        ]
        failures += [
            f"debit pending: account debit {pk} of seller {seller} ({amount})"
            for pk, seller, amount in AccountDebit.objects.filter(
                state=DebitState.PENDING
            ).values_list("pk", "seller_id", "amount")
        ]
        return failures

    def check_book_balances(self) -> list[str]:
        """The book's balance constraints run at commit; a history never commits, so they are
        run now (then deferred again for the rollback)."""
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        except Exception as error:  # the database names the entry that does not balance
            return [f"the book does not balance: {error}"]
        return []


def _ended_as_it_should(row: SellerTransfer) -> bool:
    """A transfer cancelled because its order was refunded in full before it was sent: done,
    as long as the order is still refunded (the money check says whether it is)."""
    return (
        row.status == TransferStatus.PERMANENTLY_FAILED
        and row.end_reason == "order_refunded"
        and (row.order.status == "refunded")
    )


# What staff change of a seller's policy (``history.POLICY_CHANGES``).
POLICY_CHANGES = {
    "allow_debits": {"debits_allowed": True, "debit_consent_at": CONSENT_AT},
    "forbid_debits": {"debits_allowed": False},
    "reserve_none": {"reserve_bps": 0},
    "reserve_1000_14": {"reserve_bps": 1000, "reserve_days": 14},
}


def _policy_of(terms: Terms) -> dict:
    """The policy fields staff set for a seller's ``Terms`` (none: every default)."""
    changes: dict = {}
    if terms.reserve_bps:
        changes |= {"reserve_bps": terms.reserve_bps, "reserve_days": terms.reserve_days}
    if terms.fee_bps is not None:
        changes["fee_bps"] = terms.fee_bps
    if terms.debits:
        changes |= POLICY_CHANGES["allow_debits"]
    return changes
