"""Each seller's share of what the order gave back: its refunds, and its chargeback.

The arithmetic is ``payouts.transfer.money.order_shares``; a transfer with a rolling reserve
has its shares taken from the reserve first (``money.reserve_split``), and only the rest is
its ``reversal_target`` and ``dispute_target``. A paid transfer's
``reversal_target`` is its proportional share of what the order has refunded
(succeeded refunds only), and its ``dispute_target`` its share of the chargeback being recovered
(see ``payouts.services.disputes``); together they never exceed the transfer. Both are computed
afresh from the order each time, so they follow it both ways: up when a refund succeeds or a
chargeback is recovered, down when a refund fails after succeeding or a dispute is won. A row
whose shares changed becomes ``reversal_pending``, due now, and the reversal worker
(``payouts.services.reversals``) takes back, or gives back, the difference.

This runs inside the caller's short transaction, with no Stripe call, so the buyer's refund is
complete whatever Stripe Connect's health; the reversal worker is woken the moment that
transaction commits (``payouts.wakeups``).
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from marketplace.models import Order
from marketplace.selectors import (
    order_refunded_amount,
    order_refunded_settled,
    order_settled_total,
    order_total,
)
from payouts.selectors import dispute_recovery_amount
from payouts.services.reserves import reserve_give_back, reserve_owed_changed
from payouts.transfer import money, moves
from payouts.transfer.actors import Actor
from payouts.transfer.locks import order_transfers_lock
from payouts.transfer.transitions import PAID_STATUSES, EndReason, TransferStatus
from payouts.wakeups import reversals_due_after_commit, send_transfers_after_commit

logger = logging.getLogger(__name__)


def transfers_apply_shares(*, order: Order, actor: Actor) -> int:
    """Recompute the sellers' shares of an order's refunds and chargeback.

    Recompute each transfer's share of the order's refunds and chargeback; schedule the rows
    whose shares changed (or keep them back, for a transfer still on hold). Must run inside the
    caller's transaction, which has locked the order. Returns how many rows were scheduled.

    Shares are fractions of what the payment settled as, in the settlement currency (the
    transfers' own): a refund counts for what its own balance transaction took, at its own
    rate, and a chargeback for what Stripe withdrew."""
    total, refunded = order_settled_total(order=order), order_refunded_settled(order=order)
    refunded_in_full = order_refunded_amount(order=order) >= order_total(order=order)
    recovered = dispute_recovery_amount(order=order)
    rows = order_transfers_lock(order.pk)
    if not refunded_in_full:
        _reinstate_cancelled(order, rows, actor)
    shared = {row.pk: row.amount for row in rows if row.status in PAID_STATUSES or _on_hold(row)}
    split = money.order_shares(
        refunded=refunded, recovered=recovered, order_total=total, amounts=shared
    )
    scheduled = 0
    for row in rows:
        if refunded_in_full and row.status == TransferStatus.HELD and not _on_hold(row):
            # Held after it was handed to Stripe (the account refused it): an earlier attempt
            # may have paid the seller, so it cannot just be cancelled. Sent back to the send
            # worker, which reads Stripe for a refunded order: it adopts a transfer it finds
            # (whose shares are then taken back) or cancels the row; never left held for ever.
            moves.released(row, actor=actor)
            send_transfers_after_commit(order_id=order.pk)
            continue
        if row.pk not in shared:
            if refunded:
                logger.warning(
                    "refunded order has a transfer that was never paid; nothing to take back",
                    extra={"order_id": order.pk, "transfer_id": row.pk, "status": row.status},
                )
            continue
        share = _from_the_reserve_first(row, split[row.pk], actor=actor)
        if (share.refund, share.dispute) == (row.reversal_target, row.dispute_target):
            continue
        shares = {"refund_target": share.refund, "dispute_target": share.dispute}
        if _on_hold(row):
            _keep_back(row, shares=shares, refunded_in_full=refunded_in_full, actor=actor)
            continue
        moves.shares_changed(row, **shares, actor=actor)
        scheduled += 1
    if scheduled:
        reversals_due_after_commit()
    return scheduled


def _from_the_reserve_first(row, share: money.Shares, *, actor: Actor) -> money.Shares:
    """Take the row's shares from its reserve first; return what is left for the transfer.

    While the reserve is held (not released yet) it covers the shares up to all it kept, and
    follows them both ways. Once released it covers no more than it did then: what it covers
    no more (a refund failed, a dispute was won) is given back to the seller in a release of
    its own (``reserves.reserve_give_back``). Shares it and the transfer part no longer cover
    (a full refund after the release) were paid to the seller by the release: their debt
    (``reserves.reserve_owed_changed``)."""
    if not row.amount_reserved:
        return share
    covered = money.Shares(refund=row.reserve_refund, dispute=row.reserve_dispute)
    if row.reserve_release_id is None:
        from_reserve, rest = money.reserve_split(share, reserve=row.amount_reserved)
        if from_reserve != covered:
            moves.reserve_shares_taken(
                row, refund=from_reserve.refund, dispute=from_reserve.dispute, actor=actor
            )
    else:
        released = money.reserve_after_release(share, covered=covered)
        if released.from_reserve != covered:
            reserve_give_back(row, released=released, actor=actor)
        rest = released.from_transfer
    # Once released, shares beyond what the reserve covered then fall on the transfer part as
    # far as it goes; beyond it, the release paid them to the seller: they owe them.
    from_transfer, owed = money.beyond_the_transfer(rest, room=row.amount - row.amount_reserved)
    if owed != money.Shares(refund=row.reserve_owed_refund, dispute=row.reserve_owed_dispute):
        reserve_owed_changed(row, owed=owed, actor=actor)
    return from_transfer


def _reinstate_cancelled(order: Order, rows, actor: Actor) -> None:
    """Owe the order's cancelled transfers again.

    Transfers cancelled because the order was refunded in full are owed again when it is not
    any more (that refund failed): held for what is left of the order's hold, else sent now."""
    for row in rows:
        if (
            row.status != TransferStatus.PERMANENTLY_FAILED
            or row.end_reason != EndReason.ORDER_REFUNDED
        ):
            continue
        hold = _row_hold(row)
        until = row.created_at + hold if hold else None
        if until is not None and until <= timezone.now():
            until = None
        moves.reinstated(row, until=until, actor=actor)
        if until is None:
            send_transfers_after_commit(order_id=order.pk)


def _row_hold(row) -> timedelta:
    """The hold the row was computed with (the seller's policy then), else ``TRANSFER_HOLD``."""
    if "hold" in row.policy:
        return timedelta(seconds=row.policy["hold"])
    return settings.PAYOUTS.transfer_hold


def _on_hold(row) -> bool:
    """Whether the transfer's shares can be kept back instead of reversed.

    Held and never handed to Stripe: its shares can be kept back instead of sent and taken
    back. No claim noted a send of its key, and no earlier key may have moved money (a 5xx
    renews the key and asks for Stripe to be read first: that row may be paid already, and its
    shares wait until the read says)."""
    return (
        row.status == TransferStatus.HELD
        and row.key_first_sent_at is None
        and not row.read_stripe_first
    )


def _keep_back(row, *, shares: dict, refunded_in_full: bool, actor: Actor) -> None:
    if refunded_in_full:
        moves.cancelled(row, actor=actor)  # refunded in full during the hold: never sent
    else:
        moves.share_withheld(row, **shares, actor=actor)
