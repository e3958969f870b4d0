"""Named moves: one function per edge of the seller transfer state diagram.

This module is the only caller of ``SellerTransfer.objects.transition`` (a test scans the source
for any other). Each move takes one edge (or one family of edges that ends where the amounts
say) and owns exactly the fields it writes; the services decide *which* move to make, after a
Stripe call, a refund or a staff request. What happens when a reversal settles is
``reversal_settled``, and nowhere else.

Every move runs the guarded ``UPDATE … WHERE status = <from>`` and writes its audit event in the
same transaction; ``ConcurrentTransition`` means another actor moved the row first. A move that
moves money (or decides to) posts its entry in the book (``ledger.services``) in that same
transaction, so the book can never miss a movement nor count one that did not happen.
"""

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from ledger import services as book
from payouts.idempotency import NextAttempt
from payouts.models import SellerTransfer
from payouts.transitions import EndReason, HeldReason, TransferStatus

logger = logging.getLogger(__name__)

S = TransferStatus


@dataclass(frozen=True, slots=True)
class Actor:
    """Who or what made a move; recorded on its audit event."""

    caused_by: str
    user: Any = None

    @classmethod
    def worker(cls, task: str) -> "Actor":
        return cls(f"worker:{task}")

    @classmethod
    def webhook(cls, stripe_event_id: str) -> "Actor":
        return cls(f"webhook:{stripe_event_id}")

    @classmethod
    def staff(cls, user: Any) -> "Actor":
        return cls(f"staff:{user.get_username()}", user)


def _move(transfer: SellerTransfer, to: str, actor: Actor, detail: dict, **fields: Any):
    return SellerTransfer.objects.transition(
        transfer, to, caused_by=actor.caused_by, user=actor.user, detail=detail, **fields
    )


def book_ref(transfer: SellerTransfer, step: object = None) -> book.TransferRef:
    """The transfer as the book names it, for the step posting (by default the move just made:
    its audit event)."""
    return book.TransferRef(
        transfer_id=transfer.pk,
        order_id=transfer.order_id,
        seller_id=transfer.seller_id,
        currency=transfer.currency,
        step=step if step is not None else f"event:{transfer.last_event_id}",
    )


def _key_fields(key_field: str, follow: NextAttempt) -> dict[str, Any]:
    """The key the next attempt sends, and whether it reads Stripe first. A renewed key has not
    been sent yet: when it first is, the claim notes the time."""
    fields: dict[str, Any] = {key_field: follow.key, "read_stripe_first": follow.read_stripe_first}
    if follow.renewed:
        fields["key_first_sent_at"] = None
    return fields


def _attempt_failed(transfer, to, key_field, message, follow, retry_at, actor) -> None:
    """What a failed attempt records, whichever money it was moving: one more retry, when the
    next one is due, why, and the key it will send."""
    attempt = transfer.retry_count + 1
    _move(
        transfer,
        to,
        actor,
        {"error": message, "attempt": attempt, "next_retry_at": retry_at.isoformat()},
        error_message=message,
        retry_count=attempt,
        next_retry_at=retry_at,
        **_key_fields(key_field, follow),
    )


def _log(transfer: SellerTransfer, level: int, message: str, **extra: Any) -> None:
    logger.log(
        level, message, extra={"transfer_id": transfer.pk, "order_id": transfer.order_id, **extra}
    )


# --- Paying the seller --------------------------------------------------------------------------


def paid(
    transfer: SellerTransfer, *, stripe_transfer_id: str, key: str, adopted: bool, actor: Actor
) -> SellerTransfer:
    """pending | failed → completed: Stripe holds the seller's transfer, made now or found from an
    earlier attempt whose answer was lost (``adopted``); or, when all of it settled the seller's
    debt, there was nothing to send (no Stripe transfer)."""
    withheld, sent = transfer.kept_back, transfer.to_send
    with transaction.atomic():
        _move(
            transfer,
            S.COMPLETED,
            actor,
            {"stripe_transfer_id": stripe_transfer_id, "adopted": adopted, "sent": sent},
            amount_withheld=withheld,
            stripe_transfer_id=stripe_transfer_id,
            transfer_idempotency_key=key,
            next_retry_at=None,
            error_message="",
            read_stripe_first=False,
            key_first_sent_at=None,
        )
        if sent:
            book.post_transfer_sent(
                book_ref(transfer), amount=sent, stripe_transfer_id=stripe_transfer_id
            )
    _log(transfer, logging.INFO, "seller paid", stripe_transfer_id=stripe_transfer_id)
    return transfer


def send_failed(
    transfer: SellerTransfer,
    *,
    message: str,
    follow: NextAttempt,
    retry_at: datetime,
    actor: Actor,
) -> SellerTransfer:
    """pending | failed → failed: one attempt to pay failed; the next is due at ``retry_at``."""
    _attempt_failed(
        transfer, S.FAILED, "transfer_idempotency_key", message, follow, retry_at, actor
    )
    _log(transfer, logging.WARNING, "paying the seller failed; will retry", error=message)
    return transfer


def send_given_up(
    transfer: SellerTransfer, *, message: str, follow: NextAttempt, actor: Actor
) -> SellerTransfer:
    """pending | failed → permanently_failed: retries exhausted; the seller is not paid."""
    attempt = transfer.retry_count + 1
    _move(
        transfer,
        S.PERMANENTLY_FAILED,
        actor,
        {"error": message, "attempt": attempt, "reason": EndReason.RETRIES_EXHAUSTED},
        error_message=message,
        retry_count=attempt,
        next_retry_at=None,
        end_reason=EndReason.RETRIES_EXHAUSTED,
        **_key_fields("transfer_idempotency_key", follow),
    )
    _log(transfer, logging.ERROR, "paying the seller gave up after retries", error=message)
    return transfer


def cancelled(transfer: SellerTransfer, *, actor: Actor) -> SellerTransfer:
    """pending | failed | held → permanently_failed: the order was refunded in full before the
    seller was paid, and Stripe holds no transfer of this row. The seller is never paid."""
    message = "order fully refunded before the seller was paid; transfer cancelled"
    netted = transfer.amount_netted
    unpaid = transfer.amount - transfer.reversal_target - transfer.dispute_target
    with transaction.atomic():
        _move(
            transfer,
            S.PERMANENTLY_FAILED,
            actor,
            {"reason": EndReason.ORDER_REFUNDED, "netting_released": netted},
            error_message=message,
            next_retry_at=None,
            end_reason=EndReason.ORDER_REFUNDED,
            amount_netted=0,
            held_reason="",
        )
        if netted:
            book.post_netting_released(book_ref(transfer), amount=netted)
        # The refund shares already withheld from it were booked when they were withheld.
        book.post_transfer_cancelled(book_ref(transfer), amount=unpaid)
    _log(transfer, logging.WARNING, message)
    return transfer


def held(
    transfer: SellerTransfer,
    *,
    reason: HeldReason,
    message: str,
    until: datetime | None = None,
    follow: NextAttempt | None = None,
    actor: Actor,
) -> SellerTransfer:
    """pending | failed → held: not sent now, on purpose (the order's hold until ``until``, or
    the seller's account cannot receive). Spends no retry; a held row is due only at ``until``
    (never, for an account hold: the account's next update releases it). ``follow``: Stripe
    refused a send for the account, and the next one must not replay that refusal's key."""
    _move(
        transfer,
        S.HELD,
        actor,
        {"reason": reason, "message": message, "until": until.isoformat() if until else None},
        held_reason=reason,
        error_message=message,
        next_retry_at=until,
        **(_key_fields("transfer_idempotency_key", follow) if follow else {}),
    )
    _log(transfer, logging.INFO, "seller transfer held", reason=reason)
    return transfer


def released(transfer: SellerTransfer, *, actor: Actor) -> SellerTransfer:
    """held → pending, due now: the hold is over (released, or the account can receive)."""
    return _move(
        transfer,
        S.PENDING,
        actor,
        {"released_from": transfer.held_reason},
        held_reason="",
        error_message="",
        next_retry_at=timezone.now(),
    )


def share_withheld(
    transfer: SellerTransfer, *, refund_target: int, dispute_target: int, actor: Actor
) -> SellerTransfer:
    """held → held: a refund (or a chargeback) during the hold; the seller's shares of them are
    kept back from what will be sent (nothing to take back later)."""
    previous = transfer.reversal_target, transfer.dispute_target
    with transaction.atomic():
        _move(
            transfer,
            S.HELD,
            actor,
            {"refund_target": refund_target, "dispute_target": dispute_target},
            reversal_target=refund_target,
            dispute_target=dispute_target,
        )
        _post_shares(transfer, previous)
    return transfer


# --- Taking a refund's share back ---------------------------------------------------------------


def shares_changed(
    transfer: SellerTransfer, *, refund_target: int, dispute_target: int, actor: Actor
) -> SellerTransfer:
    """completed | partially_reversed | reversed | reversal_refused → reversal_pending, due now
    with a fresh retry budget: the seller's share of the order's refunds (``refund_target``) or
    of its chargeback (``dispute_target``) changed, so something is to be taken back from them,
    or given back. A row already pending keeps its schedule (its attempt may be in flight)."""
    previous = transfer.reversal_target, transfer.dispute_target
    fields: dict[str, Any] = {
        "reversal_target": refund_target,
        "dispute_target": dispute_target,
        "amount_to_give_back": _to_give_back(transfer, refund_target + dispute_target),
    }
    if transfer.status != S.REVERSAL_PENDING:
        fields.update(
            next_retry_at=timezone.now(),
            retry_count=0,
            error_message="",
            read_stripe_first=False,
            key_first_sent_at=None,
        )
    detail = {"refund_target": refund_target, "dispute_target": dispute_target}
    with transaction.atomic():
        _move(transfer, S.REVERSAL_PENDING, actor, detail, **fields)
        _post_shares(transfer, previous)
    return transfer


def taken_back(transfer: SellerTransfer) -> int:
    """What is taken back from the seller now: kept back before sending, reversed at Stripe,
    made their debt, less what was given back."""
    return (
        transfer.amount_withheld
        + transfer.amount_reversed
        + transfer.amount_owed
        - transfer.amount_returned
    )


def _to_give_back(transfer: SellerTransfer, new_total: int) -> int:
    """What the seller is owed back once the shares total ``new_total``: what we hold beyond
    it. A reversal Stripe made beyond what the shares asked (and was not ours to give back
    already) is not counted: it is reported for staff, never paid back by itself."""
    old_total = transfer.reversal_target + transfer.dispute_target
    taken = taken_back(transfer)
    made_elsewhere = max(taken - old_total - transfer.amount_to_give_back, 0)
    return max(taken - made_elsewhere - new_total, 0)


def _post_shares(transfer: SellerTransfer, previous: tuple[int, int]) -> None:
    ref = book_ref(transfer)
    book.post_refund_share(ref, previous_target=previous[0], target=transfer.reversal_target)
    book.post_dispute_share(ref, previous_target=previous[1], target=transfer.dispute_target)


def reversal_failed(
    transfer: SellerTransfer,
    *,
    message: str,
    follow: NextAttempt,
    retry_at: datetime,
    actor: Actor,
) -> SellerTransfer:
    """reversal_pending → reversal_pending: one attempt failed; the next is due at
    ``retry_at``."""
    key_field = "reversal_idempotency_key"
    _attempt_failed(transfer, S.REVERSAL_PENDING, key_field, message, follow, retry_at, actor)
    _log(transfer, logging.WARNING, "reversal attempt failed; will retry", error=message)
    return transfer


def reversal_given_up(
    transfer: SellerTransfer,
    *,
    reason: EndReason,
    message: str,
    follow: NextAttempt | None = None,
    actor: Actor,
) -> SellerTransfer:
    """reversal_pending → permanently_failed: the transfer cannot be reversed (``reason``); what
    is left of the seller's share stays with the seller until staff act."""
    fields: dict[str, Any] = {"retry_count": transfer.retry_count}
    if follow is not None:
        fields.update(
            retry_count=transfer.retry_count + 1,
            **_key_fields("reversal_idempotency_key", follow),
        )
    _move(
        transfer,
        S.PERMANENTLY_FAILED,
        actor,
        {"error": message, "reason": reason},
        error_message=message,
        next_retry_at=None,
        end_reason=reason,
        **fields,
    )
    _log(transfer, logging.ERROR, "reversal gave up", reason=reason, error=message)
    return transfer


def reversal_settled(
    transfer: SellerTransfer,
    *,
    amount_reversed: int | None = None,
    amount_returned: int | None = None,
    stripe_reversal_id: str = "",
    stripe_return_id: str = "",
    message: str = "",
    ours: int = 0,
    elsewhere: int = 0,
    actor: Actor,
) -> SellerTransfer:
    """Record what Stripe has reversed, and what was given back in new transfers, in all. The
    row becomes completed (all that was taken is given back), reversed (all of it taken back),
    partially_reversed (its shares are met), or stays reversal_pending, due now, when its shares
    moved while this attempt was in flight or something is to be given back.

    ``ours`` is what our own reversals took, of the reversed total; ``elsewhere`` is what
    reversals made outside the service took (known when Stripe's list was read). What our own
    reversals took beyond the shares (the shares fell while the call was in flight, or before
    a lost answer was found) is to be given back, as when the shares fall after a reversal.

    The caller holds the row's lock, so the shares it sees are the latest. Stripe reversing more
    than the shares ask on its own is reported, never adopted."""
    previous_reversed, previous_returned = transfer.amount_reversed, transfer.amount_returned
    reversed_total = min(max(previous_reversed, amount_reversed or 0), transfer.sent)
    returned_total = max(previous_returned, amount_returned or 0)
    given_back = returned_total - previous_returned
    taken = transfer.amount_withheld + reversed_total + transfer.amount_owed - returned_total
    to_give_back = max(transfer.amount_to_give_back - given_back, 0)
    ours_beyond = _ours_beyond_shares(transfer, taken, to_give_back, ours, elsewhere)
    to_give_back += ours_beyond
    to, next_retry_at = _settled_status(transfer, taken, to_give_back)
    detail = {"amount_reversed": reversed_total, "amount_returned": returned_total}
    if ours_beyond:
        detail["to_give_back"] = ours_beyond
    with transaction.atomic():
        _move(
            transfer,
            to,
            actor,
            detail,
            amount_reversed=reversed_total,
            amount_returned=returned_total,
            amount_to_give_back=to_give_back,
            stripe_reversal_id=stripe_reversal_id or transfer.stripe_reversal_id,
            stripe_return_id=stripe_return_id or transfer.stripe_return_id,
            # The next step gets a fresh key (see payouts.idempotency).
            reversal_idempotency_key="",
            key_first_sent_at=None,
            retry_count=0,
            read_stripe_first=False,
            next_retry_at=next_retry_at,
            error_message=message,
        )
        ref = book_ref(transfer)
        book.post_reversal(
            ref,
            previous_reversed=previous_reversed,
            reversed_total=reversed_total,
            stripe_reversal_id=stripe_reversal_id,
        )
        book.post_given_back(
            ref, debt_cancelled=0, returned=given_back, stripe_transfer_id=stripe_return_id
        )
    _log(transfer, logging.INFO, "reversal settled", status=to, amount_reversed=reversed_total)
    if ours_beyond:
        _log(
            transfer,
            logging.WARNING,
            "our reversal took more than the shares; the rest is given back",
            to_give_back=ours_beyond,
        )
    _report_over_reversal(transfer)
    return transfer


def _ours_beyond_shares(transfer, taken, to_give_back, ours, elsewhere) -> int:
    """What our own reversals took beyond the shares and what is already to be given back: no
    more than they took, and none of what reversals made elsewhere may account for."""
    shares = transfer.reversal_target + transfer.dispute_target
    beyond = taken - shares - to_give_back - elsewhere
    return min(max(beyond, 0), ours)


def _settled_status(transfer: SellerTransfer, taken: int, to_give_back: int):
    shares = transfer.reversal_target + transfer.dispute_target
    if taken < shares or to_give_back > 0:
        return S.REVERSAL_PENDING, timezone.now()
    if taken <= 0:
        return S.COMPLETED, None
    if taken >= transfer.amount:
        return S.REVERSED, None
    return S.PARTIALLY_REVERSED, None


def debt_given_back(transfer: SellerTransfer, *, amount: int, actor: Actor) -> SellerTransfer:
    """reversal_pending → reversal_pending: part of what is owed back to the seller cancels
    their debt instead of being sent (their shares went down after a refused reversal)."""
    with transaction.atomic():
        _move(
            transfer,
            S.REVERSAL_PENDING,
            actor,
            {"debt_cancelled": amount},
            amount_owed=transfer.amount_owed - amount,
            amount_to_give_back=transfer.amount_to_give_back - amount,
        )
        book.post_given_back(
            book_ref(transfer), debt_cancelled=amount, returned=0, stripe_transfer_id=""
        )
    return transfer


def reversal_seen_at_stripe(
    transfer: SellerTransfer, *, amount_reversed: int, actor: Actor
) -> SellerTransfer:
    """completed | partially_reversed | reversal_pending → reversal_pending: Stripe reports more
    reversed than we recorded (a Dashboard reversal, or an answer we lost). Records it, never
    moves money; the worker then settles the status without a call. The target (the refunds'
    share) is not raised to match: more reversed than refunded is reported for staff."""
    previous = transfer.amount_reversed
    fields: dict[str, Any] = {"amount_reversed": amount_reversed}
    if transfer.status != S.REVERSAL_PENDING:
        fields.update(next_retry_at=timezone.now(), retry_count=0, read_stripe_first=False)
    with transaction.atomic():
        _move(
            transfer,
            S.REVERSAL_PENDING,
            actor,
            {"stripe_amount_reversed": amount_reversed, "seen_at_stripe": True},
            **fields,
        )
        book.post_reversal(
            book_ref(transfer),
            previous_reversed=previous,
            reversed_total=amount_reversed,
            stripe_reversal_id=transfer.stripe_reversal_id,
        )
    _report_over_reversal(transfer)
    return transfer


def reversal_refused(transfer: SellerTransfer, *, message: str, actor: Actor) -> SellerTransfer:
    """reversal_pending → reversal_refused: what is left of the seller's share cannot be taken
    back at Stripe (their balance refused it, or it was never sent to them at Stripe): it is
    recorded as the seller's debt, to be netted from their next transfers."""
    previous_owed = transfer.amount_owed
    shares = transfer.reversal_target + transfer.dispute_target
    owed = previous_owed + shares - taken_back(transfer)
    with transaction.atomic():
        _move(
            transfer,
            S.REVERSAL_REFUSED,
            actor,
            {"error": message, "amount_owed": owed},
            amount_owed=owed,
            error_message=message,
            next_retry_at=None,
            retry_count=0,
            reversal_idempotency_key="",
            key_first_sent_at=None,
            read_stripe_first=False,
        )
        book.seller_debt_lock(seller_id=transfer.seller_id, currency=transfer.currency)
        book.post_reversal_refused(book_ref(transfer), previous_owed=previous_owed, owed_total=owed)
    _log(transfer, logging.WARNING, "the rest of the share is now the seller's debt", owed=owed)
    return transfer


def _report_over_reversal(transfer: SellerTransfer) -> None:
    # The gauge payouts_transfers_over_reversed counts these rows for alerting.
    shares = transfer.reversal_target + transfer.dispute_target
    if taken_back(transfer) > shares + transfer.amount_to_give_back:
        _log(
            transfer,
            logging.ERROR,
            "Stripe has reversed more of the transfer than the refunds' share; staff must review",
            amount_reversed=transfer.amount_reversed,
            reversal_target=transfer.reversal_target,
        )


# --- Staff ----------------------------------------------------------------------------------


def requeued(transfer: SellerTransfer, *, to: str, reason: str, actor: Actor) -> SellerTransfer:
    """permanently_failed → failed | reversal_pending (staff only): a row that gave up after its
    retries goes back to work, due now, with a fresh retry budget. Its idempotency key and
    whether it must read Stripe first are kept: the attempt that gave up may have moved money
    behind a lost answer, and the next one must find it rather than move it again."""
    detail = {"reason": reason, "ended": transfer.end_reason, "last_error": transfer.error_message}
    _move(
        transfer,
        to,
        actor,
        detail,
        end_reason="",
        retry_count=0,
        next_retry_at=timezone.now(),
        error_message=f"re-queued by {actor.caused_by}: {reason}",
    )
    _log(transfer, logging.WARNING, "re-queued by staff", to=to, reason=reason)
    return transfer
