"""A refund's share of each seller transfer: what must be taken back from each seller.

Each paid transfer's ``reversal_target`` is its proportional share of what the order has
refunded so far; rows with more to take back become ``reversal_pending``, due now, and the
reversal worker (``payouts.services.reversals``) does the rest. This runs inside the caller's
short transaction (the refund's, or the payment's of a seller paid late), with no Stripe call, so
the buyer's refund is complete whatever Stripe Connect's health; the reversal worker is woken the
moment that transaction commits (``payouts.wakeups``).
"""

import logging

from marketplace.models import Order
from marketplace.selectors import order_refunded_amount, order_total
from payouts import moves
from payouts.locks import order_transfers_lock
from payouts.moves import Actor
from payouts.transitions import TransferStatus
from payouts.wakeups import reversals_due_after_commit

logger = logging.getLogger(__name__)

S = TransferStatus
# Transfers that moved money to a seller, so a refund's share can be taken back from them.
PAID = (S.COMPLETED, S.REVERSAL_PENDING, S.PARTIALLY_REVERSED, S.REVERSED, S.REVERSAL_REFUSED)


def proportional_targets(*, refunded: int, order_total: int, amounts: dict[int, int]) -> dict:
    """Each transfer's share of ``refunded / order_total`` of its amount, in whole minor units.

    The shares add up to the rounded (half up) exact total; the units lost by flooring go to the
    largest remainders (ties: lowest id). Never above a transfer's amount; all of it when the
    order is fully refunded.
    """
    if order_total <= 0 or refunded <= 0:
        return dict.fromkeys(amounts, 0)
    refunded = min(refunded, order_total)
    exact = {pk: refunded * amount for pk, amount in amounts.items()}  # share × order_total
    shares = {pk: value // order_total for pk, value in exact.items()}
    total = (2 * sum(exact.values()) + order_total) // (2 * order_total)
    by_remainder = sorted(amounts, key=lambda pk: (-(exact[pk] % order_total), pk))
    for pk in by_remainder[: max(total - sum(shares.values()), 0)]:
        shares[pk] += 1
    return {pk: min(share, amounts[pk]) for pk, share in shares.items()}


def transfers_apply_refunds(*, order: Order, actor: Actor) -> int:
    """Raise each paid transfer's ``reversal_target`` to its share of the order's succeeded
    refunds; rows with more to take back are scheduled for reversal. Must run inside the
    caller's transaction, which has locked the order. Returns how many rows were scheduled."""
    refunded, total = order_refunded_amount(order=order), order_total(order=order)
    rows = order_transfers_lock(order.pk)
    shared = {row.pk: row.amount for row in rows if row.status in PAID or _on_hold(row)}
    targets = proportional_targets(refunded=refunded, order_total=total, amounts=shared)
    scheduled = 0
    for row in rows:
        if row.pk not in shared:
            if refunded:
                logger.warning(
                    "refunded order has a transfer that was never paid; nothing to reverse",
                    extra={"order_id": order.pk, "transfer_id": row.pk, "status": row.status},
                )
            continue
        if targets[row.pk] <= row.reversal_target or row.status == S.REVERSED:
            continue
        if _on_hold(row):
            _keep_back(row, target=targets[row.pk], refunded=refunded, total=total, actor=actor)
            continue
        moves.reversal_scheduled(row, target=targets[row.pk], refunded=refunded, actor=actor)
        scheduled += 1
    if scheduled:
        reversals_due_after_commit()
    return scheduled


def _on_hold(row) -> bool:
    """Held and never handed to Stripe (no claim ever noted a send): its share of a refund can
    be kept back instead of sent and reversed."""
    return row.status == S.HELD and row.key_first_sent_at is None


def _keep_back(row, *, target: int, refunded: int, total: int, actor: Actor) -> None:
    if refunded >= total:
        moves.cancelled(row, actor=actor)  # refunded in full during the hold: never sent
    else:
        moves.share_withheld(row, target=target, refunded=refunded, actor=actor)
