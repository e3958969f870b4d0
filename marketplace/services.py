"""Writes to orders, refunds, disputes and sellers' accounts.

Called by ``payouts`` inside its own transactions; nothing here talks to Stripe or knows about
seller transfers."""

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from config.errors import Conflict, InvalidInput, NotFound
from marketplace.models import (
    AccountStatus,
    Dispute,
    DisputeStatus,
    Order,
    OrderStatus,
    Refund,
    RefundStatus,
    Seller,
    SellerAccountChange,
)
from marketplace.selectors import order_refund_reserved_amount, order_refunded_amount, order_total

logger = logging.getLogger(__name__)

# A refund never goes back to `pending`, and a failed or canceled one never succeeds later:
# events arrive out of order, and only these moves are real at Stripe.
_REFUND_MOVES = {
    RefundStatus.PENDING: {RefundStatus.SUCCEEDED, RefundStatus.FAILED, RefundStatus.CANCELED},
    RefundStatus.SUCCEEDED: {RefundStatus.FAILED, RefundStatus.CANCELED},
    RefundStatus.FAILED: set(),
    RefundStatus.CANCELED: set(),
}


class OrderMismatch(ValueError):
    """What Stripe says about a payment disagrees with the order."""


class UnknownOrder(NotFound):
    code = "unknown_order"


class RefundRefused(InvalidInput):
    """A staff refund that cannot be made (nothing paid, or more than what is left)."""

    code = "refund_refused"


def order_lock(order_id: int) -> Order:
    """Lock the order row until the caller's transaction ends and return it, fresh.

    Every path that locks an order and its refunds or transfers takes the order first.

    The lock is ``FOR NO KEY UPDATE``: it still serializes every path that locks the order, but
    lets other transactions insert rows that reference the order (ledger entries, transfer
    events). Postgres checks such a foreign key with ``FOR KEY SHARE`` on the order row, which a
    full ``FOR UPDATE`` would block: a path holding only a transfer row and booking an entry
    for its order would then wait on the order while a refund path holding the order waits on
    that transfer, a deadlock. Nothing changes an order's key or deletes an order under this
    lock."""
    try:
        return Order.objects.select_for_update(no_key=True, of=("self",)).get(pk=order_id)
    except Order.DoesNotExist:
        raise UnknownOrder(f"No order {order_id}.") from None


def order_mark_paid(
    *, order: Order, amount: int, currency: str, payment_intent_id: str, charge_id: str
) -> bool:
    """Record the payment; True when the order became paid now, False when it already was.

    Raises ``OrderMismatch`` (changing nothing) when the amount or currency differ from the order.
    """
    with transaction.atomic():
        order = order_lock(order.pk)
        total = order_total(order=order)
        if currency.lower() != order.currency or amount != total:
            raise OrderMismatch(
                f"order {order.pk} expects {total} {order.currency}, "
                f"payment {payment_intent_id} is {amount} {currency.lower()}"
            )
        if order.status != OrderStatus.PENDING:
            return False
        order.status = OrderStatus.PAID
        order.stripe_payment_intent_id = payment_intent_id
        order.stripe_charge_id = charge_id
        order.settlement_due_at = timezone.now()  # its balance transaction is read next
        order.save(
            update_fields=[
                "status",
                "stripe_payment_intent_id",
                "stripe_charge_id",
                "settlement_due_at",
                "updated_at",
            ]
        )
        # Refund events can arrive before the payment's: the order is then refunded already.
        order_apply_refunds(order=order)
        return True


@dataclass(frozen=True)
class Settlement:
    """What a payment or refund settled as on the platform's balance (see ``Settled``)."""

    currency: str
    amount: int
    net: int
    exchange_rate: object = None  # Decimal | None
    balance_transaction_id: str = ""


def settlement_record(*, row: Order | Refund, settlement: Settlement) -> bool:
    """Store what an order or a refund settled as, once.

    ``row`` is locked by the caller; the first answer stays. True when it was new."""
    if row.settled:
        return False
    row.settlement_currency = settlement.currency
    row.settlement_amount = settlement.amount
    row.exchange_rate = settlement.exchange_rate
    row.stripe_balance_transaction_id = settlement.balance_transaction_id
    row.settlement_due_at = None
    fields = [
        "settlement_currency",
        "settlement_amount",
        "exchange_rate",
        "stripe_balance_transaction_id",
        "settlement_due_at",
    ]
    if isinstance(row, Order):
        row.settlement_net = settlement.net
        fields.append("settlement_net")
    row.save(update_fields=[*fields, "updated_at"])
    return True


def settlement_postpone(*, row: Order | Refund, until) -> None:
    """Its balance transaction could not be read: try again at ``until``."""
    type(row).objects.filter(pk=row.pk, settlement_due_at__isnull=False).update(
        settlement_due_at=until
    )


@dataclass(frozen=True)
class RefundChange:
    refund: Refund
    previous_status: str | None  # None when the refund was new to us

    @property
    def became_succeeded(self) -> bool:
        return (
            self.refund.status == RefundStatus.SUCCEEDED
            and self.previous_status != RefundStatus.SUCCEEDED
        )

    @property
    def failed_after_success(self) -> bool:
        return self.previous_status == RefundStatus.SUCCEEDED and self.refund.status in (
            RefundStatus.FAILED,
            RefundStatus.CANCELED,
        )


def refund_record(
    *,
    order: Order,
    stripe_refund_id: str,
    amount: int,
    currency: str,
    status: str,
    local_refund_id: str | None = None,
) -> RefundChange:
    """Create or update the refund from what Stripe says; must run inside a transaction.

    A refund staff started here (``local_refund_id``, from the Stripe refund's metadata) is
    matched to its row even before that row learned its Stripe id. Duplicates and stale
    (out-of-order) statuses change nothing. The order's status follows the sum of its succeeded
    refunds.

    The order is locked first (then the refund, then the order's transfers, as every refund path
    does), so two different events about one new refund arriving together are applied one after
    the other instead of racing to create it.
    """
    order_lock(order.pk)
    refund, reservation = _refund_locked(order, stripe_refund_id, local_refund_id)
    if refund is None:
        refund = Refund.objects.create(
            order=order,
            stripe_refund_id=stripe_refund_id,
            amount=amount,
            currency=currency,
            status=status,
        )
        previous = None
    else:
        previous = refund.status
        if reservation and refund.status == RefundStatus.FAILED:
            _refund_reopen(refund, status)
        else:
            _refund_move(refund, status)
    order_apply_refunds(order=order)
    return RefundChange(refund=refund, previous_status=previous)


def _refund_locked(
    order: Order, stripe_refund_id: str, local_refund_id: str | None
) -> tuple[Refund | None, bool]:
    """Find and lock the refund row a Stripe refund belongs to.

    The refund row, locked: by its Stripe id, else the staff reservation it came from (which
    learns its Stripe id now); ``None`` when it is new to us. The flag is True when the row was
    found as a reservation that did not know its Stripe id yet."""
    refund = Refund.objects.select_for_update().filter(stripe_refund_id=stripe_refund_id).first()
    if refund is not None or not (local_refund_id and str(local_refund_id).isdigit()):
        return refund, False
    refund = (
        Refund.objects.select_for_update()
        .filter(pk=int(local_refund_id), order=order, stripe_refund_id="")
        .first()
    )
    if refund is None:
        return None, False
    refund.stripe_refund_id = stripe_refund_id
    refund.save(update_fields=["stripe_refund_id", "updated_at"])
    return refund, True


def _refund_reopen(refund: Refund, status: str) -> None:
    """Hand a failed staff refund back to Stripe's status when Stripe holds it.

    A staff reservation we marked failed (released, or its call taken for refused) turns out
    to be held by Stripe, which knows what became of it: its status is Stripe's from now on.
    A refund Stripe says succeeded counts, even if its amount was refunded again meanwhile."""
    if status == refund.status:
        return
    logger.warning(
        "a staff refund marked failed here is held by Stripe; its status is Stripe's",
        extra={
            "order_id": refund.order_id,
            "refund": refund.stripe_refund_id,
            "stored": refund.status,
            "received": status,
        },
    )
    refund.status = status
    refund.save(update_fields=["status", "updated_at"])


def _refund_move(refund: Refund, status: str) -> None:
    if status == refund.status:
        return
    if status not in _REFUND_MOVES[refund.status]:
        logger.info(
            "refund status change ignored",
            extra={"refund": refund.stripe_refund_id, "stored": refund.status, "received": status},
        )
        return
    refund.status = status
    refund.save(update_fields=["status", "updated_at"])


def refund_open_by_staff(*, order_id: int, amount: int | None) -> Refund:
    """Reserve a staff refund of ``amount`` (everything left when ``None``) as a ``pending`` row.

    Refunds still pending or succeeded count against what is left, so two staff members can never
    refund the same money. Raises ``UnknownOrder`` or ``RefundRefused``; changes nothing then.
    """
    with transaction.atomic():
        order = order_lock(order_id)
        if order.status == OrderStatus.PENDING or not order.stripe_payment_intent_id:
            raise RefundRefused(f"order {order.pk} is not paid")
        disputed = order.disputes.exclude(
            status__in=[DisputeStatus.WON, DisputeStatus.WARNING_CLOSED]
        ).first()
        if disputed is not None:
            raise OrderDisputed(
                f"order {order.pk}'s charge is disputed ({disputed.stripe_dispute_id}, "
                f"{disputed.status}): Stripe does not refund a disputed charge; answer the "
                "dispute instead"
            )
        left = order_total(order=order) - order_refund_reserved_amount(order=order)
        amount = left if amount is None else amount
        if amount <= 0 or amount > left:
            raise RefundRefused(
                f"order {order.pk} has {left} {order.currency} left to refund; asked {amount}"
            )
        return Refund.objects.create(
            order=order, amount=amount, currency=order.currency, status=RefundStatus.PENDING
        )


def refund_mark_failed(*, refund: Refund, error: str) -> None:
    """A staff refund Stripe definitely refused: it no longer holds back any amount."""
    Refund.objects.filter(pk=refund.pk, status=RefundStatus.PENDING).update(
        status=RefundStatus.FAILED, error_message=error
    )


def order_apply_refunds(*, order: Order) -> Order:
    """Set a paid order's status from the sum of its succeeded refunds."""
    order = order_lock(order.pk)
    if order.status == OrderStatus.PENDING:
        return order
    refunded = order_refunded_amount(order=order)
    if refunded == 0:
        status = OrderStatus.PAID
    elif refunded >= order_total(order=order):
        status = OrderStatus.REFUNDED
    else:
        status = OrderStatus.PARTIALLY_REFUNDED
    if status != order.status:
        order.status = status
        order.save(update_fields=["status", "updated_at"])
    return order


def order_find_for_payment(*, order_id: str | None, payment_intent_id: str) -> Order | None:
    if order_id and str(order_id).isdigit():
        order = Order.objects.filter(pk=int(order_id)).first()
        if order is not None:
            return order
    return Order.objects.filter(stripe_payment_intent_id=payment_intent_id).first()


def order_find_for_refund(
    *, charge_id: str | None, payment_intent_id: str | None, order_id: str | None
) -> Order | None:
    if charge_id:
        order = Order.objects.filter(stripe_charge_id=charge_id).first()
        if order is not None:
            return order
    if payment_intent_id:
        order = Order.objects.filter(stripe_payment_intent_id=payment_intent_id).first()
        if order is not None:
            return order
    if order_id and str(order_id).isdigit():
        return Order.objects.filter(pk=int(order_id)).first()
    return None


def seller_account_set(*, seller: Seller, stripe_account_id: str, user=None) -> Seller:
    """Change the connected account the seller's payouts go to.

    Point the seller's payouts at another connected account, audited in the same
    transaction."""
    with transaction.atomic():
        locked = Seller.objects.select_for_update().get(pk=seller.pk)
        if locked.stripe_account_id == stripe_account_id:
            return locked
        SellerAccountChange.objects.create(
            seller=locked,
            old_account=locked.stripe_account_id,
            new_account=stripe_account_id,
            changed_by=user,
        )
        locked.stripe_account_id = stripe_account_id
        # A new account must be checked before money is sent to it.
        locked.account_status = AccountStatus.UNKNOWN
        locked.account_status_reason = ""
        # The old account's events say nothing of the new one.
        locked.account_event_created = None
        locked.save(
            update_fields=[
                "stripe_account_id",
                "account_status",
                "account_status_reason",
                "account_event_created",
            ]
        )
    logger.warning(
        "seller connected account changed",
        extra={"seller_id": seller.pk, "by": getattr(user, "pk", None)},
    )
    return locked


def seller_account_status_set(*, seller: Seller, status: str, reason: str = "") -> Seller:
    """Record whether the seller's connected account can receive transfers.

    Record what Stripe says of the seller's connected account: whether it can receive
    transfers, and why not."""
    Seller.objects.filter(pk=seller.pk).update(
        account_status=status, account_status_reason=reason[:255], account_status_at=timezone.now()
    )
    seller.refresh_from_db(fields=["account_status", "account_status_reason", "account_status_at"])
    return seller


def seller_account_event_apply(
    *, seller: Seller, status: str, reason: str, event_created: datetime
) -> bool:
    """Apply a Stripe account event to the seller, unless a later one came first.

    It records what the event, made at ``event_created``, says of the seller's account; Stripe
    delivers events in any order. True when applied.

    Stripe stamps events to the second, so two of one second cannot be ordered by their times,
    and their arrival order says nothing. Between them a "restricted" never replaces a "ready":
    taken wrongly, a restriction holds the seller's transfers until some later event, which may
    never come (the account is fine), while a wrong "ready" costs one send that Stripe refuses,
    which holds the row and records the restriction itself. Any other event of the same second
    is applied in the order it arrives."""
    same_second = Q(account_event_created=event_created)
    if status == AccountStatus.RESTRICTED:
        same_second &= ~Q(account_status=AccountStatus.READY)
    applied = (
        Seller.objects.filter(pk=seller.pk)
        .filter(
            Q(account_event_created__isnull=True)
            | Q(account_event_created__lt=event_created)
            | same_second
        )
        .update(
            account_status=status,
            account_status_reason=reason[:255],
            account_status_at=timezone.now(),
            account_event_created=event_created,
        )
    )
    seller.refresh_from_db(
        fields=[
            "account_status",
            "account_status_reason",
            "account_status_at",
            "account_event_created",
        ]
    )
    return bool(applied)


# How far along a dispute is: a status never goes back (events arrive in any order), and a
# closed dispute stays closed.
_DISPUTE_PROGRESS = {
    DisputeStatus.WARNING_NEEDS_RESPONSE: 0,
    DisputeStatus.WARNING_UNDER_REVIEW: 1,
    DisputeStatus.NEEDS_RESPONSE: 2,  # an inquiry can become a chargeback
    DisputeStatus.UNDER_REVIEW: 3,
    DisputeStatus.WARNING_CLOSED: 9,
    DisputeStatus.WON: 9,
    DisputeStatus.LOST: 9,
}


@dataclass(frozen=True)
class DisputeFacts:
    """What one Stripe event says of a dispute."""

    stripe_dispute_id: str
    amount: int
    currency: str
    reason: str
    status: str
    evidence_due_by: object  # datetime | None
    funds_withdrawn: bool
    funds_reinstated: bool
    fee: int
    # What Stripe withdrew for it, in the settlement currency (None: not withdrawn yet).
    settlement_amount: int | None = None
    settlement_currency: str = ""


def dispute_record(*, order: Order, facts: DisputeFacts) -> Dispute:
    """Create or update the order's dispute from one Stripe event.

    Must run inside a transaction that locked the order. Whatever order events arrive in, the
    dispute ends as far along as the furthest of them said: statuses only move forward, and
    funds once withdrawn or reinstated stay so."""
    dispute = (
        Dispute.objects.select_for_update()
        .filter(stripe_dispute_id=facts.stripe_dispute_id)
        .first()
    )
    if dispute is None:
        return Dispute.objects.create(
            order=order,
            stripe_dispute_id=facts.stripe_dispute_id,
            amount=facts.amount,
            currency=facts.currency,
            fee=facts.fee,
            reason=facts.reason,
            status=facts.status,
            evidence_due_by=facts.evidence_due_by,
            funds_withdrawn=facts.funds_withdrawn,
            funds_reinstated=facts.funds_reinstated,
            settlement_amount=facts.settlement_amount,
            settlement_currency=facts.settlement_currency,
        )
    if dispute.is_open and _DISPUTE_PROGRESS[facts.status] >= _DISPUTE_PROGRESS[dispute.status]:
        dispute.status = facts.status
        dispute.evidence_due_by = facts.evidence_due_by or dispute.evidence_due_by
    dispute.funds_withdrawn |= facts.funds_withdrawn
    dispute.funds_reinstated |= facts.funds_reinstated
    dispute.fee = max(dispute.fee, facts.fee)
    if dispute.settlement_amount is None and facts.settlement_amount is not None:
        dispute.settlement_amount = facts.settlement_amount
        dispute.settlement_currency = facts.settlement_currency
    dispute.save()
    return dispute


class OrderDisputed(Conflict):
    """Stripe refuses to refund a charge its buyer's bank is disputing (or has charged back)."""

    code = "order_disputed"
