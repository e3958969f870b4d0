"""The rolling reserve's release: what each seller's reserve has left, sent when its days pass.

At payment a part of each seller's share (their policy's ``reserve_bps``) is kept back from
the transfer and booked to their reserve account (``payouts.services.transfers``); the order's
refunds and chargeback take from it first (``payouts.services.shares``). Once its
``reserve_release_at`` has passed, and its transfer is paid, this sweep sends what it has left.

Batching: every transfer of a seller and currency whose reserve is due joins ONE release row
per seller, currency and release day (the day the sweep runs), made under the transfers' locks
(``SKIP LOCKED``) and a unique key on (seller, currency, day): two sweeps make it once, and a
reserve that falls due after that day's release was made waits for the next day's. The
release's idempotency key is deterministic (seller, currency, day, generation). Then claim →
call → record, as for account debits: a short transaction claims the next due release
(``SKIP LOCKED`` and a lease), Stripe is called with no transaction open, a short transaction
records the outcome with its entry in the book. After an answer that may hide an executed
transfer (a 5xx), and a day after its key was first sent, the next attempt reads Stripe first
and adopts the transfer it finds there.

After the release a reserve covers no more than it did; what it covers no more (a refund it
covered failed, a dispute it covered was won) is given back in a release of its own, made with
the change of shares (``reserve_give_back``) and sent by the same sweep. A release that gave
up (``failed``) is sent again by staff (``release_resend_by_staff``): Stripe read first, else a
new key.
"""

import logging
from collections import Counter
from datetime import UTC, date, datetime
from enum import StrEnum

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

import ledger.services
from config.errors import Conflict, InvalidInput, NotFound
from ledger.selectors import seller_written_off
from marketplace.models import Seller
from payouts.models import ReleaseState, ReserveRelease, SellerTransfer
from payouts.stripe_api.gateway import GatewayError, StripeGateway, StripeTransfer, get_gateway
from payouts.transfer import money, moves
from payouts.transfer.actors import Actor
from payouts.transfer.idempotency import (
    key_may_be_forgotten,
    next_attempt,
    renewed_key,
    transfer_made_by,
)
from payouts.transfer.locks import due_rows_claimed
from payouts.transfer.transitions import PAID_STATUSES

logger = logging.getLogger(__name__)


class ReleaseOutcome(StrEnum):
    SENT = "sent"
    ADOPTED = "adopted"
    RETRY_SCHEDULED = "retry_scheduled"
    FAILED = "failed"
    SKIPPED = "skipped"


def reserves_release_due(
    *, limit: int | None = None, gateway: StripeGateway | None = None, now: datetime | None = None
) -> dict[str, int]:
    """Beat's sweep: batch the reserves due into releases, then send the releases due.

    Returns counts: ``created`` releases, then one count per attempt's outcome."""
    gateway = gateway or get_gateway()
    now = now or timezone.now()
    summary: Counter[str] = Counter()
    created = reserves_batch_due(now=now)
    if created:
        summary["created"] = created
    due = ReserveRelease.objects.filter(state=ReleaseState.PENDING, next_retry_at__lte=now)
    for release in due_rows_claimed(due, limit=limit):
        summary[release_attempt(release, gateway=gateway)] += 1
    return dict(summary)


def _due_reserves(now: datetime):
    """Transfers whose reserve days have passed, paid, with something left in the reserve."""
    return SellerTransfer.objects.filter(
        amount_reserved__gt=0,  # the partial index of transfers with a reserve
        reserve_release__isnull=True,
        reserve_release_at__lte=now,
        status__in=PAID_STATUSES,
    ).filter(amount_reserved__gt=F("reserve_refund") + F("reserve_dispute"))


def reserves_batch_due(*, now: datetime) -> int:
    """Make one release per seller and currency with every reserve due. Returns how many."""
    day = now.astimezone(UTC).date()
    groups = _due_reserves(now).values_list("seller_id", "currency").distinct()
    return sum(
        _batch(seller_id, currency, day=day, now=now) for seller_id, currency in list(groups)
    )


def release_key(*, seller_id: int, currency: str, day: date) -> str:
    """The release's first idempotency key: the seller, currency and day name it."""
    return f"payouts-reserve-{seller_id}-{currency}-{day:%Y%m%d}-g0"


def _batch(seller_id: int, currency: str, *, day: date, now: datetime) -> int:
    """One release of the seller's due reserves in ``currency``, under their rows' locks."""
    with transaction.atomic():
        due = _due_reserves(now).filter(seller_id=seller_id, currency=currency)
        rows = list(due.select_for_update(skip_locked=True, no_key=True).order_by("pk"))
        if not rows:
            return 0  # another sweep holds them (or released them a moment ago)
        amount = sum(
            money.reserve_held(
                reserved=row.amount_reserved, taken=row.reserve_refund + row.reserve_dispute
            )
            for row in rows
        )
        try:
            with transaction.atomic():
                release = ReserveRelease.objects.create(
                    seller_id=seller_id,
                    currency=currency,
                    release_on=day,
                    amount=amount,
                    idempotency_key=release_key(seller_id=seller_id, currency=currency, day=day),
                    next_retry_at=now,
                )
        except IntegrityError:
            return 0  # this day's release is made already: these wait for the next day's
        moves.reserves_released([row.pk for row in rows], release_id=release.pk)
    logger.info(
        "reserve release made",
        extra={"reserve_release_id": release.pk, "amount": amount, "transfers": len(rows)},
    )
    return 1


def give_back_key(*, transfer_id: int, given_back: int) -> str:
    """A give-back's first idempotency key: the transfer and its ``reserve_given_back`` total.

    That total only grows, so each give-back of a transfer has a key of its own."""
    return f"payouts-reserve-back-{transfer_id}-{given_back}-g0"


def reserve_give_back(
    row: SellerTransfer, *, released: money.ReleasedReserve, actor: Actor
) -> SellerTransfer:
    """Write what a released reserve covers now; what it gave back gets a release of its own.

    Runs inside the caller's transaction (the order's lock held), with no Stripe call: the
    reserve's new cover, its entry in the book and the release that sends what it gave back
    (pending, due now: the sweep sends it, keyed) are written together or not at all."""
    with transaction.atomic():
        row = moves.reserve_given_back(
            row,
            refund=released.from_reserve.refund,
            dispute=released.from_reserve.dispute,
            actor=actor,
        )
        if released.given_back <= 0:
            return row  # only moved between the refund and the chargeback
        release = _give_back_release(
            row,
            amount=released.given_back,
            key=give_back_key(transfer_id=row.pk, given_back=row.reserve_given_back),
        )
    logger.info(
        "released reserve gave back",
        extra={"reserve_release_id": release.pk, "transfer_id": row.pk, "amount": release.amount},
    )
    return row


def reserve_owed_changed(
    row: SellerTransfer, *, owed: money.Shares, actor: Actor
) -> SellerTransfer:
    """Book what the seller owes of their released reserve as the shares now ask.

    Runs inside the caller's transaction (the order's lock held), with no Stripe call. The
    seller's debt lock is taken first, as on every path that changes a debt. A debt that grows
    is booked; one that falls is cancelled from the debt nothing else is settling, then
    revived from what staff wrote off, and the rest (the seller paid it already, by netting or
    a debit) is sent back to them by a release of its own (pending, due now: the sweep sends
    it, keyed), written with it."""
    with transaction.atomic():
        free = ledger.services.seller_debt_free_lock(seller_id=row.seller_id, currency=row.currency)
        previous = row.reserve_owed_refund + row.reserve_owed_dispute
        drop = max(previous - owed.refund - owed.dispute, 0)
        written_off = seller_written_off(seller_id=row.seller_id, currency=row.currency)
        back = money.debt_cancelled(
            money.Facts(amount=0, owed=previous, to_give_back=drop),
            seller_debt=free,
            written_off=written_off,
        )
        given_back = drop - back.total
        row = moves.reserve_owed(
            row,
            refund=owed.refund,
            dispute=owed.dispute,
            revived=back.revived,
            given_back=given_back,
            actor=actor,
        )
        if given_back:
            _give_back_release(
                row,
                amount=given_back,
                key=owed_back_key(transfer_id=row.pk, given_back=row.reserve_owed_given_back),
            )
    logger.info(
        "seller owes of their released reserve",
        extra={"transfer_id": row.pk, "owed": owed.refund + owed.dispute, "back": given_back},
    )
    return row


def _give_back_release(row: SellerTransfer, *, amount: int, key: str) -> ReserveRelease:
    """A release of its own sending ``amount`` back to the transfer's seller, due now.

    Made in the caller's transaction, with the move and the entry that owe it; the sweep sends
    it under ``key`` (claim → call → record, as every release)."""
    now = timezone.now()
    return ReserveRelease.objects.create(
        seller_id=row.seller_id,
        currency=row.currency,
        release_on=now.astimezone(UTC).date(),
        amount=amount,
        given_back_for=row,
        idempotency_key=key,
        next_retry_at=now,
    )


def owed_back_key(*, transfer_id: int, given_back: int) -> str:
    """The first key of a release sending back a released reserve's debt the seller had paid.

    ``reserve_owed_given_back`` only grows, so each such release has a key of its own."""
    return f"payouts-reserve-owed-back-{transfer_id}-{given_back}-g0"


def _group(release: ReserveRelease) -> str:
    return f"reserve-{release.seller_id}-{release.currency}-{release.release_on:%Y%m%d}"


def release_attempt(release: ReserveRelease, *, gateway: StripeGateway) -> ReleaseOutcome:
    """Send a claimed release at Stripe (no transaction open) and record what it said.

    After an answer that may hide an executed transfer, Stripe is read first: a transfer of
    this release found there is adopted, never sent twice."""
    seller = Seller.objects.get(pk=release.seller_id)
    # Stripe forgets a key after 24 hours: a day after it was first sent (an answer lost, a
    # worker killed behind Stripe's transfer), an earlier attempt's transfer is looked for
    # before anything is sent again.
    try:
        forgotten = key_may_be_forgotten(release, now=timezone.now())
        if (release.read_stripe_first or forgotten) and (
            found := _find_at_stripe(release, gateway)
        ):
            return _record_sent(release, stripe_transfer_id=found.id, adopted=True)
        result = gateway.create_transfer(
            amount=release.amount,
            currency=release.currency,
            destination=seller.stripe_account_id,
            transfer_group=_group(release),
            source_transaction=None,
            metadata={"reserve_release_id": str(release.pk), "seller_id": str(seller.pk)},
            idempotency_key=release.idempotency_key,
        )
    except GatewayError as error:
        return _record_retry(release, error)
    return _record_sent(release, stripe_transfer_id=result.id, adopted=False)


def _find_at_stripe(release: ReserveRelease, gateway: StripeGateway) -> StripeTransfer | None:
    """The Stripe transfer an earlier attempt of this release made, if any."""
    return transfer_made_by(
        gateway.find_transfers(transfer_group=_group(release)),
        id_field="reserve_release_id",
        row_id=release.pk,
        amount=release.amount,
        currency=release.currency,
    )


def _locked(release: ReserveRelease, *, states=(ReleaseState.PENDING,)) -> ReserveRelease | None:
    """The row under its lock, while in ``states`` (another actor may have recorded it)."""
    row = ReserveRelease.objects.select_for_update().get(pk=release.pk)
    return row if row.state in states else None


def _record_sent(
    release: ReserveRelease, *, stripe_transfer_id: str, adopted: bool
) -> ReleaseOutcome:
    with transaction.atomic():
        # Stripe's word that it made the transfer wins over our having given up on it.
        row = _locked(release, states=(ReleaseState.PENDING, ReleaseState.FAILED))
        if row is None:
            return ReleaseOutcome.SKIPPED
        row.state = ReleaseState.SENT
        row.stripe_transfer_id = stripe_transfer_id
        row.error_message = ""
        row.next_retry_at = None
        row.read_stripe_first = False
        row.save(
            update_fields=[
                "state",
                "stripe_transfer_id",
                "error_message",
                "next_retry_at",
                "read_stripe_first",
                "updated_at",
            ]
        )
        ledger.services.post_reserve_released(
            seller_id=row.seller_id,
            currency=row.currency,
            amount=row.amount,
            release_id=row.pk,
            stripe_transfer_id=stripe_transfer_id,
        )
    logger.info(
        "reserve released",
        extra={"reserve_release_id": release.pk, "amount": release.amount, "adopted": adopted},
    )
    return ReleaseOutcome.ADOPTED if adopted else ReleaseOutcome.SENT


def _record_retry(release: ReserveRelease, error: GatewayError) -> ReleaseOutcome:
    """Due again after the backoff (the key renewed when Stripe would replay the error)."""
    policy = settings.PAYOUTS.transfer_retry
    with transaction.atomic():
        row = _locked(release)
        if row is None:
            return ReleaseOutcome.SKIPPED
        follow = next_attempt(row.idempotency_key, error, read_stripe_first=row.read_stripe_first)
        row.retry_count += 1
        row.error_message = error.describe()
        if follow.key != row.idempotency_key:
            row.idempotency_key, row.key_first_sent_at = follow.key, None
        row.read_stripe_first = follow.read_stripe_first
        delay = policy.delay_after_failure(row.retry_count)
        if delay is None:
            row.state = ReleaseState.FAILED
        else:
            row.next_retry_at = timezone.now() + delay
        row.save()
    logger.warning(
        "reserve release failed", extra={"reserve_release_id": release.pk, "why": error.describe()}
    )
    return ReleaseOutcome.FAILED if delay is None else ReleaseOutcome.RETRY_SCHEDULED


# --- Staff re-send of a release that gave up ----------------------------------------------------


class UnknownRelease(NotFound):
    code = "unknown_release"


class ReleaseNotResendable(Conflict):
    code = "release_not_resendable"


class ResendReasonMissing(InvalidInput):
    code = "reason_required"


def resendable(release: ReserveRelease) -> str | None:
    """``None`` when staff may send the release again, else why not."""
    if release.state != ReleaseState.FAILED:
        return f"reserve release {release.pk} is {release.state}, not failed"
    return None


def release_resend_claim(*, release_id: int, user, reason: str) -> ReserveRelease:
    """Put a release that gave up back to work, for staff: failed → pending, due after a lease.

    Under the row's lock: a fresh retry budget, a new idempotency key (Stripe would replay the
    old key's error) and Stripe read before anything is sent (an earlier attempt may have made
    the transfer); who, when and why are kept on the row. The lease keeps the sweep off it
    while the caller's attempt runs (``release_resend_send``); should that caller die, the
    sweep sends it once the lease ends. Raises ``ResendReasonMissing``, ``UnknownRelease`` or
    ``ReleaseNotResendable``; nothing changes then."""
    reason = (reason or "").strip()
    if not reason:
        raise ResendReasonMissing("a reason is required to send a reserve release again")
    with transaction.atomic():
        release = ReserveRelease.objects.select_for_update().filter(pk=release_id).first()
        if release is None:
            raise UnknownRelease(f"No reserve release {release_id}.")
        why_not = resendable(release)
        if why_not is not None:
            raise ReleaseNotResendable(why_not, subject=release)
        now = timezone.now()
        release.state = ReleaseState.PENDING
        release.idempotency_key = renewed_key(release.idempotency_key)
        release.key_first_sent_at = None
        release.read_stripe_first = True
        release.retry_count = 0
        release.next_retry_at = now + settings.PAYOUTS.claim_lease
        release.resent_by, release.resent_at, release.resend_reason = user, now, reason[:500]
        release.save()
    logger.warning(
        "reserve release sent again by staff",
        extra={"reserve_release_id": release.pk, "user": user.get_username(), "why": reason},
    )
    return release


def release_resend_send(*, release_id: int, gateway: StripeGateway | None = None) -> ReserveRelease:
    """The attempt of a release staff put back to work: Stripe read first, then sent.

    A transfer of the release found at Stripe is adopted; else it is sent under its new key.
    Stripe's error leaves it pending with its retry scheduled (the sweep goes on). Returns
    the row as it stands."""
    release = ReserveRelease.objects.get(pk=release_id)
    if release.state == ReleaseState.PENDING:
        release_attempt(release, gateway=gateway or get_gateway())
    release.refresh_from_db()
    return release


def release_resend_by_staff(
    *, release_id: int, user, reason: str, gateway: StripeGateway | None = None
) -> ReserveRelease:
    """Send a release that gave up again, now, on behalf of ``user``, for ``reason``.

    ``release_resend_claim`` then ``release_resend_send``: failed → sent, or pending when
    Stripe refused again (its error on the row). Raises as ``release_resend_claim`` does."""
    release_resend_claim(release_id=release_id, user=user, reason=reason)
    return release_resend_send(release_id=release_id, gateway=gateway)
