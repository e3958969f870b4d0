"""Account debits: a seller's old debt taken from their connected account.

The debt-recovery ladder: a refused reversal is the seller's debt; their next transfers net it;
when it is older than ``DEBT_DEBIT_AFTER`` and their payout policy allows account debits (with
the date their consent was recorded), this worker takes it from their connected account
(Stripe's account debit); what still ages is counted on the console and in ``/metrics``; staff
write off the rest.

One debit row per attempt to recover (``AccountDebit``), made under the seller's debt lock for
no more than the part of the debt that is old enough (netting pays the oldest part first), at
most one in flight per seller and currency, with a key built from the debt as it stood (its
last line): two sweeps that see the same debt make the same row once. Then claim → call →
record: a short transaction claims the next due row (``SKIP LOCKED`` and a lease), Stripe is called
with no transaction open, and a short transaction records the outcome with its book entry.
A transient error is retried with backoff under the same key (Stripe replays what it did); a
refusal (the balance cannot cover it, or the account cannot be debited) is recorded and not
retried: the debt waits for another ``DEBT_DEBIT_AFTER`` before the next debit is tried.
"""

import logging
from collections import Counter
from datetime import datetime
from enum import StrEnum

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Sum
from django.utils import timezone

import ledger.services
from ledger.models import AccountKind, Line
from ledger.selectors import seller_debts_aged
from marketplace.models import Seller
from payouts.models import AccountDebit, DebitState
from payouts.services.policies import policy_effective, seller_policy
from payouts.stripe_api.gateway import (
    DebitRefused,
    GatewayError,
    StripeGateway,
    StripeTransfer,
    get_gateway,
)
from payouts.transfer.idempotency import (
    key_may_be_forgotten,
    next_attempt,
    renewed_key,
    transfer_made_by,
)
from payouts.transfer.locks import due_rows_claimed
from payouts.wakeups import debits_due_at, reversals_due_after_commit

logger = logging.getLogger(__name__)


class DebitOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    REFUSED = "refused"
    RETRY_SCHEDULED = "retry_scheduled"
    FAILED = "failed"
    SKIPPED = "skipped"


def debits_in_flight(*, seller_id: int, currency: str) -> int:
    """What pending debits of the seller may still take from their debt (netting leaves it)."""
    pending = AccountDebit.objects.filter(
        seller_id=seller_id, currency=currency, state=DebitState.PENDING
    )
    return pending.aggregate(total=Sum("amount"))["total"] or 0


def debit_answer_due(*, seller_id: int, currency: str) -> datetime:
    """When the seller's pending debit will have its answer, at the latest.

    Its retry's time or its lease's end, and a lease more; from now when none is pending."""
    pending = AccountDebit.objects.filter(
        seller_id=seller_id, currency=currency, state=DebitState.PENDING
    )
    due = pending.aggregate(due=Max("next_retry_at"))["due"]
    return max(due or timezone.now(), timezone.now()) + settings.PAYOUTS.claim_lease


def debts_debit_due(
    *, limit: int | None = None, gateway: StripeGateway | None = None, now: datetime | None = None
) -> dict[str, int]:
    """Beat's sweep (and the wake-up's task): make the due debits, then attempt them.

    Returns counts: ``created`` rows, then one count per attempt's outcome; nothing while
    ``DEBT_DEBIT_WORKER_ENABLED`` is off."""
    if not settings.PAYOUTS.debt_debit_retry.enabled:
        return {}
    gateway = gateway or get_gateway()
    summary: Counter[str] = Counter()
    created = debits_create_due(now=now or timezone.now())
    if created:
        summary["created"] = created
    due = AccountDebit.objects.filter(state=DebitState.PENDING, next_retry_at__lte=timezone.now())
    for debit in due_rows_claimed(due, limit=limit):
        summary[debit_attempt(debit, gateway=gateway)] += 1
    return dict(summary)


def debits_create_due(*, now: datetime) -> int:
    """Make a debit row for each debt old enough whose seller allows debits. Returns how many."""
    if not settings.STRIPE_PLATFORM_ACCOUNT_ID:
        return 0
    after = settings.PAYOUTS.debt_debit_after
    created = 0
    for debt in seller_debts_aged(now=now, older_than=after):
        if debt.aged > 0 and _may_debit(debt.seller_id, debt.currency, now=now):
            created += _debit_create(debt.seller_id, debt.currency, now=now)
    return created


def _may_debit(seller_id: int, currency: str, *, now: datetime) -> bool:
    """The policy allows it, the seller has an account, and no recent debit was refused."""
    if not policy_effective(seller_policy(seller_id)).debits_allowed:
        return False
    if not Seller.objects.filter(pk=seller_id).exclude(stripe_account_id="").exists():
        return False
    recent = AccountDebit.objects.filter(
        seller_id=seller_id,
        currency=currency,
        state__in=[DebitState.REFUSED, DebitState.FAILED],
        updated_at__gt=now - settings.PAYOUTS.debt_debit_after,
    )
    return not recent.exists()


def _debit_create(seller_id: int, currency: str, *, now: datetime) -> int:
    """One debit row for the part of the debt old enough, under the seller's debt lock."""
    with transaction.atomic():
        debt = ledger.services.seller_debt_lock(seller_id=seller_id, currency=currency)
        if debits_in_flight(seller_id=seller_id, currency=currency):
            return 0
        # Under the lock: what netting or a write-off left of the old part since it was read.
        [aged] = [
            found.aged
            for found in seller_debts_aged(now=now, older_than=settings.PAYOUTS.debt_debit_after)
            if (found.seller_id, found.currency) == (seller_id, currency)
        ] or [0]
        amount = min(aged, debt)
        if amount <= 0:
            return 0
        last_line = Line.objects.filter(
            account__kind=AccountKind.SELLER_DEBT, account__seller_id=seller_id, currency=currency
        ).aggregate(last=Max("pk"))["last"]
        # Deterministic: the seller's debits so far and the debt's last line, read under the lock.
        tried = AccountDebit.objects.filter(seller_id=seller_id, currency=currency).count()
        try:
            with transaction.atomic():
                AccountDebit.objects.create(
                    seller_id=seller_id,
                    currency=currency,
                    amount=amount,
                    idempotency_key=f"debit-{seller_id}-{currency}-{tried + 1}-line-{last_line}-g0",
                    next_retry_at=now,
                )
        except IntegrityError:
            return 0  # another sweep made this very row (the database's unique key says so)
    return 1


def debit_attempt(debit: AccountDebit, *, gateway: StripeGateway) -> DebitOutcome:
    """Call Stripe once for a claimed debit (no transaction open) and record what it said.

    After an answer that may hide a debit (a 5xx: the key is renewed, as Stripe would replay
    the error to it) and once Stripe may have forgotten the row's key (a day after it was
    first sent), Stripe is read first: a debit an earlier attempt made is adopted; if there is
    none, the debit is sent (under a new key if the old one may be forgotten). Never a second
    debit either way."""
    seller = Seller.objects.get(pk=debit.seller_id)
    if not policy_effective(seller_policy(seller.pk)).debits_allowed:
        return _consent_withdrawn(debit, seller, gateway=gateway)
    try:
        forgotten = key_may_be_forgotten(debit, now=timezone.now())
        if debit.read_stripe_first or forgotten:
            if found := _find_at_stripe(debit, seller, gateway):
                return _record_succeeded(debit, stripe_transfer_id=found.id)
            if forgotten:
                debit = _key_renewed(debit)
        result = gateway.debit_account(
            account_id=seller.stripe_account_id,
            amount=debit.amount,
            currency=debit.currency,
            platform_account_id=settings.STRIPE_PLATFORM_ACCOUNT_ID,
            transfer_group=_group(debit),
            metadata={"account_debit_id": str(debit.pk), "seller_id": str(seller.pk)},
            idempotency_key=debit.idempotency_key,
        )
    except DebitRefused as refused:
        return _record_refused(debit, refused.describe())
    except GatewayError as error:
        return _attempt_failed(debit, seller, error=error, gateway=gateway)
    return _record_succeeded(debit, stripe_transfer_id=result.id)


def _consent_withdrawn(
    debit: AccountDebit, seller: Seller, *, gateway: StripeGateway
) -> DebitOutcome:
    """The seller's policy no longer allows debits: the row is refused, never sent again.

    An earlier attempt may have made the debit while consent stood (a worker killed behind
    Stripe's answer): Stripe is read first, and a debit found there is recorded, not lost."""
    why = "the seller's payout policy no longer allows debits"
    if debit.key_first_sent_at is None:
        return _record_refused(debit, why)
    return _ended_unless_made(debit, seller, gateway, end=lambda: _record_refused(debit, why))


def _attempt_failed(
    debit: AccountDebit, seller: Seller, *, error: GatewayError, gateway: StripeGateway
) -> DebitOutcome:
    """Retry after the backoff; with the retries spent, give up only once Stripe shows none."""
    if settings.PAYOUTS.debt_debit_retry.delay_after_failure(debit.retry_count + 1) is not None:
        return _record_retry(debit, error)
    return _ended_unless_made(debit, seller, gateway, end=lambda: _record_retry(debit, error))


def _ended_unless_made(
    debit: AccountDebit, seller: Seller, gateway: StripeGateway, *, end
) -> DebitOutcome:
    """End the row with ``end()`` once Stripe shows no attempt made the debit.

    A debit found there is recorded (adopted); a read that fails keeps the row trying, at
    the longest backoff."""
    try:
        found = _find_at_stripe(debit, seller, gateway)
    except GatewayError as read_error:
        return _record_retry(debit, read_error, give_up=False)
    if found:
        return _record_succeeded(debit, stripe_transfer_id=found.id)
    return end()


def _group(debit: AccountDebit) -> str:
    """The debit's transfer group at Stripe: how a later attempt finds what an earlier made."""
    return f"debit-{debit.pk}"


def _find_at_stripe(
    debit: AccountDebit, seller: Seller, gateway: StripeGateway
) -> StripeTransfer | None:
    """The debit an earlier attempt of this row made at Stripe, if any."""
    found = gateway.find_transfers(
        transfer_group=_group(debit), account_id=seller.stripe_account_id
    )
    return transfer_made_by(
        found,
        id_field="account_debit_id",
        row_id=debit.pk,
        amount=debit.amount,
        currency=debit.currency,
    )


def _key_renewed(debit: AccountDebit) -> AccountDebit:
    """Give the row a new key, kept on the row before the call.

    Stripe was read first: no earlier attempt made a debit. The new key's memory starts now."""
    with transaction.atomic():
        row = AccountDebit.objects.select_for_update().get(pk=debit.pk)
        row.idempotency_key = renewed_key(row.idempotency_key)
        row.key_first_sent_at = timezone.now()
        row.save(update_fields=["idempotency_key", "key_first_sent_at", "updated_at"])
    return row


def _locked(debit: AccountDebit, *, states=(DebitState.PENDING,)) -> AccountDebit | None:
    """The row under its lock, while in ``states`` (another actor may have recorded it)."""
    row = AccountDebit.objects.select_for_update().get(pk=debit.pk)
    return row if row.state in states else None


def _record_succeeded(debit: AccountDebit, *, stripe_transfer_id: str) -> DebitOutcome:
    with transaction.atomic():
        ledger.services.seller_debt_lock(seller_id=debit.seller_id, currency=debit.currency)
        # Stripe's word that it made the debit wins over our having given up on it.
        row = _locked(debit, states=(DebitState.PENDING, DebitState.FAILED))
        if row is None:
            return DebitOutcome.SKIPPED
        row.state = DebitState.SUCCEEDED
        row.stripe_transfer_id = stripe_transfer_id
        row.error_message = ""
        row.read_stripe_first = False
        row.save(
            update_fields=[
                "state",
                "stripe_transfer_id",
                "error_message",
                "read_stripe_first",
                "updated_at",
            ]
        )
        ledger.services.post_debt_debited(
            seller_id=row.seller_id,
            currency=row.currency,
            amount=row.amount,
            debit_id=row.pk,
            stripe_transfer_id=stripe_transfer_id,
        )
        reversals_due_after_commit()  # a give-back may wait for this answer
    logger.info("account debited", extra={"account_debit_id": debit.pk, "amount": debit.amount})
    return DebitOutcome.SUCCEEDED


def _record_refused(debit: AccountDebit, message: str) -> DebitOutcome:
    with transaction.atomic():
        row = _locked(debit)
        if row is None:
            return DebitOutcome.SKIPPED
        row.state = DebitState.REFUSED
        row.error_message = message
        row.save(update_fields=["state", "error_message", "updated_at"])
        reversals_due_after_commit()  # a give-back may wait for this answer
    logger.warning("account debit refused", extra={"account_debit_id": debit.pk, "why": message})
    return DebitOutcome.REFUSED


def _record_retry(
    debit: AccountDebit, error: GatewayError, *, give_up: bool = True
) -> DebitOutcome:
    """Due again after the backoff with the same key, or failed once the retries are spent.

    With ``give_up`` off, due again after the longest backoff instead of failing."""
    policy = settings.PAYOUTS.debt_debit_retry
    with transaction.atomic():
        row = _locked(debit)
        if row is None:
            return DebitOutcome.SKIPPED
        row.retry_count += 1
        row.error_message = error.describe()
        follow = next_attempt(row.idempotency_key, error, read_stripe_first=row.read_stripe_first)
        if follow.key != row.idempotency_key:
            row.idempotency_key, row.key_first_sent_at = follow.key, None
        row.read_stripe_first = follow.read_stripe_first
        delay = policy.delay_after_failure(row.retry_count)
        if delay is None and not give_up:
            delay = policy.backoff_max
        if delay is None:
            row.state = DebitState.FAILED
            reversals_due_after_commit()  # a give-back may wait for this answer
        else:
            row.next_retry_at = timezone.now() + delay
            debits_due_at(row.next_retry_at)
        row.save()
    return DebitOutcome.FAILED if delay is None else DebitOutcome.RETRY_SCHEDULED
