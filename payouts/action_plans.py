"""Plans of the console's money actions, read before they run.

What each action will do: one line per order or transfer naming whom it touches and how much, in the
console's money format. The confirmation pages show these; nothing here writes. The services decide
again under their locks when the action is confirmed, so a plan read a minute earlier can never make
them do more."""

from config.money import format_money
from console.display import seller_named
from marketplace.models import DisputeStatus, Order, OrderStatus
from marketplace.selectors import order_refund_reserved_amount, order_refunded_amount, order_total
from payouts.models import ReserveRelease, SellerTransfer
from payouts.services.requeue import requeueable
from payouts.services.reserves import resendable
from payouts.transfer.transitions import HeldReason, TransferStatus


def _sellers(order: Order) -> str:
    rows = SellerTransfer.objects.filter(order=order).select_related("seller").order_by("pk")
    return ", ".join(
        f"{row.seller.name} ({row.status}, {format_money(row.amount, row.currency)})"
        for row in rows
    )


def refund_in_full_plan(order: Order) -> str:
    total = order_total(order=order)
    refunded = order_refunded_amount(order=order)
    reserved = order_refund_reserved_amount(order=order)
    left = total - reserved
    paid = format_money(total, order.currency)
    if order.status == OrderStatus.PENDING:
        return f"Order {order.pk}: not paid yet, nothing to refund (left alone)."
    if left <= 0:
        return f"Order {order.pk}: nothing left to refund of {paid} (left alone)."
    dispute = (
        order.disputes.exclude(status__in=[DisputeStatus.WON, DisputeStatus.WARNING_CLOSED])
        .values_list("stripe_dispute_id", "status")
        .first()
    )
    if dispute is not None:
        return (
            f"Order {order.pk}: disputed ({dispute[0]}, {dispute[1]}): Stripe refuses to refund "
            "a disputed charge, so it is left alone; answer the dispute in the Dashboard."
        )
    so_far = (
        f"{format_money(refunded, order.currency)} refunded already"
        if refunded
        else "nothing refunded yet"
    )
    if reserved > refunded:
        so_far += f", {format_money(reserved - refunded, order.currency)} on its way"
    sellers = _sellers(order)
    then = f" Then each seller's share is taken back: {sellers}." if sellers else ""
    return (
        f"Order {order.pk}: refund {format_money(left, order.currency)} to the buyer "
        f"{order.buyer_email} at Stripe, all that is left of {paid} ({so_far}).{then}"
    )


def release_plan(order: Order) -> list[str]:
    held = SellerTransfer.objects.filter(order=order, status=TransferStatus.HELD).select_related(
        "seller"
    )
    if order.status == OrderStatus.REFUNDED:
        lines = [
            f"Order {order.pk} was refunded in full: transfer {row.pk} to "
            f"{seller_named(row.seller)} is closed, not paid (Stripe is read first: a transfer "
            "found there is recorded and taken back, otherwise the row is cancelled)."
            for row in held.order_by("pk")
        ]
        return lines or [f"Order {order.pk}: refunded in full, nothing held (left alone)."]
    rows = held.filter(held_reason=HeldReason.AWAITING_RELEASE).order_by("pk")
    lines = [
        f"Order {order.pk}: send {format_money(row.to_send, row.currency)} to "
        f"{seller_named(row.seller)} now (transfer {row.pk})."
        for row in rows
    ]
    return lines or [f"Order {order.pk}: no transfer waiting for release (left alone)."]


def retry_plan(row: SellerTransfer) -> str:
    if row.status != TransferStatus.FAILED:
        return f"Transfer {row.pk}: {row.status}, not failed (left alone)."
    error = f"; last error: {row.error_message}" if row.error_message else ""
    return (
        f"Transfer {row.pk}: send {format_money(row.to_send, row.currency)} to "
        f"{seller_named(row.seller)} at Stripe now, for order {row.order_id} "
        f"(after {row.retry_count} failed attempt(s){error})."
    )


def requeue_plan(row: SellerTransfer) -> str:
    why_not = requeueable(row)
    if why_not is not None:
        return f"Transfer {row.pk}: left alone ({why_not})."
    if row.stripe_transfer_id:
        left = row.reversal_target - row.amount_reversed - row.amount_owed
        return (
            f"Transfer {row.pk}: back to reversal_pending, due now, to take back "
            f"{format_money(max(left, 0), row.currency)} from {seller_named(row.seller)} "
            f"(order {row.order_id})."
        )
    return (
        f"Transfer {row.pk}: back to failed, due now, to send "
        f"{format_money(row.to_send, row.currency)} to {seller_named(row.seller)} "
        f"(order {row.order_id}); it was never paid, so paying it by hand as well would pay "
        "twice."
    )


def resend_plan(row: ReserveRelease) -> str:
    why_not = resendable(row)
    if why_not is not None:
        return f"Reserve release {row.pk}: left alone ({why_not})."
    return (
        f"Reserve release {row.pk}: read at Stripe, then sent again if not found there: "
        f"{format_money(row.amount, row.currency)} to {seller_named(row.seller)} "
        f"(gave up after {row.retry_count} attempt(s): {row.error_message or 'no error'})."
    )
