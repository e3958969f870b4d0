"""Each seller's share of what the order gave back: its refunds, and its chargeback.

A paid transfer's ``reversal_target`` is its proportional share of what the order has refunded
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

from marketplace.models import Order
from marketplace.selectors import order_refunded_amount, order_total
from payouts import moves
from payouts.locks import order_transfers_lock
from payouts.moves import Actor
from payouts.selectors import dispute_recovery_amount
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


def transfers_apply_shares(*, order: Order, actor: Actor) -> int:
    """Recompute each transfer's share of the order's refunds and chargeback; schedule the rows
    whose shares changed (or keep them back, for a transfer still on hold). Must run inside the
    caller's transaction, which has locked the order. Returns how many rows were scheduled."""
    total, refunded = order_total(order=order), order_refunded_amount(order=order)
    recovered = dispute_recovery_amount(order=order)
    rows = order_transfers_lock(order.pk)
    shared = {row.pk: row.amount for row in rows if row.status in PAID or _on_hold(row)}
    refunds = proportional_targets(refunded=refunded, order_total=total, amounts=shared)
    both = proportional_targets(refunded=refunded + recovered, order_total=total, amounts=shared)
    scheduled = 0
    for row in rows:
        if row.pk not in shared:
            if refunded:
                logger.warning(
                    "refunded order has a transfer that was never paid; nothing to take back",
                    extra={"order_id": order.pk, "transfer_id": row.pk, "status": row.status},
                )
            continue
        refund_share = refunds[row.pk]
        dispute_share = min(max(both[row.pk] - refund_share, 0), row.amount - refund_share)
        if (refund_share, dispute_share) == (row.reversal_target, row.dispute_target):
            continue
        shares = {"refund_target": refund_share, "dispute_target": dispute_share}
        if _on_hold(row):
            _keep_back(row, shares=shares, refunded_in_full=refunded >= total, actor=actor)
            continue
        moves.shares_changed(row, **shares, actor=actor)
        scheduled += 1
    if scheduled:
        reversals_due_after_commit()
    return scheduled


def _on_hold(row) -> bool:
    """Held and never handed to Stripe (no claim ever noted a send): its shares can be kept back
    instead of sent and taken back."""
    return row.status == S.HELD and row.key_first_sent_at is None


def _keep_back(row, *, shares: dict, refunded_in_full: bool, actor: Actor) -> None:
    if refunded_in_full:
        moves.cancelled(row, actor=actor)  # refunded in full during the hold: never sent
    else:
        moves.share_withheld(row, **shares, actor=actor)
