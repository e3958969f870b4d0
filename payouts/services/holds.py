"""Holds: seller transfers that wait on purpose before they are sent.

Two kinds: the order's hold until release, and the transfers of sellers whose connected account
cannot receive transfers.

A held transfer spends no retries. An order's hold (``TRANSFER_HOLD``) ends when its time comes
(beat's release sweep), or at once when staff or the marketplace release it (on fulfilment,
say); a refund during the hold keeps the seller's share back instead of sending and reversing
it (``payouts.services.shares``). An account hold ends when Stripe says the account can
receive again (``account.updated`` on the Connect endpoint): the seller's transfers are sent at
once.
"""

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from config.errors import Conflict, StripeRefused
from marketplace.models import AccountStatus, OrderStatus, Seller
from marketplace.services import (
    order_lock,
    seller_account_event_apply,
    seller_account_set,
    seller_account_status_set,
)
from payouts.models import SellerTransfer
from payouts.stripe_api.gateway import GatewayError, StripeAccount, StripeGateway, get_gateway
from payouts.transfer import moves
from payouts.transfer.actors import Actor
from payouts.transfer.locks import held_due_lock, order_transfers_lock
from payouts.transfer.transitions import ConcurrentTransition, HeldReason, TransferStatus
from payouts.wakeups import reversals_due_after_commit, send_transfers_after_commit

logger = logging.getLogger(__name__)

ACCOUNT_HOLDS = (HeldReason.ACCOUNT_RESTRICTED, HeldReason.ACCOUNT_DEAUTHORIZED)


class NoAccountToRefresh(Conflict):
    code = "no_account"


class NothingToRelease(Conflict):
    code = "nothing_to_release"


def order_release(*, order_id: int, actor: Actor) -> list[SellerTransfer]:
    """Release an order's held transfers now (fulfilled, say).

    Each is sent after commit, or held for its seller's account if that cannot receive. On an
    order refunded in full, every held row is released to be closed (see below). Raises
    ``UnknownOrder`` or ``NothingToRelease`` (unpaid, refunded with nothing held, or released
    already)."""
    with transaction.atomic():
        order = order_lock(order_id)
        if order.status == OrderStatus.PENDING:
            raise NothingToRelease(f"order {order_id} is not paid: nothing to release")
        refunded = order.status == OrderStatus.REFUNDED
        # A refunded order's held rows are closed, not paid: released, the send worker reads
        # Stripe for them (a row held after it was handed to Stripe may have paid the seller)
        # and cancels each one Stripe holds no transfer of.
        waiting = [
            row
            for row in order_transfers_lock(order_id)
            if row.status == TransferStatus.HELD
            and (refunded or row.held_reason == HeldReason.AWAITING_RELEASE)
        ]
        if refunded and not waiting:
            raise NothingToRelease(f"order {order_id} was refunded in full: nothing to pay")
        if not waiting:
            raise NothingToRelease(f"order {order_id} has no transfer waiting for release")
        for row in waiting:
            moves.released(row, actor=actor)
        send_transfers_after_commit(order_id=order_id)
    return waiting


def holds_release_due(*, limit: int = 100) -> dict[str, int]:
    """Beat's sweep: release every order hold whose time has come. Returns how many."""
    actor = Actor.worker("release_held_transfers")
    released = 0
    while True:
        with transaction.atomic():
            rows = held_due_lock(now=timezone.now(), limit=limit)
            for row in rows:
                moves.released(row, actor=actor)
                send_transfers_after_commit(order_id=row.order_id)
        released += len(rows)
        if len(rows) < limit:
            return {"released": released}


def seller_account_updated(
    *, account: StripeAccount, actor: Actor, event_created: datetime | None = None
) -> int:
    """Apply Stripe's update of a seller's account, releasing its held transfers.

    Stripe says whether the seller's account can receive transfers. When it can, their
    transfers held for the account are released and sent at once. Returns how many.

    ``event_created``: when Stripe made the event saying so. An event older than one applied
    already changes nothing: a stale "restricted" would hold the seller's transfers until
    another event came, and a stale "ready" would send to an account that cannot receive."""
    seller = Seller.objects.filter(stripe_account_id=account.id).first()
    if seller is None:
        logger.info("account.updated for an account of no seller", extra={"account": account.id})
        return 0
    status = AccountStatus.READY if account.can_receive else AccountStatus.RESTRICTED
    if not _account_status_record(seller, status, account.reason, event_created):
        return 0
    if not account.can_receive:
        return 0
    return _release_account_holds(seller, actor)


def seller_account_refresh(
    *, seller_id: int, actor: Actor, gateway: StripeGateway | None = None
) -> Seller:
    """Ask Stripe now whether the seller's account can receive transfers, and record it.

    For staff, after a reconnection or when an ``account.updated`` event was missed; releases
    their transfers held for the account when it can receive. Raises ``StripeRefused`` when
    Stripe does not answer; nothing changes then."""
    seller = Seller.objects.get(pk=seller_id)
    if not seller.stripe_account_id:
        raise NoAccountToRefresh(f"{seller.name} (seller {seller.pk}) has no connected account")
    try:
        account = (gateway or get_gateway()).retrieve_account(seller.stripe_account_id)
    except GatewayError as error:
        raise StripeRefused(error.describe(), subject=seller) from error
    if account.reason == "deauthorized":
        seller_deauthorized(account_id=account.id, actor=actor)
    else:
        seller_account_updated(account=account, actor=actor)
    seller.refresh_from_db()
    return seller


def seller_deauthorized(
    *, account_id: str, actor: Actor, event_created: datetime | None = None
) -> int:
    """Hold a deauthorized seller's unsent transfers for staff.

    The seller disconnected the platform: their transfers not sent yet are held for staff.
    Returns how many. An event older than the account event applied already changes nothing
    (as for ``seller_account_updated``)."""
    seller = Seller.objects.filter(stripe_account_id=account_id).first()
    if seller is None:
        return 0
    reason = "the seller disconnected"
    if not _account_status_record(seller, AccountStatus.DEAUTHORIZED, reason, event_created):
        return 0
    held = 0
    for row in SellerTransfer.objects.filter(
        seller=seller, status__in=[TransferStatus.PENDING, TransferStatus.FAILED]
    ):
        try:
            moves.held(
                row,
                reason=HeldReason.ACCOUNT_DEAUTHORIZED,
                message="the seller disconnected the platform from their Stripe account",
                actor=actor,
            )
            held += 1
        except ConcurrentTransition:
            pass  # sent or held meanwhile
    return held


def seller_reconnect(*, seller: Seller, stripe_account_id: str, user) -> int:
    """Move the seller to another connected account and release their account holds.

    The change is audited (who, old, new). The transfers held for the old account (disconnected, or
    restricted) are released: each is sent after commit to the new account, whose status is read
    from Stripe first, so an account that cannot receive either holds them again. Returns how many
    were released."""
    with transaction.atomic():
        before = Seller.objects.select_for_update().get(pk=seller.pk).stripe_account_id
        changed = seller_account_set(seller=seller, stripe_account_id=stripe_account_id, user=user)
        if before == stripe_account_id or not stripe_account_id:
            return 0
        return _release_account_holds(changed, Actor.staff(user))


def _account_status_record(
    seller: Seller, status: str, reason: str, event_created: datetime | None
) -> bool:
    if event_created is None:
        seller_account_status_set(seller=seller, status=status, reason=reason)
        return True
    if seller_account_event_apply(
        seller=seller, status=status, reason=reason, event_created=event_created
    ):
        return True
    logger.info(
        "account event older than the one applied; ignored",
        extra={"seller_id": seller.pk, "event_created": event_created.isoformat()},
    )
    return False


def _release_account_holds(seller: Seller, actor: Actor) -> int:
    """Send what waited for the seller's account: transfers and give-backs.

    Returns how many rows."""
    return _send_held_transfers(seller, actor) + _resume_give_backs(seller, actor)


def _resume_give_backs(seller: Seller, actor: Actor) -> int:
    rows = SellerTransfer.objects.filter(
        seller=seller, status=TransferStatus.REVERSAL_PENDING, held_reason__in=ACCOUNT_HOLDS
    )
    resumed = 0
    for row in rows.order_by("pk"):
        try:
            with transaction.atomic():
                moves.give_back_resumed(row, actor=actor)
                reversals_due_after_commit()
            resumed += 1
        except ConcurrentTransition:
            pass  # the worker is on it (its lease), or settled it meanwhile
    return resumed


def _send_held_transfers(seller: Seller, actor: Actor) -> int:
    rows = SellerTransfer.objects.filter(
        seller=seller, status=TransferStatus.HELD, held_reason__in=ACCOUNT_HOLDS
    )
    released = 0
    for row in rows.order_by("pk"):
        try:
            with transaction.atomic():
                moves.released(row, actor=actor)
                send_transfers_after_commit(order_id=row.order_id)
            released += 1
        except ConcurrentTransition:
            pass
    return released
