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
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

import ledger.services
from payouts.models import SellerTransfer
from payouts.transfer import money
from payouts.transfer.actors import Actor
from payouts.transfer.idempotency import NextAttempt
from payouts.transfer.transitions import (
    ConcurrentTransition,
    EndReason,
    HeldReason,
    TransferStatus,
    TransitionNotAllowed,
)

logger = logging.getLogger(__name__)


def _move(transfer: SellerTransfer, to: str, actor: Actor, detail: dict, **fields: Any):
    return SellerTransfer.objects.transition(
        transfer, to, caused_by=actor.caused_by, user=actor.user, detail=detail, **fields
    )


def book_ref(transfer: SellerTransfer, step: object = None) -> ledger.services.TransferRef:
    """The reference the book uses for this transfer and step.

    The transfer as the book names it, for the step posting (by default the move just made:
    its audit event)."""
    return ledger.services.TransferRef(
        transfer_id=transfer.pk,
        order_id=transfer.order_id,
        seller_id=transfer.seller_id,
        currency=transfer.currency,
        step=step if step is not None else f"event:{transfer.last_event_id}",
    )


def _key_fields(key_field: str, follow: NextAttempt) -> dict[str, Any]:
    """The idempotency fields of the transfer's next attempt.

    The key the next attempt sends, and whether it reads Stripe first. A renewed key has not
    been sent yet: when it first is, the claim notes the time."""
    fields: dict[str, Any] = {key_field: follow.key, "read_stripe_first": follow.read_stripe_first}
    if follow.renewed:
        fields["key_first_sent_at"] = None
    return fields


def _attempt_failed(transfer, to, key_field, message, follow, retry_at, actor) -> None:
    """The fields a failed attempt records.

    What a failed attempt records, whichever money it was moving: one more retry, when the
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
    transfer: SellerTransfer,
    *,
    stripe_transfer_id: str,
    key: str,
    adopted: bool,
    actor: Actor,
    stripe_destination_payment_id: str = "",
) -> SellerTransfer:
    """Mark the transfer paid.

    pending | failed → completed: Stripe holds the seller's transfer, made now or found from an
    earlier attempt whose answer was lost (``adopted``); or, when all of it settled the seller's
    debt, there was nothing to send (no Stripe transfer). ``stripe_destination_payment_id``: the
    transfer on the seller's account (``py_…``), what their bank payouts will list."""
    f = transfer.facts
    sent, owed = money.to_send(f), money.owed_at_send(f)
    detail = {"stripe_transfer_id": stripe_transfer_id, "adopted": adopted, "sent": sent}
    if owed:
        detail["amount_owed"] = f.owed + owed
    with transaction.atomic():
        _move(
            transfer,
            TransferStatus.COMPLETED,
            actor,
            detail,
            amount_withheld=money.withheld_at_send(f),
            amount_owed=f.owed + owed,
            stripe_transfer_id=stripe_transfer_id,
            stripe_destination_payment_id=stripe_destination_payment_id,
            transfer_idempotency_key=key,
            next_retry_at=None,
            error_message="",
            read_stripe_first=False,
            key_first_sent_at=None,
        )
        _post_paid(
            transfer, sent=sent, previous_owed=f.owed, owed=owed, stripe_id=stripe_transfer_id
        )
    _log(transfer, logging.INFO, "seller paid", stripe_transfer_id=stripe_transfer_id)
    return transfer


def _post_paid(transfer, *, sent: int, previous_owed: int, owed: int, stripe_id: str) -> None:
    """Book what paying the transfer moved: what it sent, and the shares it made debt."""
    if sent:
        ledger.services.post_transfer_sent(
            book_ref(transfer), amount=sent, stripe_transfer_id=stripe_id
        )
    if owed:
        # Its shares exceed what was left once netted: nothing to keep back or reverse for the
        # rest, so the seller owes it, netted from their next transfers.
        ledger.services.seller_debt_lock(seller_id=transfer.seller_id, currency=transfer.currency)
        ledger.services.post_reversal_refused(
            book_ref(transfer), previous_owed=previous_owed, owed_total=previous_owed + owed
        )


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
        transfer,
        TransferStatus.FAILED,
        "transfer_idempotency_key",
        message,
        follow,
        retry_at,
        actor,
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
        TransferStatus.PERMANENTLY_FAILED,
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
    """Cancel a transfer whose order was refunded in full before it was paid.

    pending | failed | held → permanently_failed: the order was refunded in full before the
    seller was paid, and Stripe holds no transfer of this row. The seller is never paid."""
    message = "order fully refunded before the seller was paid; transfer cancelled"
    netted = transfer.amount_netted
    unpaid = money.unpaid_share(transfer.facts)
    reserve = transfer.reserve_refund, transfer.reserve_dispute
    with transaction.atomic():
        _move(
            transfer,
            TransferStatus.PERMANENTLY_FAILED,
            actor,
            {"reason": EndReason.ORDER_REFUNDED, "netting_released": netted},
            error_message=message,
            next_retry_at=None,
            end_reason=EndReason.ORDER_REFUNDED,
            amount_netted=0,
            held_reason="",
            # Refunded in full: its reserve pays its part of the refund, nothing is released.
            reserve_refund=transfer.amount_reserved,
            reserve_dispute=0,
        )
        if netted:
            ledger.services.post_netting_released(book_ref(transfer), amount=netted)
        # The refund shares already withheld from it were booked when they were withheld.
        ledger.services.post_transfer_cancelled(book_ref(transfer), amount=unpaid)
        _post_reserve(transfer, previous=reserve)
    _log(transfer, logging.WARNING, message)
    return transfer


def _post_reserve(transfer: SellerTransfer, *, previous: tuple[int, int]) -> None:
    """Book the reserve's new cover the move just wrote (nothing when it did not change)."""
    if previous != (transfer.reserve_refund, transfer.reserve_dispute):
        ledger.services.post_reserve_share(
            book_ref(transfer, step=f"event:{transfer.last_event_id}:reserve"),
            previous=previous,
            refund=transfer.reserve_refund,
            dispute=transfer.reserve_dispute,
        )


def reinstated(transfer: SellerTransfer, *, until: datetime | None, actor: Actor) -> SellerTransfer:
    """Owe a cancelled transfer to the seller again.

    permanently_failed (``order_refunded``) → held | pending: the refund that cancelled the
    transfer failed, so the seller is owed their share again. Held until ``until`` when the
    order's hold has not ended yet, else due now."""
    if transfer.end_reason != EndReason.ORDER_REFUNDED:
        raise TransitionNotAllowed(transfer.pk, transfer.status, "reinstated")
    unpaid = money.unpaid_share(transfer.facts)
    reserve = transfer.reserve_refund, transfer.reserve_dispute
    # Its reserve covers nothing of the refund any more: its shares, once computed again (on
    # hold, or once paid), take from it again.
    fields: dict[str, Any] = {
        "end_reason": "",
        "retry_count": 0,
        "error_message": "",
        "reserve_refund": 0,
        "reserve_dispute": 0,
    }
    if until is not None:
        to = TransferStatus.HELD
        fields.update(held_reason=HeldReason.AWAITING_RELEASE, next_retry_at=until)
    else:
        to = TransferStatus.PENDING
        fields.update(next_retry_at=timezone.now())
    with transaction.atomic():
        _move(transfer, to, actor, {"reinstated": unpaid, "reason": "refund failed"}, **fields)
        ledger.services.post_transfer_reinstated(book_ref(transfer), amount=unpaid)
        _post_reserve(transfer, previous=reserve)
    _log(transfer, logging.WARNING, "the refund failed; the seller is owed their share again")
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
    """Hold a transfer instead of sending it now.

    pending | failed → held: not sent now, on purpose (the order's hold until ``until``, or
    the seller's account cannot receive). Spends no retry; a held row is due only at ``until``
    (never, for an account hold: the account's next update releases it). ``follow``: Stripe
    refused this attempt, and would replay that refusal to its key, so the send after the
    release uses the next key."""
    keys = _key_fields("transfer_idempotency_key", follow) if follow is not None else {}
    _move(
        transfer,
        TransferStatus.HELD,
        actor,
        {"reason": reason, "message": message, "until": until.isoformat() if until else None},
        held_reason=reason,
        error_message=message,
        next_retry_at=until,
        **keys,
    )
    _log(transfer, logging.INFO, "seller transfer held", reason=reason)
    return transfer


def released(transfer: SellerTransfer, *, actor: Actor) -> SellerTransfer:
    """held → pending, due now: the hold is over (released, or the account can receive)."""
    return _move(
        transfer,
        TransferStatus.PENDING,
        actor,
        {"released_from": transfer.held_reason},
        held_reason="",
        error_message="",
        next_retry_at=timezone.now(),
    )


def share_withheld(
    transfer: SellerTransfer, *, refund_target: int, dispute_target: int, actor: Actor
) -> SellerTransfer:
    """Keep a held transfer's new shares back from what it will send.

    held → held: a refund (or a chargeback) during the hold; the seller's shares of them are
    kept back from what will be sent (nothing to take back later)."""
    previous = transfer.reversal_target, transfer.dispute_target
    with transaction.atomic():
        _move(
            transfer,
            TransferStatus.HELD,
            actor,
            {"refund_target": refund_target, "dispute_target": dispute_target},
            reversal_target=refund_target,
            dispute_target=dispute_target,
        )
        _post_shares(transfer, previous)
    return transfer


# --- The rolling reserve ------------------------------------------------------------------------


def reserve_shares_taken(
    transfer: SellerTransfer, *, refund: int, dispute: int, actor: Actor
) -> SellerTransfer:
    """Take the transfer's new shares from its reserve first (or give the reserve them back).

    No status changes (the reserve is not the transfer's to send): the reserve's part of the
    order's refunds (``refund``) and of its chargeback (``dispute``), written with one guarded
    ``UPDATE`` on what the row had (and only while its reserve is still held), recorded as an
    audit event and booked from the seller's reserve account. Nothing is reversed at Stripe
    for this part. Raises ``ConcurrentTransition`` when another actor changed the row first."""
    return _reserve_cover_written(
        transfer, refund=refund, dispute=dispute, given_back=0, released=False, actor=actor
    )


def reserve_given_back(
    transfer: SellerTransfer, *, refund: int, dispute: int, actor: Actor
) -> SellerTransfer:
    """Write what a released reserve covers now, giving back what it covers no more.

    After its release the reserve covers no more than it did (``money.reserve_after_release``):
    when the shares fell (a refund failed, a dispute was won), what it covers no more is added
    to ``reserve_given_back``, owed to the seller again. One guarded ``UPDATE`` on what the row
    had (and only once its reserve is released), an audit event, and the ``reserve_share``
    entry that credits the seller's reserve with it; the caller makes the release that sends
    it in the same transaction. Raises ``ConcurrentTransition`` when another actor changed the
    row first."""
    given_back = transfer.reserve_refund + transfer.reserve_dispute - refund - dispute
    return _reserve_cover_written(
        transfer, refund=refund, dispute=dispute, given_back=given_back, released=True, actor=actor
    )


def _reserve_cover_written(
    transfer: SellerTransfer,
    *,
    refund: int,
    dispute: int,
    given_back: int,
    released: bool,
    actor: Actor,
) -> SellerTransfer:
    """Write what the reserve covers (and gave back), on what the row had, and book it."""
    previous = transfer.reserve_refund, transfer.reserve_dispute
    had = {
        "reserve_refund": previous[0],
        "reserve_dispute": previous[1],
        "reserve_given_back": transfer.reserve_given_back,
    }
    now = {
        "reserve_refund": refund,
        "reserve_dispute": dispute,
        "reserve_given_back": transfer.reserve_given_back + given_back,
    }
    detail = now if released else {"reserve_refund": refund, "reserve_dispute": dispute}
    with transaction.atomic():
        event = _written_in_place(
            transfer,
            had={**had, "reserve_release__isnull": not released},
            now=now,
            detail=detail,
            actor=actor,
        )
        ledger.services.post_reserve_share(
            book_ref(transfer, step=f"event:{event.pk}"),
            previous=previous,
            refund=refund,
            dispute=dispute,
        )
    return transfer


def _written_in_place(
    transfer: SellerTransfer, *, had: dict, now: dict, detail: dict, actor: Actor
):
    """Write ``now`` with one guarded ``UPDATE`` on what the row ``had``; no status change.

    Returns the audit event written with it (the row refreshed). Raises
    ``ConcurrentTransition`` when another actor changed the row first."""
    updated = SellerTransfer.objects.filter(pk=transfer.pk, status=transfer.status, **had).update(
        **now, updated_at=timezone.now()
    )
    if updated != 1:
        raise ConcurrentTransition(transfer.pk, transfer.status, transfer.status)
    event = transfer.events.create(
        from_status=transfer.status,
        to_status=transfer.status,
        caused_by=actor.caused_by,
        user=actor.user,
        detail=detail,
    )
    transfer.refresh_from_db()
    return event


def reserve_owed(
    transfer: SellerTransfer,
    *,
    refund: int,
    dispute: int,
    revived: int,
    given_back: int,
    actor: Actor,
) -> SellerTransfer:
    """Write what the seller owes of their released reserve, and book it as their debt.

    Once the reserve is released, shares beyond what it still covers and what the transfer
    part can take back were paid to the seller by the release: ``refund`` and ``dispute`` in
    all are their debt. When that falls, the debt is cancelled; ``revived`` of it comes back
    from a write-off first (the seller never paid it), and ``given_back`` (they had paid it by
    netting or a debit) is owed to them again through their reserve account: the caller makes
    the release that sends it, in the same transaction. One guarded ``UPDATE`` on what the row
    had (only once its reserve is released), an audit event and the entries. Raises
    ``ConcurrentTransition`` when another actor changed the row first."""
    previous = transfer.reserve_owed_refund, transfer.reserve_owed_dispute
    now = {
        "reserve_owed_refund": refund,
        "reserve_owed_dispute": dispute,
        "reserve_owed_given_back": transfer.reserve_owed_given_back + given_back,
    }
    with transaction.atomic():
        event = _written_in_place(
            transfer,
            had={
                "reserve_owed_refund": previous[0],
                "reserve_owed_dispute": previous[1],
                "reserve_owed_given_back": transfer.reserve_owed_given_back,
                "reserve_release__isnull": False,
            },
            now=now,
            detail={**now, "write_off_revived": revived},
            actor=actor,
        )
        if revived:
            step = f"event:{event.pk}:revived"
            ledger.services.post_write_off_reversed(book_ref(transfer, step), amount=revived)
        ledger.services.post_reserve_owed(
            book_ref(transfer, step=f"event:{event.pk}"),
            previous=previous,
            refund=refund,
            dispute=dispute,
            given_back=given_back,
        )
    return transfer


def reserves_released(transfer_ids: list[int], *, release_id: int) -> int:
    """Close the reserves of these transfers: what they have left is sent by one release.

    Written only on rows whose reserve is still open; returns how many were closed (the
    caller holds their locks, so all of them)."""
    return SellerTransfer.objects.filter(pk__in=transfer_ids, reserve_release__isnull=True).update(
        reserve_release_id=release_id, updated_at=timezone.now()
    )


# --- Taking a refund's share back ---------------------------------------------------------------


def shares_changed(
    transfer: SellerTransfer, *, refund_target: int, dispute_target: int, actor: Actor
) -> SellerTransfer:
    """Schedule a paid transfer's reversal or give-back after its shares changed.

    completed | partially_reversed | reversed | reversal_refused → reversal_pending, due now
    with a fresh retry budget: the seller's share of the order's refunds (``refund_target``) or
    of its chargeback (``dispute_target``) changed, so something is to be taken back from them,
    or given back. A row already pending keeps its schedule (its attempt may be in flight)."""
    previous = transfer.reversal_target, transfer.dispute_target
    fields: dict[str, Any] = {
        "reversal_target": refund_target,
        "dispute_target": dispute_target,
        "amount_to_give_back": money.to_give_back_when(
            transfer.facts, refund_target + dispute_target
        ),
    }
    if transfer.status != TransferStatus.REVERSAL_PENDING:
        fields.update(
            next_retry_at=timezone.now(),
            retry_count=0,
            error_message="",
            read_stripe_first=False,
            key_first_sent_at=None,
        )
    detail = {"refund_target": refund_target, "dispute_target": dispute_target}
    with transaction.atomic():
        _move(transfer, TransferStatus.REVERSAL_PENDING, actor, detail, **fields)
        _post_shares(transfer, previous)
    return transfer


def _post_shares(transfer: SellerTransfer, previous: tuple[int, int]) -> None:
    ref = book_ref(transfer)
    ledger.services.post_refund_share(
        ref, previous_target=previous[0], target=transfer.reversal_target
    )
    ledger.services.post_dispute_share(
        ref, previous_target=previous[1], target=transfer.dispute_target
    )


def reversal_failed(
    transfer: SellerTransfer,
    *,
    message: str,
    follow: NextAttempt,
    retry_at: datetime,
    actor: Actor,
) -> SellerTransfer:
    """Record a failed reversal attempt.

    reversal_pending → reversal_pending: one attempt failed; the next is due at
    ``retry_at``."""
    key_field = "reversal_idempotency_key"
    _attempt_failed(
        transfer, TransferStatus.REVERSAL_PENDING, key_field, message, follow, retry_at, actor
    )
    _log(transfer, logging.WARNING, "reversal attempt failed; will retry", error=message)
    return transfer


def give_back_waits_for_debit(
    transfer: SellerTransfer, *, until: datetime, actor: Actor
) -> SellerTransfer:
    """Let a give-back wait for the answer of a debit of the seller's debt.

    reversal_pending → reversal_pending: what the row gives back would cancel debt that a
    pending account debit is taking from the seller; whether to cancel it or send it back
    depends on that debit's answer. No retry is spent; the debit's record wakes the worker,
    and ``until`` (when that answer is due at the latest) makes the row due again anyway."""
    message = "waits for the answer of the account debit of the seller's debt"
    return _move(
        transfer,
        TransferStatus.REVERSAL_PENDING,
        actor,
        {"waits_for": "account_debit", "until": until.isoformat()},
        error_message=message,
        next_retry_at=until,
    )


def give_back_waits(
    transfer: SellerTransfer,
    *,
    reason: HeldReason,
    message: str,
    follow: NextAttempt,
    recheck_at: datetime,
    actor: Actor,
) -> SellerTransfer:
    """Let a give-back wait for the seller's account.

    reversal_pending → reversal_pending: Stripe refused to give money back to the seller's
    account (it cannot receive transfers, or the seller disconnected). It waits for the account
    (``held_reason``), spending no retry: the account's next update saying it can receive, or a
    reconnection, makes it due at once (``give_back_resumed``); ``recheck_at`` is only there
    should that news never come. Stripe answered, so the next attempt sends a new key."""
    _move(
        transfer,
        TransferStatus.REVERSAL_PENDING,
        actor,
        {"waits_for": reason, "message": message, "recheck_at": recheck_at.isoformat()},
        held_reason=reason,
        error_message=message,
        next_retry_at=recheck_at,
        **_key_fields("reversal_idempotency_key", follow),
    )
    _log(transfer, logging.INFO, "give-back waits for the seller's account", reason=reason)
    return transfer


def give_back_resumed(transfer: SellerTransfer, *, actor: Actor) -> SellerTransfer:
    """Send a give-back that waited for the seller's account.

    reversal_pending → reversal_pending, due now: the seller's account can receive again (or
    is a new one), so the give-back that waited for it is sent."""
    return _move(
        transfer,
        TransferStatus.REVERSAL_PENDING,
        actor,
        {"resumed_from": transfer.held_reason},
        held_reason="",
        error_message="",
        next_retry_at=timezone.now(),
    )


def reversal_given_up(
    transfer: SellerTransfer,
    *,
    reason: EndReason,
    message: str,
    follow: NextAttempt | None = None,
    actor: Actor,
) -> SellerTransfer:
    """Give up reversing a transfer.

    reversal_pending → permanently_failed: the transfer cannot be reversed (``reason``); what
    is left of the seller's share stays with the seller until staff act."""
    fields: dict[str, Any] = {"retry_count": transfer.retry_count}
    if follow is not None:
        fields.update(
            retry_count=transfer.retry_count + 1,
            **_key_fields("reversal_idempotency_key", follow),
        )
    _move(
        transfer,
        TransferStatus.PERMANENTLY_FAILED,
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
    """Record what Stripe reversed and what was given back, and set the status.

    Record what Stripe has reversed, and what was given back in new transfers, in all
    (``money.settle``). The row becomes completed (all that was taken is given back), reversed
    (all of it taken back), partially_reversed (its shares are met), or stays
    reversal_pending, due now, when its shares moved while this attempt was in flight or
    something is to be given back.

    ``ours`` is what our own reversals took, of the reversed total; ``elsewhere`` is what
    reversals made outside the service took (known when Stripe's list was read). What our own
    reversals took beyond the shares is to be given back; what Stripe reversed beyond them on
    its own is reported, never adopted. The caller holds the row's lock (the latest shares)."""
    previous_reversed = transfer.amount_reversed
    outcome = money.settle(
        transfer.facts,
        reversed_seen=amount_reversed or 0,
        returned_seen=amount_returned or 0,
        ours=ours,
        elsewhere=elsewhere,
    )
    to = _SETTLED_STATUS[outcome.standing]
    detail = {"amount_reversed": outcome.reversed, "amount_returned": outcome.returned}
    if outcome.ours_beyond:
        detail["to_give_back"] = outcome.ours_beyond
    fields = _settled_fields(transfer, outcome, to, stripe_reversal_id, stripe_return_id)
    with transaction.atomic():
        _move(transfer, to, actor, detail, error_message=message, **fields)
        _post_settled(transfer, previous_reversed, outcome, stripe_reversal_id, stripe_return_id)
    _log_settled(transfer, to, outcome)
    return transfer


def _settled_fields(transfer, outcome: money.Settlement, to: str, reversal_id: str, return_id: str):
    """The fields a settled reversal step writes: the totals, and a fresh start for the next."""
    return {
        "amount_reversed": outcome.reversed,
        "amount_returned": outcome.returned,
        "amount_to_give_back": outcome.to_give_back,
        "stripe_reversal_id": reversal_id or transfer.stripe_reversal_id,
        "stripe_return_id": return_id or transfer.stripe_return_id,
        # The next step gets a fresh key (see payouts.transfer.idempotency).
        "reversal_idempotency_key": "",
        "key_first_sent_at": None,
        "retry_count": 0,
        "read_stripe_first": False,
        "next_retry_at": timezone.now() if to == TransferStatus.REVERSAL_PENDING else None,
        # A give-back that waited for the seller's account is sent: it waits no more.
        "held_reason": "",
    }


# Where a paid transfer rests once a reversal step is recorded, by where its money stands.
_SETTLED_STATUS = {
    money.Standing.UNSETTLED: TransferStatus.REVERSAL_PENDING,
    money.Standing.NOTHING_TAKEN: TransferStatus.COMPLETED,
    money.Standing.ALL_TAKEN: TransferStatus.REVERSED,
    money.Standing.PART_TAKEN: TransferStatus.PARTIALLY_REVERSED,
}


def _post_settled(transfer, previous_reversed: int, outcome, reversal_id: str, return_id: str):
    """Book what a settled reversal step moved: what Stripe reversed, what was given back."""
    ref = book_ref(transfer)
    ledger.services.post_reversal(
        ref,
        previous_reversed=previous_reversed,
        reversed_total=outcome.reversed,
        stripe_reversal_id=reversal_id,
    )
    ledger.services.post_given_back(
        ref, debt_cancelled=0, returned=outcome.given_back, stripe_transfer_id=return_id
    )


def _log_settled(transfer: SellerTransfer, to: str, outcome: money.Settlement) -> None:
    _log(transfer, logging.INFO, "reversal settled", status=to, amount_reversed=outcome.reversed)
    if outcome.ours_beyond:
        _log(
            transfer,
            logging.WARNING,
            "our reversal took more than the shares; the rest is given back",
            to_give_back=outcome.ours_beyond,
        )
    _report_over_reversal(transfer)


def debt_given_back(
    transfer: SellerTransfer, *, amount: int, written_off: int = 0, actor: Actor
) -> SellerTransfer:
    """Cancel part of the seller's debt instead of sending money back.

    reversal_pending → reversal_pending: part of what is owed back to the seller cancels
    their debt instead of being sent (their shares went down after a refused reversal).
    ``written_off`` of it was written off by staff: no longer owed, it comes back from bad debt
    and is cancelled with the rest, never paid out to the seller who kept it."""
    detail = {"debt_cancelled": amount}
    if written_off:
        detail["write_off_reversed"] = written_off
    with transaction.atomic():
        _move(
            transfer,
            TransferStatus.REVERSAL_PENDING,
            actor,
            detail,
            amount_owed=transfer.amount_owed - amount,
            amount_to_give_back=transfer.amount_to_give_back - amount,
        )
        ref = book_ref(transfer)
        if written_off:
            ledger.services.post_write_off_reversed(ref, amount=written_off)
        ledger.services.post_given_back(
            ref, debt_cancelled=amount, returned=0, stripe_transfer_id=""
        )
    return transfer


def reversal_seen_at_stripe(
    transfer: SellerTransfer, *, amount_reversed: int, actor: Actor
) -> SellerTransfer:
    """Record reversals made outside the service that Stripe reports.

    completed | partially_reversed | reversal_pending | reversal_refused → reversal_pending:
    Stripe reports more reversed than we recorded (a Dashboard reversal, or an answer we lost).
    Records it, never moves money; the worker then settles the status, reading Stripe's
    reversals first when more is reversed than the shares (our own, whose answer was lost, is
    given back; one made elsewhere is only reported). What it took of the seller's debt (a
    reversal Stripe had refused, made later) is to be given back: the worker cancels that debt.
    The target (the refunds' share) is not raised to match: more reversed than refunded and
    owed is reported for staff."""
    previous = transfer.amount_reversed
    pays_debt = money.reversal_pays_debt(transfer.facts, reversed_at_stripe=amount_reversed)
    fields: dict[str, Any] = {
        "amount_reversed": amount_reversed,
        "amount_to_give_back": transfer.amount_to_give_back + pays_debt,
    }
    if transfer.status != TransferStatus.REVERSAL_PENDING:
        fields.update(next_retry_at=timezone.now(), retry_count=0, read_stripe_first=False)
    detail: dict[str, Any] = {"stripe_amount_reversed": amount_reversed, "seen_at_stripe": True}
    if pays_debt:
        detail["pays_debt"] = pays_debt
    with transaction.atomic():
        _move(transfer, TransferStatus.REVERSAL_PENDING, actor, detail, **fields)
        ledger.services.post_reversal(
            book_ref(transfer),
            previous_reversed=previous,
            reversed_total=amount_reversed,
            stripe_reversal_id=transfer.stripe_reversal_id,
        )
    _report_over_reversal(transfer)
    return transfer


def reversal_refused(transfer: SellerTransfer, *, message: str, actor: Actor) -> SellerTransfer:
    """Record a share that cannot be reversed as the seller's debt.

    reversal_pending → reversal_refused: what is left of the seller's share cannot be taken
    back at Stripe (their balance refused it, or it was never sent to them at Stripe): it is
    recorded as the seller's debt, to be netted from their next transfers."""
    previous_owed = transfer.amount_owed
    # Only what is left of the shares: if they fell below what is taken, nothing more is owed
    # (the caller gives back the rest instead of refusing).
    owed = money.owed_after_refusal(transfer.facts)
    with transaction.atomic():
        _move(
            transfer,
            TransferStatus.REVERSAL_REFUSED,
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
        ledger.services.seller_debt_lock(seller_id=transfer.seller_id, currency=transfer.currency)
        ledger.services.post_reversal_refused(
            book_ref(transfer), previous_owed=previous_owed, owed_total=owed
        )
    _log(transfer, logging.WARNING, "the rest of the share is now the seller's debt", owed=owed)
    return transfer


def _report_over_reversal(transfer: SellerTransfer) -> None:
    # The gauge payouts_transfers_over_reversed counts these rows for alerting.
    if money.over_reversed(transfer.facts):
        _log(
            transfer,
            logging.ERROR,
            "Stripe has reversed more of the transfer than the refunds' share; staff must review",
            amount_reversed=transfer.amount_reversed,
            reversal_target=transfer.reversal_target,
        )


# --- Staff ----------------------------------------------------------------------------------


def requeued(transfer: SellerTransfer, *, to: str, reason: str, actor: Actor) -> SellerTransfer:
    """Put a transfer that gave up back to work (staff only).

    permanently_failed → failed | reversal_pending (staff only): a row that gave up after its
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
