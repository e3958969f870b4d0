"""The reversal worker: take each seller's share of a refund back at Stripe.

It claims due ``reversal_pending`` rows (a lease, ``SKIP LOCKED``; see
``payouts.transfer.locks``), calls Stripe with no transaction open, and settles each outcome
under the row's lock with a named move, until no due row is left or its time budget is spent.
The outcomes:

=========================================  ============================================
Stripe (or the row) says                   the row becomes
=========================================  ============================================
no ``stripe_transfer_id`` (legacy row)     permanently_failed, Stripe not called
a reversal                                 reversed / partially_reversed
the transfer is already fully reversed     reversed, with an explanatory message
404 ``resource_missing``                   permanently_failed after exactly one call
the seller's balance cannot cover it       reversal_refused: the rest is the seller's debt
a give-back the account cannot receive     reversal_pending, waiting for the account
                                           (``held_reason``), no retry spent
anything else                              reversal_pending again, after the backoff;
                                           permanently_failed once retries run out
=========================================  ============================================
"""

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.db import transaction
from django.utils import timezone

import ledger.services
from ledger.selectors import seller_debt_claimed, seller_written_off
from marketplace.models import AccountStatus
from marketplace.services import seller_account_status_set
from payouts.concurrency import run_loops
from payouts.models import SellerTransfer
from payouts.services.debits import debit_answer_due
from payouts.services.refunds import refunds_settle_due
from payouts.stripe_api.gateway import (
    DestinationCannotReceive,
    GatewayError,
    SellerBalanceInsufficient,
    StripeGateway,
    TransferAlreadyReversed,
    TransferNotFound,
    get_gateway,
)
from payouts.transfer import money, moves
from payouts.transfer.actors import Actor
from payouts.transfer.idempotency import (
    is_reversal_key,
    key_may_be_forgotten,
    next_attempt,
    return_key,
    reversal_key,
)
from payouts.transfer.locks import claim_due, step_key_keep, transfer_lock
from payouts.transfer.transitions import ConcurrentTransition, EndReason, HeldReason, TransferStatus
from payouts.wakeups import clear_mark, debits_due_at, reversals_due_at

logger = logging.getLogger(__name__)

WORKER = Actor.worker("process_reversals")
# A give-back waiting for the seller's account is sent when Stripe says the account can receive;
# should that event be lost, it is tried again this much later (spending no retry).
ACCOUNT_RECHECK = timedelta(days=1)


class ReversalOutcome(StrEnum):
    REVERSED = "reversed"
    PARTIALLY_REVERSED = "partially_reversed"
    # A refund raised the target while the call was in flight: due again now for the rest.
    MORE_TO_REVERSE = "more_to_reverse"
    ALREADY_REVERSED = "already_reversed"
    NOT_FOUND = "not_found"
    # The seller's shares went down: what was taken beyond them was given back.
    GIVEN_BACK = "given_back"
    # The seller's balance cannot cover it: the rest of the share is the seller's debt.
    REFUSED = "reversal_refused"
    # What is to be given back cannot be received by the seller's account: it waits for it.
    WAITING_FOR_ACCOUNT = "waiting_for_account"
    WAITING_FOR_DEBIT = "waiting_for_debit"
    NO_TRANSFER_ID = "no_transfer_id"
    RETRY_SCHEDULED = "retry_scheduled"
    GAVE_UP = "permanently_failed"
    SKIPPED = "skipped"
    LOST_RACE = "lost_race"


_SETTLED = {
    TransferStatus.COMPLETED: ReversalOutcome.GIVEN_BACK,
    TransferStatus.REVERSED: ReversalOutcome.REVERSED,
    TransferStatus.PARTIALLY_REVERSED: ReversalOutcome.PARTIALLY_REVERSED,
    TransferStatus.REVERSAL_PENDING: ReversalOutcome.MORE_TO_REVERSE,
}


def reversals_process_due(
    *, time_budget: timedelta | None = None, gateway: StripeGateway | None = None
) -> dict[str, int]:
    """Reverse the due transfers, several at a time, within a time budget.

    Reverse due transfers, ``REVERSAL_CONCURRENCY`` at a time, until none is due or
    ``time_budget`` (default: most of the beat interval) is spent. Returns counts per outcome.

    Each thread claims one row at a time, so a claimed row's call starts right away and its lease
    is never spent waiting behind other rows.
    """
    policy = settings.PAYOUTS.reversal
    gateway = gateway or get_gateway()
    # Refunds in another currency than their settlement count once their own balance
    # transaction is read: read those first, so their shares are due in this same run.
    refunds_settled = refunds_settle_due(gateway=gateway)
    if not policy.enabled:
        return {"disabled": 1}
    deadline = time.monotonic() + (time_budget or policy.check_interval * 0.8).total_seconds()

    def step() -> str | None:
        if time.monotonic() >= deadline:
            return None
        rows = claim_due(statuses=[TransferStatus.REVERSAL_PENDING], now=timezone.now(), limit=1)
        return transfer_reverse(rows[0], gateway=gateway) if rows else None

    outcomes = dict(run_loops(step, threads=settings.PAYOUTS.reversal_concurrency))
    if refunds_settled:
        outcomes["refunds_settled"] = refunds_settled
    return outcomes


def reversals_drain() -> dict[str, int]:
    """Reverse every due transfer now, after a wake-up.

    Reverse every due transfer now (a wake-up after a refund or a backoff). Wake-ups sent
    while this drain runs start another one, which finds what this one passed by."""
    clear_mark("reversals")
    return reversals_process_due()


def transfer_reverse(transfer: SellerTransfer, *, gateway: StripeGateway) -> ReversalOutcome:
    """One reversal attempt of a claimed ``reversal_pending`` row."""
    if transfer.status != TransferStatus.REVERSAL_PENDING:
        return ReversalOutcome.SKIPPED
    try:
        if not transfer.stripe_transfer_id and transfer.sent > 0:
            moves.reversal_given_up(
                transfer,
                reason=EndReason.NO_STRIPE_TRANSFER,
                message="no stripe_transfer_id: nothing to reverse at Stripe (legacy row)",
                actor=WORKER,
            )
            return ReversalOutcome.NO_TRANSFER_ID
        return _attempt(transfer, gateway)
    except ConcurrentTransition:
        logger.info("another actor moved the transfer first", extra={"transfer_id": transfer.pk})
        return ReversalOutcome.LOST_RACE


def _attempt(transfer: SellerTransfer, gateway: StripeGateway) -> ReversalOutcome:
    """One attempt: give back, find what a lost answer did, or take the rest of the shares."""
    kept, facts = transfer.reversal_idempotency_key, transfer.facts
    if money.balances(facts).next == money.NextStep.GIVE_BACK:
        if is_reversal_key(kept):
            return _settle_lost_reversal(transfer, gateway)
        return _give_back(transfer, gateway)
    if kept and not is_reversal_key(kept):
        # The shares rose again before a give-back's lost answer was found: not sent again,
        # but what it did is read before anything else is sent and its key let go.
        return _settle_lost_give_back(transfer, gateway)
    key = reversal_key(transfer)
    try:
        return _reverse(transfer, facts, gateway, key)
    except SellerBalanceInsufficient as error:
        return _refuse(transfer, f"the seller's Stripe balance refused it: {error.describe()}")
    except TransferNotFound as error:
        moves.reversal_given_up(
            transfer,
            reason=EndReason.TRANSFER_MISSING,
            message=f"transfer not found at Stripe: {error.describe()}",
            actor=WORKER,
        )
        return ReversalOutcome.NOT_FOUND
    except TransferAlreadyReversed as error:
        message = (
            "Stripe reports the transfer already fully reversed (outside this attempt); "
            f"marked reversed without a new reversal. {error.describe()}"
        )
        _settle(transfer, amount_reversed=transfer.sent, message=message)
        return ReversalOutcome.ALREADY_REVERSED
    except GatewayError as error:
        return _attempt_failed(transfer, error=error, key=key)


def _reverse(transfer, facts: money.Facts, gateway: StripeGateway, key: str) -> ReversalOutcome:
    """Reverse what is left of the shares (``money.to_reverse``).

    Stripe's reversals are read first when a 5xx asked for it, when the key may be forgotten,
    when the key is kept (an earlier attempt since the last settle failed, perhaps behind a
    lost answer after Stripe reversed) and this attempt sends nothing: only reading finds it;
    and when more is recorded reversed than the shares, with nothing due back. Then a reversal
    was recorded as Stripe reported it (an event, reconciliation), not as ours: perhaps ours,
    made by a worker that died before recording it while the shares fell. Only Stripe's list
    tells ours (given back) from one made elsewhere (reported, never given back)."""
    remaining, asked = money.left_to_take(facts), money.to_reverse(facts)
    must_read = (
        transfer.read_stripe_first
        or key_may_be_forgotten(transfer, now=timezone.now())
        or (bool(transfer.reversal_idempotency_key) and asked <= 0)
        or remaining < 0
    )
    seen = _reversed_at_stripe(transfer, gateway) if must_read else None
    if seen is not None and (seen.total > facts.reversed or remaining <= 0):
        return _settle(
            transfer, amount_reversed=seen.total, ours=seen.ours, elsewhere=seen.elsewhere
        )
    if remaining <= 0:
        return _settle(transfer, amount_reversed=facts.reversed)
    if money.at_stripe(facts) <= 0:
        return _refuse(transfer, "the rest of the share was never paid out at Stripe")
    if transfer.reversal_idempotency_key != key:
        # Kept before the call: a worker killed behind it leaves the reversal to be read.
        step_key_keep(transfer, key=key)
    reversal = gateway.reverse_transfer(
        transfer.stripe_transfer_id,
        amount=asked,
        metadata={"order_id": str(transfer.order_id), "seller_transfer_id": str(transfer.pk)},
        idempotency_key=key,
    )
    total = facts.reversed + reversal.amount
    return _settle(
        transfer, amount_reversed=total, stripe_reversal_id=reversal.id, ours=reversal.amount
    )


def _settle_lost_reversal(transfer: SellerTransfer, gateway: StripeGateway) -> ReversalOutcome:
    """Record what Stripe reversed before giving back after a possibly lost answer.

    Something is to be given back, but the reversal sent last may have been made behind a
    lost answer, and it will not be sent again: record what Stripe reversed first (what our
    reversals took beyond the shares is added to what is given back). The row stays due for
    the give-back, which then sends with a key of its own."""
    try:
        seen = _reversed_at_stripe(transfer, gateway)
    except GatewayError as error:
        return _attempt_failed(transfer, error=error, key=transfer.reversal_idempotency_key)
    return _settle(transfer, amount_reversed=seen.total, ours=seen.ours, elsewhere=seen.elsewhere)


def _settle_lost_give_back(transfer: SellerTransfer, gateway: StripeGateway) -> ReversalOutcome:
    """Record what a give-back whose answer was lost did.

    A give-back was sent last, its answer lost, and nothing is to be given back any more:
    record the transfer it made at Stripe, if any (found by our metadata), so the shares are
    taken from what the seller really holds. The row stays due for the rest."""
    try:
        found = _return_at_stripe(transfer, gateway)
    except GatewayError as error:
        return _attempt_failed(transfer, error=error, key=transfer.reversal_idempotency_key)
    if found is None:
        return _settle(transfer)  # Stripe holds none: it gave nothing back
    returned = transfer.amount_returned + found.amount
    return _settle(transfer, amount_returned=returned, stripe_return_id=found.id)


@dataclass(frozen=True, slots=True)
class SeenAtStripe:
    """The reversals of one transfer as Stripe lists them.

    The transfer's reversals at Stripe: in all, by us (they carry our metadata), and made
    elsewhere (the Dashboard)."""

    total: int
    ours: int

    @property
    def elsewhere(self) -> int:
        return self.total - self.ours


def _reversed_at_stripe(transfer: SellerTransfer, gateway: StripeGateway) -> SeenAtStripe:
    """Read the transfer's reversals at Stripe before this attempt sends anything.

    The last attempt may have reversed money behind an error, and this one would use a new
    key (or one Stripe may have forgotten, or send nothing): read what Stripe holds first."""
    reversals = gateway.list_reversals(transfer.stripe_transfer_id)
    ours = [r for r in reversals if r.metadata.get("seller_transfer_id") == str(transfer.pk)]
    return SeenAtStripe(total=sum(r.amount for r in reversals), ours=sum(r.amount for r in ours))


def _settle(transfer: SellerTransfer, **outcome) -> ReversalOutcome:
    """Record a reversal attempt's outcome.

    Record the outcome under the row lock, so a refund that raised the target while the call
    was in flight is seen (the row then stays due for the rest)."""
    with transaction.atomic():
        row = transfer_lock(transfer.pk)
        if row.status != transfer.status:
            raise ConcurrentTransition(row.pk, transfer.status, "settled")
        moves.reversal_settled(row, actor=WORKER, **outcome)
    return _SETTLED[row.status]


def _give_back(transfer: SellerTransfer, gateway: StripeGateway) -> ReversalOutcome:
    """Give back to the seller what was taken beyond their shares.

    The seller's shares went down (a dispute won, a refund that failed): give back what was
    taken beyond them, their debt first, the rest in a new transfer keyed on this step."""
    with transaction.atomic():
        row = transfer_lock(transfer.pk)
        if row.status != transfer.status:
            raise ConcurrentTransition(row.pk, transfer.status, "given back")
        if (answer_due := _debt_cancelled_first(row)) is not None:
            moves.give_back_waits_for_debit(row, until=answer_due, actor=WORKER)
            return ReversalOutcome.WAITING_FOR_DEBIT
        if row.amount_to_give_back and not row.reversal_idempotency_key:
            # Kept before the call: a worker killed behind it leaves the give-back findable.
            step_key_keep(row, key=return_key(row))
    if row.amount_to_give_back == 0:
        return _settle(row)
    key = row.reversal_idempotency_key
    try:
        must_read = row.read_stripe_first or key_may_be_forgotten(row, now=timezone.now())
        found = _return_at_stripe(row, gateway) if must_read else None
        result = found or _send_back(row, gateway, key)
    except DestinationCannotReceive as error:
        return _give_back_waits(row, error=error, key=key)
    except GatewayError as error:
        return _attempt_failed(row, error=error, key=key)
    returned = row.amount_returned + result.amount
    _settle(row, amount_returned=returned, stripe_return_id=result.id)
    return ReversalOutcome.GIVEN_BACK


def _debt_cancelled_first(row: SellerTransfer) -> datetime | None:
    """Cancel what the row gives back of the seller's debt, under the debt's lock.

    A debt staff wrote off was never paid: the seller kept it. What of the row's debt is not
    owed any more and not netted either is cancelled from the write-off, never sent. When the
    debt to cancel is in a pending account debit, nothing is done yet: returns when the
    debit's answer is due. Cancelled now, it would be taken twice should the debit succeed;
    sent back instead, it would be paid out for a debt never paid should the debit be
    refused. The give-back waits for the answer (the debit's record wakes the worker)."""
    debt = ledger.services.seller_debt_lock(seller_id=row.seller_id, currency=row.currency)
    written_off = seller_written_off(seller_id=row.seller_id, currency=row.currency)
    cancel = money.debt_cancelled(row.facts, seller_debt=debt, written_off=written_off)
    claimed = seller_debt_claimed(seller_id=row.seller_id, currency=row.currency)
    if claimed and cancel.cancelled > debt - claimed:
        return debit_answer_due(seller_id=row.seller_id, currency=row.currency)
    if cancel.total:
        moves.debt_given_back(row, amount=cancel.total, written_off=cancel.revived, actor=WORKER)
    return None


def _give_back_waits(
    row: SellerTransfer, *, error: DestinationCannotReceive, key: str
) -> ReversalOutcome:
    """Let the give-back wait for the seller's account.

    The seller's account cannot receive what is given back: like a transfer to such an
    account, it waits for the account without spending retries (``payouts.services.holds``
    resumes it when the account can receive, or the seller is reconnected)."""
    status = AccountStatus.DEAUTHORIZED if error.deauthorized else AccountStatus.RESTRICTED
    seller_account_status_set(seller=row.seller, status=status, reason=error.describe())
    reason = (
        HeldReason.ACCOUNT_DEAUTHORIZED if error.deauthorized else HeldReason.ACCOUNT_RESTRICTED
    )
    moves.give_back_waits(
        row,
        reason=reason,
        message=f"the seller's account cannot receive what is given back: {error.describe()}",
        follow=next_attempt(key, error, read_stripe_first=row.read_stripe_first),
        recheck_at=timezone.now() + ACCOUNT_RECHECK,
        actor=WORKER,
    )
    return ReversalOutcome.WAITING_FOR_ACCOUNT


def _send_back(row: SellerTransfer, gateway: StripeGateway, key: str):
    return gateway.create_transfer(
        amount=row.amount_to_give_back,
        currency=row.currency,
        destination=row.seller.stripe_account_id,
        transfer_group=f"order_{row.order_id}",
        source_transaction=None,
        metadata={
            "order_id": str(row.order_id),
            "seller_transfer_id": str(row.pk),
            "given_back_after": str(row.amount_returned),
        },
        idempotency_key=key,
    )


def _return_at_stripe(row: SellerTransfer, gateway: StripeGateway):
    """A transfer an earlier attempt of this step already sent back, found by our metadata."""
    for candidate in gateway.find_transfers(transfer_group=f"order_{row.order_id}"):
        metadata = candidate.metadata
        if metadata.get("seller_transfer_id") == str(row.pk) and metadata.get(
            "given_back_after"
        ) == str(row.amount_returned):
            return candidate
    return None


def _refuse(transfer: SellerTransfer, why: str) -> ReversalOutcome:
    """Record a share Stripe will not reverse as the seller's debt.

    What is left of the share becomes the seller's debt, recorded under the row lock so a
    refund that raised the target meanwhile is included."""
    with transaction.atomic():
        row = transfer_lock(transfer.pk)
        if row.status != transfer.status:
            raise ConcurrentTransition(row.pk, transfer.status, TransferStatus.REVERSAL_REFUSED)
        if money.left_to_take(row.facts) <= 0:
            # The shares fell while the refused call was in flight: nothing is left to owe,
            # and what was taken beyond them is given back.
            moves.reversal_settled(row, actor=WORKER)
            return _SETTLED[row.status]
        moves.reversal_refused(row, message=f"reversal refused: {why}", actor=WORKER)
        # The debt may be debited from the seller's account once it is old enough.
        debits_due_at(timezone.now() + settings.PAYOUTS.debt_debit_after)
    return ReversalOutcome.REFUSED


def _attempt_failed(transfer: SellerTransfer, *, error: GatewayError, key: str) -> ReversalOutcome:
    follow = next_attempt(key, error, read_stripe_first=transfer.read_stripe_first)
    delay = settings.PAYOUTS.reversal.delay_after_failure(transfer.retry_count + 1)
    if delay is None:
        moves.reversal_given_up(
            transfer,
            reason=EndReason.RETRIES_EXHAUSTED,
            message=error.describe(),
            follow=follow,
            actor=WORKER,
        )
        return ReversalOutcome.GAVE_UP
    retry_at = timezone.now() + delay
    moves.reversal_failed(
        transfer, message=error.describe(), follow=follow, retry_at=retry_at, actor=WORKER
    )
    reversals_due_at(retry_at)
    return ReversalOutcome.RETRY_SCHEDULED
