"""The payouts app's staff money actions, as the approvals app runs them.

Staff refunds, releases of held transfers, re-queues, payout policy changes, releases of
risk holds and re-sends of reserve releases that gave up. Each reads its parameters
(``measure``), then runs through the same service as when it needs no approval."""

from collections.abc import Mapping
from typing import Any

from django.db.models import Sum

from approvals.registry import Action, ActionOutcomeUnknown, Ask, Measured, register
from config.errors import StripeRefused
from marketplace.models import Order, OrderStatus, Refund, RefundStatus, Seller
from marketplace.selectors import order_refund_reserved_amount, order_total
from marketplace.services import RefundRefused, UnknownOrder
from payouts.models import ReserveRelease, SellerTransfer
from payouts.services.holds import NothingToRelease, order_release
from payouts.services.policies import (
    UnknownSeller,
    policy_changes_parse,
    seller_policy_set,
)
from payouts.services.refunds import (
    ReservationOutcome,
    staff_refund_reserve,
    staff_refund_send,
    staff_refund_settle,
)
from payouts.services.requeue import TransferNotRequeueable, requeueable, transfer_requeue_by_staff
from payouts.services.reserves import (
    ReleaseNotResendable,
    UnknownRelease,
    release_resend_claim,
    release_resend_send,
    resendable,
)
from payouts.services.risk import NoRiskHold, risk_held_transfers, seller_risk_release
from payouts.services.transfers import UnknownTransfer
from payouts.transfer.actors import Actor
from payouts.transfer.transitions import HeldReason, TransferStatus


def _order(order_id: int) -> Order:
    try:
        return Order.objects.get(pk=order_id)
    except Order.DoesNotExist:
        raise UnknownOrder(f"No order {order_id}.") from None


def _approved(ask: Ask) -> str:
    """How an approved run names its second person in the audit trail."""
    if ask.request_id is None:
        return ""
    return f"approved by {ask.approved_by.get_username()}, approval request {ask.request_id}"


# --- Staff refunds


def _refund_measure(params: Mapping[str, Any]) -> Measured:
    order = _order(params["order_id"])
    if order.status == OrderStatus.PENDING or not order.stripe_payment_intent_id:
        raise RefundRefused(f"order {order.pk} is not paid")
    left = order_total(order=order) - order_refund_reserved_amount(order=order)
    amount = left if params.get("amount") is None else params["amount"]
    if amount <= 0 or amount > left:
        raise RefundRefused(
            f"order {order.pk} has {left} {order.currency} left to refund; asked {amount}"
        )
    # The amount is fixed when asked: "all that is left" is what the approver saw.
    return Measured(amount, order.currency, {"order_id": order.pk, "amount": amount})


def _refund_prepare(ask: Ask) -> dict:
    refund = staff_refund_reserve(order_id=ask.params["order_id"], amount=ask.params["amount"])
    return {"refund_id": refund.pk}


def _refund_send(result: dict) -> dict:
    try:
        refund = staff_refund_send(refund_id=result["refund_id"])
    except StripeRefused as error:
        if isinstance(error.subject, Refund) and error.subject.status == RefundStatus.PENDING:
            raise ActionOutcomeUnknown(error.message, subject=error.subject) from error
        raise
    return {"stripe_refund_id": refund.stripe_refund_id}


def _refund_resume(result: dict) -> dict:
    """Finish an approved staff refund whose send was interrupted.

    A send whose process died or whose answer was lost: Stripe is read first (our metadata names the
    refund row), then it is sent again with its own key or released."""
    outcome = staff_refund_settle(refund_id=result["refund_id"])
    refund = Refund.objects.get(pk=result["refund_id"])
    if outcome == ReservationOutcome.UNKNOWN:
        raise ActionOutcomeUnknown("Stripe could not be asked about the refund", subject=refund)
    if outcome == ReservationOutcome.RELEASED or refund.status == RefundStatus.FAILED:
        raise StripeRefused(f"Stripe holds no refund: {refund.error_message}", subject=refund)
    return {"stripe_refund_id": refund.stripe_refund_id}


# --- Releases of held transfers


def _awaiting_release(order_id: int):
    return SellerTransfer.objects.filter(
        order_id=order_id, status=TransferStatus.HELD, held_reason=HeldReason.AWAITING_RELEASE
    )


def _release_measure(params: Mapping[str, Any]) -> Measured:
    order = _order(params["order_id"])
    # Refused when asked (as order_release would), so nobody approves what cannot run.
    if order.status == OrderStatus.PENDING:
        raise NothingToRelease(f"order {order.pk} is not paid: nothing to release")
    if order.status == OrderStatus.REFUNDED:
        # Nothing to pay; its held rows are released to be closed (order_release reads Stripe).
        waiting = SellerTransfer.objects.filter(order_id=order.pk, status=TransferStatus.HELD)
    else:
        waiting = _awaiting_release(order.pk)
    currency = waiting.values_list("currency", flat=True).first()
    if currency is None and order.status == OrderStatus.REFUNDED:
        raise NothingToRelease(f"order {order.pk} was refunded in full: nothing to pay")
    if currency is None:
        raise NothingToRelease(f"order {order.pk} has no transfer waiting for release")
    amount = waiting.aggregate(total=Sum("amount"))["total"]
    return Measured(amount, currency, {"order_id": order.pk})


def _release_prepare(ask: Ask) -> dict:
    approved = _approved(ask)
    actor = Actor.staff(ask.user)
    if approved:
        actor = Actor(f"{actor.caused_by} ({approved})"[:255], ask.user)
    released = order_release(order_id=ask.params["order_id"], actor=actor)
    return {"released": [row.pk for row in released]}


# --- Re-queues of transfers that gave up


def _requeue_measure(params: Mapping[str, Any]) -> Measured:
    transfer = SellerTransfer.objects.filter(pk=params["transfer_id"]).first()
    if transfer is None:
        raise UnknownTransfer(f"No seller transfer {params['transfer_id']}.")
    why_not = requeueable(transfer)
    if why_not is not None:
        raise TransferNotRequeueable(why_not, subject=transfer)
    return Measured(transfer.amount, transfer.currency, {"transfer_id": transfer.pk})


def _requeue_prepare(ask: Ask) -> dict:
    approved = _approved(ask)
    reason = f"{ask.reason} ({approved})" if approved else ask.reason
    transfer = transfer_requeue_by_staff(
        transfer_id=ask.params["transfer_id"], user=ask.user, reason=reason
    )
    return {"transfer_id": transfer.pk, "status": transfer.status}


# --- Re-sends of reserve releases that gave up


def _resend_measure(params: Mapping[str, Any]) -> Measured:
    release = ReserveRelease.objects.filter(pk=params["release_id"]).first()
    if release is None:
        raise UnknownRelease(f"No reserve release {params['release_id']}.")
    why_not = resendable(release)
    if why_not is not None:
        raise ReleaseNotResendable(why_not, subject=release)
    return Measured(release.amount, release.currency, {"release_id": release.pk})


def _resend_prepare(ask: Ask) -> dict:
    approved = _approved(ask)
    reason = f"{ask.reason} ({approved})" if approved else ask.reason
    release = release_resend_claim(
        release_id=ask.params["release_id"], user=ask.user, reason=reason
    )
    return {"release_id": release.pk}


def _resend_send(result: dict) -> dict:
    release = release_resend_send(release_id=result["release_id"])
    return {"state": release.state, "stripe_transfer_id": release.stripe_transfer_id}


def _resend_resume(result: dict) -> dict:
    """An approved re-send whose process died: the release is pending, the sweep sends it.

    Its lease has run out (the approvals sweep waits as long), so the release sweep reads
    Stripe first and sends it, once; nothing is sent from here."""
    release = ReserveRelease.objects.get(pk=result["release_id"])
    return {"state": release.state, "stripe_transfer_id": release.stripe_transfer_id}


# --- Payout policy changes and risk releases


def _seller_exists(seller_id: int) -> None:
    if not Seller.objects.filter(pk=seller_id).exists():
        raise UnknownSeller(f"No seller {seller_id}.")


def _policy_measure(params: Mapping[str, Any]) -> Measured:
    """A policy change moves no money itself: amount 0 (its rule is "never" by default)."""
    _seller_exists(params["seller_id"])
    policy_changes_parse(params["changes"])  # refused when asked, as the run would refuse it
    changes = dict(params["changes"])
    return Measured(0, "usd", {"seller_id": params["seller_id"], "changes": changes})


def _policy_prepare(ask: Ask) -> dict:
    approved = _approved(ask)
    reason = f"{ask.reason} ({approved})" if approved else ask.reason
    policy = seller_policy_set(
        seller_id=ask.params["seller_id"],
        changes=ask.params["changes"],
        user=ask.user,
        reason=reason,
    )
    return {"seller_id": policy.seller_id}


def _risk_release_measure(params: Mapping[str, Any]) -> Measured:
    _seller_exists(params["seller_id"])
    held = risk_held_transfers(params["seller_id"])
    currency = held.values_list("currency", flat=True).first()
    if currency is None:
        raise NoRiskHold(f"seller {params['seller_id']} has no transfer held for risk")
    amount = held.filter(currency=currency).aggregate(total=Sum("amount"))["total"]
    return Measured(amount, currency, {"seller_id": params["seller_id"]})


def _risk_release_prepare(ask: Ask) -> dict:
    approved = _approved(ask)
    actor = Actor.staff(ask.user)
    if approved:
        actor = Actor(f"{actor.caused_by} ({approved})"[:255], ask.user)
    released = seller_risk_release(
        seller_id=ask.params["seller_id"], actor=actor, reason=ask.reason
    )
    return {"released": released}


def register_actions() -> None:
    register(
        Action(
            kind="staff_refund",
            label="Staff refund",
            measure=_refund_measure,
            subject=lambda params: f"order {params['order_id']}",
            prepare=_refund_prepare,
            send=_refund_send,
            resume=_refund_resume,
        )
    )
    register(
        Action(
            kind="release",
            label="Release of held transfers",
            measure=_release_measure,
            subject=lambda params: f"order {params['order_id']}",
            prepare=_release_prepare,
        )
    )
    register(
        Action(
            kind="requeue",
            label="Re-queue of a transfer that gave up",
            measure=_requeue_measure,
            subject=lambda params: f"transfer {params['transfer_id']}",
            prepare=_requeue_prepare,
            reason_required=True,
        )
    )
    register(
        Action(
            kind="policy_change",
            label="Payout policy change",
            measure=_policy_measure,
            subject=lambda params: f"seller {params['seller_id']}",
            prepare=_policy_prepare,
        )
    )
    register(
        Action(
            kind="risk_release",
            label="Release of a seller's risk hold",
            measure=_risk_release_measure,
            subject=lambda params: f"seller {params['seller_id']}",
            prepare=_risk_release_prepare,
        )
    )
    _register_reserve_resend()


def _register_reserve_resend() -> None:
    register(
        Action(
            kind="reserve_resend",
            label="Re-send of a reserve release that gave up",
            measure=_resend_measure,
            subject=lambda params: f"reserve release {params['release_id']}",
            prepare=_resend_prepare,
            send=_resend_send,
            resume=_resend_resume,
            reason_required=True,
        )
    )
