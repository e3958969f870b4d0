"""Staff re-queue of a transfer that gave up after its retries.

Staff re-queue a transfer that gave up: ``permanently_failed`` after its retries ran out (a
Stripe outage longer than the backoff, say) is not the end of the seller's money.

An unpaid transfer goes back to ``failed``, an unfinished reversal back to ``reversal_pending``,
due now with a fresh retry budget, through the staff-only edges of the state table
(``moves.requeued``, audited with the person and their reason). The workers then do the rest as
for any other row, with the row's kept idempotency key (or a read of Stripe first), so what an
earlier attempt did behind a lost answer is found, never done twice. Rows that ended for a final
reason are refused, saying why.
"""

from django.db import transaction

from config.errors import Conflict, InvalidInput
from marketplace.services import order_lock
from payouts.models import SellerTransfer
from payouts.services.shares import transfers_apply_shares
from payouts.services.transfers import UnknownTransfer
from payouts.transfer import moves
from payouts.transfer.actors import Actor
from payouts.transfer.locks import transfer_lock
from payouts.transfer.transitions import EndReason, TransferStatus
from payouts.wakeups import reversals_due_after_commit, send_transfers_after_commit

# Why a row that ended for these reasons can never be re-queued.
FINAL = {
    EndReason.TRANSFER_MISSING: (
        "Stripe answered 404 for its transfer: there is nothing to reverse in this account; find "
        "the money in the Stripe Dashboard"
    ),
    EndReason.NO_STRIPE_TRANSFER: "it has no Stripe transfer id: nothing at Stripe to reverse",
    EndReason.ORDER_REFUNDED: (
        "its order was refunded in full before the seller was paid: nothing is owed to them"
    ),
}


class TransferNotRequeueable(Conflict):
    code = "not_requeueable"


class RequeueReasonMissing(InvalidInput):
    code = "reason_required"


def transfer_requeue_by_staff(*, transfer_id: int, user, reason: str) -> SellerTransfer:
    """Put one transfer that gave up back to work, on a staff member's request.

    Re-queue one ``permanently_failed`` transfer that ran out of retries, on behalf of
    ``user``, for ``reason``. Returns the row, due now; the worker is woken after commit.

    Raises ``RequeueReasonMissing``, ``UnknownTransfer`` or ``TransferNotRequeueable`` (not
    permanently failed, or ended for a final reason); nothing changes then."""
    reason = (reason or "").strip()
    if not reason:
        raise RequeueReasonMissing("a reason is required to re-queue a transfer")
    order_id = SellerTransfer.objects.filter(pk=transfer_id).values_list("order_id", flat=True)
    if not order_id:
        raise UnknownTransfer(f"No seller transfer {transfer_id}.")
    with transaction.atomic():
        order = order_lock(order_id[0])  # the order first, as every path locking both does
        transfer = transfer_lock(transfer_id)
        _check_requeueable(transfer)
        to = _where_it_gave_up(transfer)
        moves.requeued(transfer, to=to, reason=reason[:500], actor=Actor.staff(user))
        if to == TransferStatus.REVERSAL_PENDING:
            # Refunds or disputes while it was given up are counted before it runs again.
            transfers_apply_shares(order=order, actor=Actor.staff(user))
            reversals_due_after_commit()
        else:
            send_transfers_after_commit(order_id=order.pk)
    transfer.refresh_from_db()
    return transfer


def requeueable(transfer: SellerTransfer) -> str | None:
    """``None`` when staff may re-queue the row, else why not."""
    if transfer.status != TransferStatus.PERMANENTLY_FAILED:
        return f"transfer {transfer.pk} is {transfer.status}, not permanently_failed"
    if transfer.end_reason in FINAL:
        return f"transfer {transfer.pk} cannot be re-queued: {FINAL[transfer.end_reason]}"
    return None


def _check_requeueable(transfer: SellerTransfer) -> None:
    why_not = requeueable(transfer)
    if why_not is not None:
        raise TransferNotRequeueable(why_not, subject=transfer)


def _where_it_gave_up(transfer: SellerTransfer) -> str:
    """The status a transfer that gave up goes back to.

    ``failed`` when it gave up paying the seller, ``reversal_pending`` when it gave up taking
    a share back: where its last move into ``permanently_failed`` came from."""
    last = (
        transfer.events.filter(to_status=TransferStatus.PERMANENTLY_FAILED)
        .order_by("-pk")
        .values_list("from_status", flat=True)
        .first()
    )
    if last is None:  # no audit of it: a paid row was being reversed
        return (
            TransferStatus.REVERSAL_PENDING
            if transfer.stripe_transfer_id
            else TransferStatus.FAILED
        )
    return (
        TransferStatus.REVERSAL_PENDING
        if last == TransferStatus.REVERSAL_PENDING
        else TransferStatus.FAILED
    )
