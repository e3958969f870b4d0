"""Reads that span an order's relations, each computed in one place."""

from collections.abc import Iterable

from django.db.models import Q, Sum
from django.db.models.functions import Coalesce

from marketplace.models import Order, OrderStatus, RefundStatus, Seller


def order_total(*, order: Order) -> int:
    """The order total is the sum of its items, never a stored copy."""
    return order.items.aggregate(total=Coalesce(Sum("amount"), 0))["total"]


def _refund_sum(order: Order, statuses: Iterable[str]) -> int:
    return order.refunds.filter(status__in=list(statuses)).aggregate(
        total=Coalesce(Sum("amount"), 0)
    )["total"]


def order_refunded_amount(*, order: Order) -> int:
    """What Stripe has refunded to the buyer: the sum of the order's succeeded refunds."""
    return _refund_sum(order, [RefundStatus.SUCCEEDED])


def order_refund_reserved_amount(*, order: Order) -> int:
    """The part of the order already refunded or being refunded.

    What is refunded or on its way: succeeded refunds plus pending ones (a staff refund
    reserves its amount before Stripe is called), so no amount can be refunded twice."""
    return _refund_sum(order, [RefundStatus.PENDING, RefundStatus.SUCCEEDED])


def order_settled_total(*, order: Order) -> int:
    """The order's payment as it settled on the platform's balance.

    What the buyer's payment settled as on the platform's balance, before Stripe's fee, in
    the settlement currency. An order paid before settlements were read settled as itself."""
    if order.settlement_amount is not None:
        return order.settlement_amount
    return order_total(order=order)


def refund_settled_amount(*, refund, order: Order) -> int | None:
    """The refund's amount as it settled on the platform's balance, when known.

    What the refund took from the platform's balance, in the order's settlement currency:
    its own balance transaction once read; its amount when no conversion happened (refund and
    settlement in one currency); ``None`` while its balance transaction is still to be read."""
    if refund.settlement_amount is not None:
        return refund.settlement_amount
    if order.status == OrderStatus.PENDING:
        return None  # its event came before the payment's: the settlement is not known yet
    if order.settled:
        return refund.amount if order.settlement_currency == refund.currency else None
    # Paid before settlements were read (its transfers are in its own currency), or its own
    # settlement still to be read.
    return refund.amount if order.settlement_due_at is None else None


def order_refunded_settled(*, order: Order) -> int:
    """The order's succeeded refunds as they settled on the platform's balance.

    What the order's succeeded refunds took from the platform's balance, in the settlement
    currency, capped at what the payment settled as; all of it once the buyer got everything
    back (whatever the refunds' rates). Refunds whose balance transaction is still to be read
    count when it is."""
    settled_total = order_settled_total(order=order)
    if order_refunded_amount(order=order) >= order_total(order=order):
        return settled_total
    refunds = order.refunds.filter(status=RefundStatus.SUCCEEDED)
    amounts = (refund_settled_amount(refund=refund, order=order) for refund in refunds)
    return min(sum(amount for amount in amounts if amount is not None), settled_total)


def seller_accounts(seller: Seller) -> set[str]:
    """The seller's connected accounts, current and past.

    Every connected account the seller's money has gone to: the one now and each one it was
    changed from (the audited account changes)."""
    earlier = seller.account_changes.values_list("old_account", flat=True)
    return {seller.stripe_account_id, *(account for account in earlier if account)}


def seller_for_connected_account(*, account_id: str) -> Seller | None:
    """The seller who has, or had, the connected account ``account_id``.

    Now or before an audited change; ``None`` when it is none of our sellers'."""
    if not account_id:
        return None
    return (
        Seller.objects.filter(
            Q(stripe_account_id=account_id) | Q(account_changes__old_account=account_id)
        )
        .order_by("pk")
        .first()
    )
