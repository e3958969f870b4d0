"""Paying sellers: one Stripe transfer per seller of a paid order.

A payment creates one ``pending`` row per seller, due at once, and a Celery task sent after
commit pays them. The sender claims due ``pending``/``failed`` rows (see
``payouts.transfer.locks``), calls Stripe with no transaction open, and records the outcome with
a named move. The same code serves the first send, the retry worker, recovery of rows a crashed
sender left ``pending``, and the staff retry."""

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from enum import StrEnum

from django.conf import settings
from django.db import transaction
from django.db.models import Sum, prefetch_related_objects
from django.utils import timezone

import ledger.services
from config.errors import Conflict, NotFound, StripeRefused
from marketplace.models import AccountStatus, Order, OrderStatus
from marketplace.selectors import order_total, seller_accounts
from marketplace.services import (
    Settlement,
    order_lock,
    order_mark_paid,
    seller_account_status_set,
    settlement_postpone,
    settlement_record,
)
from payouts.models import SellerTransfer
from payouts.services.policies import policy_effective, seller_policy
from payouts.services.risk import seller_at_risk
from payouts.services.shares import transfers_apply_shares
from payouts.stripe_api.gateway import (
    DestinationCannotReceive,
    GatewayError,
    StripeGateway,
    StripeSettlement,
    StripeTransfer,
    get_gateway,
)
from payouts.transfer import money, moves
from payouts.transfer.actors import Actor
from payouts.transfer.idempotency import (
    NextAttempt,
    key_may_be_forgotten,
    next_attempt,
    transfer_key,
)
from payouts.transfer.locks import claim_due, lease_take, transfer_lock
from payouts.transfer.transitions import ConcurrentTransition, HeldReason, TransferStatus
from payouts.wakeups import send_transfers_after_commit, transfers_due_at

logger = logging.getLogger(__name__)

SENDABLE = (TransferStatus.PENDING, TransferStatus.FAILED)
# How far Stripe's clock and ours may disagree when telling an old transfer from ours.
CLOCK_SLACK_SECONDS = 300
SENDER = Actor.worker("send_transfers")


class SendOutcome(StrEnum):
    COMPLETED = "completed"
    # The seller's account cannot receive transfers: waits, spending no retry.
    HELD = "held"
    RETRY_SCHEDULED = "retry_scheduled"
    GAVE_UP = "permanently_failed"
    # The order was refunded in full before the seller was paid: never paid.
    CANCELLED = "cancelled_refunded"
    SKIPPED = "skipped"
    LOST_RACE = "lost_race"


def platform_fee(gross: int, bps: int) -> int:
    """``gross × bps / 10000`` rounded half up, in integer arithmetic."""
    return (gross * bps + 5_000) // 10_000


def transfer_group(order: Order) -> str:
    return f"order_{order.pk}"


def order_payment_record(
    *, order: Order, amount: int, currency: str, payment_intent_id: str, charge_id: str
) -> bool:
    """Record a buyer's payment and pay its sellers after commit.

    Stripe took the buyer's payment: mark the order paid, and after commit read what it
    settled as, create its seller transfers and pay them (``order_settle``). True when the order
    became paid now. Idempotent; raises ``OrderMismatch`` when the amounts disagree."""
    with transaction.atomic():
        became_paid = order_mark_paid(
            order=order,
            amount=amount,
            currency=currency,
            payment_intent_id=payment_intent_id,
            charge_id=charge_id,
        )
        send_transfers_after_commit(order_id=order.pk)
    return became_paid


def orders_settle_due(
    *, order_id: int | None = None, limit: int = 100, gateway: StripeGateway | None = None
) -> int:
    """Settle the paid orders whose balance transaction is due to be read.

    Every such order (or the one ``order_id``), in batches of ``limit``. Returns how many got
    their transfer rows. An order Stripe cannot answer for is due again later, so this ends."""
    gateway = gateway or get_gateway()
    orders = Order.objects.all() if order_id is None else Order.objects.filter(pk=order_id)
    due = settlement_due_rows(orders, limit=limit)
    return sum(bool(order_settle(order=order, gateway=gateway)) for order in due)


def settlement_due_rows(queryset, *, limit: int) -> Iterator:
    """Iterate the rows whose balance transaction is due to be read.

    The rows of ``queryset`` (orders or refunds) whose balance transaction is due to be
    read, fetched ``limit`` at a time in id order, each once."""
    after = 0
    while True:
        due = queryset.filter(settlement_due_at__lte=timezone.now(), pk__gt=after)
        batch = list(due.order_by("pk")[:limit])
        yield from batch
        if len(batch) < limit:
            return
        after = batch[-1].pk


# A balance transaction Stripe could not give us is asked for again this much later.
SETTLEMENT_READ_RETRY = timedelta(minutes=1)


def order_settle(*, order: Order, gateway: StripeGateway | None = None) -> list[SellerTransfer]:
    """Settle one paid order and create its seller transfers.

    Read what the order's payment settled as (its charge's balance transaction: currency,
    amount, Stripe's fee, rate), then create its seller transfers from it. No transaction is
    open during the Stripe call. Returns the rows; none while the balance transaction cannot be
    read yet (the order stays due and is tried again)."""
    if order.settled or order.transfers.exists():
        return transfers_create_for_order(order=order)
    if not order.stripe_charge_id:
        # A payment Stripe told us of without its charge: nothing to read, nothing to tie the
        # transfers to; they go out in the order's own currency.
        logger.warning("paid order has no charge; settled as itself", extra={"order_id": order.pk})
        return transfers_create_for_order(order=order, settlement=_as_itself(order))
    gateway = gateway or get_gateway()
    settlement = settlement_read(order, lambda: gateway.charge_settlement(order.stripe_charge_id))
    if settlement is None:
        return []
    return transfers_create_for_order(order=order, settlement=settlement)


def settlement_read(row, read: Callable[[], StripeSettlement | None]) -> Settlement | None:
    """Read what an order or a refund settled as at Stripe.

    What ``row`` (an order or a refund) settled as, read from Stripe by ``read``. ``None``
    when Stripe cannot give it yet (an error, or no balance transaction so far): the row is
    due again in ``SETTLEMENT_READ_RETRY``."""
    try:
        found = read()
    except GatewayError as error:
        logger.warning(
            "could not read a balance transaction; tried again later",
            extra={"row": f"{row._meta.model_name} {row.pk}", "error": error.describe()},
        )
        found = None
    if found is None:
        settlement_postpone(row=row, until=timezone.now() + SETTLEMENT_READ_RETRY)
        return None
    return Settlement(
        currency=found.currency,
        amount=found.amount,
        net=found.net,
        exchange_rate=found.exchange_rate,
        balance_transaction_id=found.balance_transaction_id,
    )


def _as_itself(order: Order) -> Settlement:
    total = order_total(order=order)
    return Settlement(currency=order.currency, amount=total, net=total)


def transfers_create_for_order(
    *, order: Order, settlement: Settlement | None = None
) -> list[SellerTransfer]:
    """Create the order's seller transfers and book the payment, once.

    Record what the order settled as, create its seller transfer rows from it, one per
    seller, ``pending`` and due now, and post the payment in the book. The seller's rolling
    reserve (their policy's ``reserve_bps``) is kept back from the new row and booked to their
    reserve account; a seller who owes us (a refused reversal) has the debt netted from what is
    left, never below zero.

    Idempotent: under the order's lock, an order that has its rows already gets nothing new, so
    duplicate or replayed payment events never create a second row nor post twice.
    """
    with transaction.atomic():
        order = order_lock(order.pk)
        existing = list(order.transfers.order_by("pk"))
        if existing:
            return existing
        if settlement is not None:
            settlement_record(row=order, settlement=settlement)
        if not order.settled:
            return []
        rows = _new_rows(order)
        SellerTransfer.objects.bulk_create(rows)
        for row in rows:
            if row.amount_netted:
                ledger.services.post_netting(
                    moves.book_ref(row, step="created"), amount=row.amount_netted
                )
            if row.amount_reserved:
                ledger.services.post_reserve_kept(
                    moves.book_ref(row, step="created"), amount=row.amount_reserved
                )
        ledger.services.post_payment(
            order_id=order.pk,
            charge_id=order.stripe_charge_id,
            currency=order.settlement_currency,
            total=order.settlement_net,
            shares=[
                ledger.services.Share(row.seller_id, row.amount, row.platform_fee) for row in rows
            ],
        )
    return rows


def seller_shares_of_settlement(order: Order) -> dict[int, int]:
    """Split the payment's net settlement between the sellers, by their items.

    Each seller's part of what the payment settled as after Stripe's fee (the order's
    ``settlement_net``), in proportion to their items: whole minor units of the settlement
    currency that add up to it exactly."""
    gross_by_seller = dict(
        order.items.values_list("seller_id").annotate(gross=Sum("amount")).order_by("seller_id")
    )
    total = sum(gross_by_seller.values())
    return money.allocate(order.settlement_net, of=total, weights=gross_by_seller)


def _new_rows(order: Order) -> list[SellerTransfer]:
    currency = order.settlement_currency
    rows = []
    for seller_id, gross in seller_shares_of_settlement(order).items():
        policy = seller_policy(seller_id)
        terms = policy_effective(policy)
        fee = platform_fee(gross, terms.fee_bps)
        net = gross - fee
        if net <= 0:
            logger.warning(
                "seller share is zero after the fee; no transfer",
                extra={"order_id": order.pk, "seller_id": seller_id},
            )
            continue
        at_risk = seller_at_risk(seller_id=seller_id, released_at=policy.risk_released_at)
        debt = ledger.services.seller_debt_free_lock(seller_id=seller_id, currency=currency)
        reserve = money.reserve_kept(amount=net, bps=terms.reserve_bps)
        rows.append(
            SellerTransfer(
                order=order,
                seller_id=seller_id,
                amount=net,
                platform_fee=fee,
                amount_netted=money.netted_at_creation(amount=net - reserve, debt=debt),
                currency=currency,
                policy=terms.as_recorded(risk=at_risk),
                **_reserve(reserve, days=terms.reserve_days),
                **_first_status(hold=terms.hold, at_risk=at_risk),
            )
        )
    return rows


def _reserve(reserve: int, *, days: int) -> dict:
    """The reserve kept back from a new transfer, and when what it has left is released."""
    if not reserve:
        return {}
    return {
        "amount_reserved": reserve,
        "reserve_release_at": timezone.now() + timedelta(days=days),
    }


def _first_status(*, hold: timedelta, at_risk: bool) -> dict:
    """Due now, held for the seller's disputes, or held until the seller's hold ends.

    The hold is the seller's policy's (``TRANSFER_HOLD`` by default). A risk hold has no end
    time: only staff release it."""
    now = timezone.now()
    if at_risk:
        return {
            "status": TransferStatus.HELD,
            "held_reason": HeldReason.RISK,
            "next_retry_at": None,
            "error_message": "held for the seller's disputes until staff release it",
        }
    if not hold:
        return {"status": TransferStatus.PENDING, "next_retry_at": now}
    until = now + hold
    return {
        "status": TransferStatus.HELD,
        "held_reason": HeldReason.AWAITING_RELEASE,
        "next_retry_at": until,
        "error_message": f"held until {until:%Y-%m-%d %H:%M:%S %Z} or until released",
    }


def transfers_send_due(
    *, order_id: int | None = None, limit: int = 100, gateway: StripeGateway | None = None
) -> dict[str, int]:
    """Send the due seller transfers.

    Send every due ``pending``/``failed`` transfer (of one order, or all). Returns counts per
    outcome."""
    gateway = gateway or get_gateway()
    summary: Counter[str] = Counter()
    settled = orders_settle_due(order_id=order_id, gateway=gateway)
    if settled:
        summary["orders_settled"] = settled
    while True:
        rows = claim_due(statuses=SENDABLE, now=timezone.now(), limit=limit, order_id=order_id)
        prefetch_related_objects(rows, "order", "seller")
        for row in rows:
            summary[transfer_send(row, gateway=gateway, actor=SENDER)] += 1
        if len(rows) < limit:
            return dict(summary)


def transfer_send(
    transfer: SellerTransfer, *, gateway: StripeGateway, actor: Actor, may_give_up: bool = True
) -> SendOutcome:
    """Try once to pay a claimed seller transfer.

    One attempt to pay a claimed ``transfer``. A staff retry (``may_give_up=False``) never
    gives up: a person asked for one more attempt, not for the worker's budget."""
    if transfer.status not in SENDABLE:
        return SendOutcome.SKIPPED
    transfer.order.refresh_from_db(fields=["status"])
    try:
        return _attempt(transfer, gateway=gateway, actor=actor, may_give_up=may_give_up)
    except ConcurrentTransition:
        logger.info("another actor moved the transfer first", extra={"transfer_id": transfer.pk})
        return SendOutcome.LOST_RACE


def _attempt(
    transfer: SellerTransfer, *, gateway: StripeGateway, actor: Actor, may_give_up: bool
) -> SendOutcome:
    order, seller = transfer.order, transfer.seller
    refunded = order.status == OrderStatus.REFUNDED
    key = transfer_key(transfer)

    def failed(message: str, error: GatewayError | None) -> SendOutcome:
        return _attempt_failed(
            transfer, message=message, error=error, key=key, actor=actor, may_give_up=may_give_up
        )

    if not refunded and transfer.to_send == 0:
        # All of it settled the seller's debt, or was refunded during a hold: nothing to send.
        _record_paid(transfer, stripe_transfer_id="", key="", adopted=False, actor=actor)
        return SendOutcome.COMPLETED
    if not refunded and not seller.stripe_account_id:
        return failed(
            f"{seller.name} (seller {seller.pk}) has no connected Stripe account yet", None
        )
    try:
        if not refunded and not _seller_can_receive(seller, gateway):
            return _hold_for_the_account(transfer, seller, actor)
        existing = None
        stale_key = key_may_be_forgotten(transfer, now=timezone.now())
        if refunded or transfer.read_stripe_first or stale_key:
            # An earlier attempt may have paid the seller behind an answer we never saw.
            existing = _find_at_stripe(transfer, gateway)
        if existing is None and refunded:
            moves.cancelled(transfer, actor=actor)
            return SendOutcome.CANCELLED
        result = existing or _create_at_stripe(transfer, gateway, key)
    except DestinationCannotReceive as error:
        return _refused_for_the_account(transfer, seller, actor, key=key, error=error)
    except GatewayError as error:
        return failed(error.describe(), error)
    adopted = existing is not None
    _record_paid(
        transfer,
        stripe_transfer_id=result.id,
        key=key,
        adopted=adopted,
        actor=actor,
        destination_payment=result.destination_payment,
    )
    return SendOutcome.COMPLETED


def _refused_for_the_account(
    transfer: SellerTransfer, seller, actor: Actor, *, key: str, error: DestinationCannotReceive
) -> SendOutcome:
    """Stripe refused the send for the seller's account: record why, and hold the row for it."""
    seller_account_status_set(
        seller=seller,
        status=AccountStatus.DEAUTHORIZED if error.deauthorized else AccountStatus.RESTRICTED,
        reason=error.describe(),
    )
    # Stripe keeps its answer under the key: sent again once the account can receive, the same
    # key would replay this refusal for ever. The next attempt sends a new one.
    follow = next_attempt(key, error, read_stripe_first=transfer.read_stripe_first)
    return _hold_for_the_account(transfer, seller, actor, follow=follow)


def _seller_can_receive(seller, gateway: StripeGateway) -> bool:
    """What we know of the seller's account; asked of Stripe (and recorded) when unknown."""
    if seller.account_status == AccountStatus.UNKNOWN:
        account = gateway.retrieve_account(seller.stripe_account_id)
        deauthorized = account.reason == "deauthorized"
        status = AccountStatus.READY if account.can_receive else AccountStatus.RESTRICTED
        seller_account_status_set(
            seller=seller,
            status=AccountStatus.DEAUTHORIZED if deauthorized else status,
            reason=account.reason,
        )
    return seller.account_status == AccountStatus.READY


def _hold_for_the_account(
    transfer: SellerTransfer, seller, actor: Actor, *, follow: NextAttempt | None = None
) -> SendOutcome:
    reason = (
        HeldReason.ACCOUNT_DEAUTHORIZED
        if seller.account_status == AccountStatus.DEAUTHORIZED
        else HeldReason.ACCOUNT_RESTRICTED
    )
    message = f"the seller's account cannot receive transfers: {seller.account_status_reason}"
    moves.held(transfer, reason=reason, message=message.rstrip(": "), follow=follow, actor=actor)
    return SendOutcome.HELD


def _record_paid(
    transfer: SellerTransfer,
    *,
    stripe_transfer_id: str,
    key: str,
    adopted: bool,
    actor: Actor,
    destination_payment: str = "",
) -> None:
    """Record the transfer paid and apply the order's earlier refunds to it.

    Paid, and the order's earlier refunds applied to the new payment, in one transaction: a
    refund may have succeeded while this seller was still unpaid, and its share must be taken
    back whatever happens to this process next. The order is locked first, as every path that
    locks an order's transfers does."""
    with transaction.atomic():
        order = order_lock(transfer.order_id)
        moves.paid(
            transfer,
            stripe_transfer_id=stripe_transfer_id,
            key=key,
            adopted=adopted,
            actor=actor,
            stripe_destination_payment_id=destination_payment,
        )
        transfers_apply_shares(order=order, actor=actor)


def _row_stamp(transfer: SellerTransfer) -> str:
    """The row's creation time in microseconds, naming the row together with its id.

    With the row id, it names this row even after a database restore or rebuild reuses ids."""
    return str(int(transfer.created_at.timestamp() * 1_000_000))


def _create_at_stripe(transfer: SellerTransfer, gateway: StripeGateway, key: str):
    order = transfer.order
    return gateway.create_transfer(
        amount=transfer.to_send,
        currency=transfer.currency,
        destination=transfer.seller.stripe_account_id,
        transfer_group=transfer_group(order),
        source_transaction=order.stripe_charge_id or None,
        metadata={
            "order_id": str(order.pk),
            "seller_transfer_id": str(transfer.pk),
            "seller_transfer_created": _row_stamp(transfer),
        },
        idempotency_key=key,
    )


def _find_at_stripe(transfer: SellerTransfer, gateway: StripeGateway) -> StripeTransfer | None:
    """Find the Stripe transfer an earlier attempt of this row made, if any.

    A Stripe transfer an earlier attempt of this row already made: same amount, currency,
    row (id and creation time), to one of the seller's accounts (the one now, or one it had when
    that attempt ran). Anything else is someone else's transfer, and adopting it would mark our
    seller paid while they never were."""
    candidates = gateway.find_transfers(transfer_group=transfer_group(transfer.order))
    accounts = seller_accounts(transfer.seller)
    for candidate in candidates:
        if _is_ours(candidate, transfer, accounts):
            return candidate
    return None


def _is_ours(candidate: StripeTransfer, transfer: SellerTransfer, accounts: set[str]) -> bool:
    metadata = candidate.metadata
    same_payment = (
        candidate.amount == transfer.to_send
        and candidate.currency.lower() == transfer.currency
        and candidate.destination in accounts
        and metadata.get("seller_transfer_id") == str(transfer.pk)
    )
    if not same_payment:
        return False
    if "seller_transfer_created" in metadata:
        return metadata["seller_transfer_created"] == _row_stamp(transfer)
    # Made before rows carried their creation time: it must not be older than the row (a few
    # minutes of slack for the two clocks).
    return candidate.created >= transfer.created_at.timestamp() - CLOCK_SLACK_SECONDS


def _attempt_failed(
    transfer: SellerTransfer,
    *,
    message: str,
    error: GatewayError | None,
    key: str,
    actor: Actor,
    may_give_up: bool,
) -> SendOutcome:
    policy = settings.PAYOUTS.transfer_retry
    follow = next_attempt(key, error, read_stripe_first=transfer.read_stripe_first)
    delay = policy.delay_after_failure(transfer.retry_count + 1)
    if delay is None and may_give_up:
        moves.send_given_up(transfer, message=message, follow=follow, actor=actor)
        return SendOutcome.GAVE_UP
    retry_at = timezone.now() + (delay or policy.backoff_max)
    moves.send_failed(transfer, message=message, follow=follow, retry_at=retry_at, actor=actor)
    transfers_due_at(retry_at)
    return SendOutcome.RETRY_SCHEDULED


class UnknownTransfer(NotFound):
    code = "unknown_transfer"


class TransferNotRetryable(Conflict):
    """Staff asked to retry a transfer that is not ``failed`` (or another actor won the race)."""

    code = "not_retryable"


class TransferCancelled(Conflict):
    """The staff retry found the order refunded in full: the transfer was cancelled instead."""

    code = "order_refunded"


def transfer_retry_by_staff(
    *, transfer_id: int, user, gateway: StripeGateway | None = None
) -> SellerTransfer:
    """Retry one ``failed`` transfer now, on behalf of ``user``. Returns the paid transfer.

    Raises ``UnknownTransfer``, ``TransferNotRetryable``, ``TransferCancelled`` or
    ``StripeRefused`` (the row stays ``failed`` with Stripe's error recorded).
    """
    with transaction.atomic():
        try:
            transfer = transfer_lock(transfer_id)
        except SellerTransfer.DoesNotExist:
            raise UnknownTransfer(f"No seller transfer {transfer_id}.") from None
        if transfer.status != TransferStatus.FAILED:
            raise TransferNotRetryable(
                f"transfer {transfer_id} is {transfer.status}, not failed", subject=transfer
            )
        lease_take(transfer.pk)  # the retry worker leaves the row alone while staff retries it
    outcome = transfer_send(
        transfer, gateway=gateway or get_gateway(), actor=Actor.staff(user), may_give_up=False
    )
    transfer.refresh_from_db()
    if outcome == SendOutcome.LOST_RACE:
        raise TransferNotRetryable(f"transfer {transfer_id} was moved by another actor")
    if outcome == SendOutcome.CANCELLED:
        raise TransferCancelled(
            f"transfer {transfer_id} was cancelled: its order was refunded in full before the "
            "seller was paid, and Stripe holds no transfer of it",
            subject=transfer,
        )
    if outcome != SendOutcome.COMPLETED:
        raise StripeRefused(transfer.error_message, subject=transfer)
    return transfer
