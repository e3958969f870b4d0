"""Reads that span an order's relations, each computed in one place."""

from collections.abc import Iterable

from django.db.models import Sum
from django.db.models.functions import Coalesce

from marketplace.models import Order, RefundStatus


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
    """What is refunded or on its way: succeeded refunds plus pending ones (a staff refund
    reserves its amount before Stripe is called), so no amount can be refunded twice."""
    return _refund_sum(order, [RefundStatus.PENDING, RefundStatus.SUCCEEDED])
