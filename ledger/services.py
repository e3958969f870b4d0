"""The posting rules: one function per kind of money event, each posting one balanced entry.

The payouts app calls these from the named moves (and the payment and refund services), inside
the transaction that moves the money. Every function takes plain values (ids, amounts, a
currency), so the book depends on nothing but sellers and orders.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Max

from config.errors import InvalidInput
from config.money import format_money
from ledger.models import Account, AccountKind, EntryKind, Line
from ledger.posting import Leg, account_ids, entry_post
from ledger.selectors import account_balance, seller_debt_claimed

K = AccountKind


@dataclass(frozen=True, slots=True)
class Share:
    """One seller's part of a payment: what they are owed (net) and the platform's fee."""

    seller_id: int
    net: int
    fee: int


def post_payment(
    *, order_id: int, charge_id: str, currency: str, total: int, shares: Sequence[Share]
) -> None:
    """Book a buyer's payment: cash in, each seller's payable, the platform's fee.

    The buyer paid ``total``: cash in, each seller's net owed to them, the rest earned as
    fee (every seller's fee, and all of a share too small to pay)."""
    owed = sum(share.net for share in shares)
    legs = [Leg(K.PLATFORM_CASH, total), Leg(K.FEE_REVENUE, -(total - owed))]
    legs += [Leg(K.SELLER_PAYABLE, -share.net, share.seller_id) for share in shares]
    entry_post(
        kind=EntryKind.PAYMENT,
        external_id=f"order:{order_id}",
        currency=currency,
        legs=legs,
        order_id=order_id,
        stripe_id=charge_id,
    )


@dataclass(frozen=True, slots=True)
class TransferRef:
    """The seller transfer and the step an entry is posted for.

    Which seller transfer an entry concerns, and the step that posts it (the audit event of
    the move, unique): a move posts its entries once, however often its amounts recur."""

    transfer_id: int
    order_id: int
    seller_id: int
    currency: str
    step: object

    def post(self, kind: str, legs: list[Leg], **extra) -> int | None:
        return entry_post(
            kind=kind,
            external_id=f"transfer:{self.transfer_id}:{self.step}",
            currency=self.currency,
            legs=legs,
            order_id=self.order_id,
            seller_id=self.seller_id,
            transfer_id=self.transfer_id,
            **extra,
        )


def post_transfer_sent(ref: TransferRef, *, amount: int, stripe_transfer_id: str) -> None:
    """The seller was paid ``amount`` at Stripe."""
    legs = [Leg(K.SELLER_PAYABLE, amount, ref.seller_id), Leg(K.PLATFORM_CASH, -amount)]
    ref.post(EntryKind.TRANSFER, legs, stripe_id=stripe_transfer_id)


def post_transfer_cancelled(ref: TransferRef, *, amount: int) -> None:
    """Book a transfer cancelled before payment because its order was fully refunded.

    The order was refunded in full before the seller was paid: nothing is owed to them, and
    their unpaid share covers part of the buyer's refund."""
    legs = [Leg(K.SELLER_PAYABLE, amount, ref.seller_id), Leg(K.BUYER_REFUNDS, -amount)]
    ref.post(EntryKind.TRANSFER_CANCELLED, legs)


def post_transfer_reinstated(ref: TransferRef, *, amount: int) -> None:
    """Post a transfer cancelled by a full refund as owed to the seller again.

    The refund failed: what the cancellation took off the seller's payable is theirs again."""
    legs = [Leg(K.SELLER_PAYABLE, -amount, ref.seller_id), Leg(K.BUYER_REFUNDS, amount)]
    ref.post(EntryKind.TRANSFER_CANCELLED, legs)


def post_refund(
    *, order_id: int, refund_id: str, currency: str, amount: int, failed: bool = False
) -> None:
    """Book a refund paid to the buyer, or its failure after it succeeded.

    Stripe returned ``amount`` to the buyer; or, ``failed``, the refund failed after
    succeeding and Stripe put it back on the platform's balance (the buyer never got it)."""
    sign = -1 if failed else 1
    entry_post(
        kind=EntryKind.REFUND_FAILED if failed else EntryKind.REFUND,
        external_id=refund_id,
        currency=currency,
        legs=[Leg(K.BUYER_REFUNDS, sign * amount), Leg(K.PLATFORM_CASH, -sign * amount)],
        order_id=order_id,
        stripe_id=refund_id,
    )


def post_refund_share(ref: TransferRef, *, previous_target: int, target: int) -> None:
    """Book a change in the seller's share of the order's refunds.

    The seller's share of the order's refunds moved to ``target``: they owe the growth back
    (or are owed the drop, when a refund failed)."""
    grown = target - previous_target
    legs = [Leg(K.SELLER_PAYABLE, grown, ref.seller_id), Leg(K.BUYER_REFUNDS, -grown)]
    ref.post(EntryKind.REFUND_SHARE, legs)


def post_dispute_share(ref: TransferRef, *, previous_target: int, target: int) -> None:
    """Book a change in the seller's share of the order's chargeback.

    The seller's share of the order's chargeback moved to ``target`` (recovered from them, or
    given back when the dispute was won)."""
    grown = target - previous_target
    legs = [Leg(K.SELLER_PAYABLE, grown, ref.seller_id), Leg(K.DISPUTES, -grown)]
    ref.post(EntryKind.DISPUTE_SHARE, legs)


def post_reversal(
    ref: TransferRef, *, previous_reversed: int, reversed_total: int, stripe_reversal_id: str
) -> None:
    """Stripe took ``reversed_total`` back from the seller in all (the growth is new)."""
    grown = reversed_total - previous_reversed
    legs = [Leg(K.PLATFORM_CASH, grown), Leg(K.SELLER_PAYABLE, -grown, ref.seller_id)]
    ref.post(EntryKind.REVERSAL, legs, stripe_id=stripe_reversal_id)


def post_reversal_refused(ref: TransferRef, *, previous_owed: int, owed_total: int) -> None:
    """What could not be taken back at Stripe is now the seller's debt."""
    grown = owed_total - previous_owed
    legs = [Leg(K.SELLER_DEBT, grown, ref.seller_id), Leg(K.SELLER_PAYABLE, -grown, ref.seller_id)]
    ref.post(EntryKind.REVERSAL_REFUSED, legs)


def post_netting(ref: TransferRef, *, amount: int) -> None:
    """``amount`` of what the seller is owed for this transfer settles their debt instead."""
    legs = [
        Leg(K.SELLER_PAYABLE, amount, ref.seller_id),
        Leg(K.SELLER_DEBT, -amount, ref.seller_id),
    ]
    ref.post(EntryKind.DEBT_NETTED, legs)


def post_netting_released(ref: TransferRef, *, amount: int) -> None:
    """The transfer was cancelled: the debt it settled is the seller's debt again."""
    legs = [
        Leg(K.SELLER_DEBT, amount, ref.seller_id),
        Leg(K.SELLER_PAYABLE, -amount, ref.seller_id),
    ]
    ref.post(EntryKind.NETTING_RELEASED, legs)


def post_given_back(
    ref: TransferRef, *, debt_cancelled: int, returned: int, stripe_transfer_id: str
) -> None:
    """Book what is given back to a seller after it was taken back.

    Part of what was taken back from the seller is theirs again: ``debt_cancelled`` of their
    debt cancelled, ``returned`` sent to them at Stripe."""
    if debt_cancelled:
        legs = [
            Leg(K.SELLER_DEBT, -debt_cancelled, ref.seller_id),
            Leg(K.SELLER_PAYABLE, debt_cancelled, ref.seller_id),
        ]
        ref.post(EntryKind.DEBT_CANCELLED, legs)
    if returned:
        legs = [Leg(K.SELLER_PAYABLE, returned, ref.seller_id), Leg(K.PLATFORM_CASH, -returned)]
        ref.post(EntryKind.TRANSFER, legs, stripe_id=stripe_transfer_id)


def post_write_off_reversed(ref: TransferRef, *, amount: int) -> None:
    """Post the reversal of a write-off, in part or in full.

    ``amount`` of a debt staff wrote off is no longer owed (the seller's shares fell): it is the
    seller's debt again, from bad debt, to be cancelled rather than paid out."""
    legs = [Leg(K.SELLER_DEBT, amount, ref.seller_id), Leg(K.BAD_DEBT, -amount)]
    ref.post(EntryKind.WRITE_OFF_REVERSED, legs)


def post_dispute_funds(
    *, order_id: int, balance_transaction_id: str, currency: str, amount: int, dispute_id: str
) -> None:
    """Book the dispute funds Stripe withdrew from or reinstated to the platform.

    Stripe moved a dispute's funds on the platform's balance: ``amount`` negative when it
    withdrew them (with its fee), positive when it reinstated them. Keyed on Stripe's balance
    transaction, so every event that carries it posts it once."""
    entry_post(
        kind=EntryKind.DISPUTE_FUNDS,
        external_id=balance_transaction_id,
        currency=currency,
        legs=[Leg(K.PLATFORM_CASH, amount), Leg(K.DISPUTES, -amount)],
        order_id=order_id,
        stripe_id=dispute_id,
    )


def seller_debt_lock(*, seller_id: int, currency: str) -> int:
    """Take the lock that serializes every change to a seller's debt.

    Lock the seller's debt account until the transaction ends and return the debt in
    ``currency``: every path that adds to or settles a debt takes this lock first, so two
    payments never net the same debt."""
    [account_id] = account_ids([(K.SELLER_DEBT, seller_id)]).values()
    Account.objects.select_for_update().get(pk=account_id)
    return account_balance(kind=K.SELLER_DEBT, seller_id=seller_id, currency=currency)


def seller_debt_free_lock(*, seller_id: int, currency: str) -> int:
    """Take the seller's debt lock and return the debt nothing under way is settling.

    An account debit sent to Stripe will settle its part of the debt: netting, cancelling or
    writing off that part too would take it from the seller twice (or leave a debt below
    zero). So those read this; the debit itself reads the whole debt."""
    debt = seller_debt_lock(seller_id=seller_id, currency=currency)
    return debt - seller_debt_claimed(seller_id=seller_id, currency=currency)


def post_debt_debited(
    *, seller_id: int, currency: str, amount: int, debit_id: int, stripe_transfer_id: str
) -> None:
    """Book an account debit: the platform has the cash, the seller owes that much less.

    ``amount`` was taken from the seller's connected account; posted once per debit row."""
    entry_post(
        kind=EntryKind.DEBT_DEBITED,
        external_id=f"debit:{debit_id}",
        currency=currency,
        legs=[Leg(K.PLATFORM_CASH, amount), Leg(K.SELLER_DEBT, -amount, seller_id)],
        seller_id=seller_id,
        stripe_id=stripe_transfer_id,
    )


def post_reserve_kept(ref: TransferRef, *, amount: int) -> None:
    """``amount`` of what the seller is owed for this transfer waits in their reserve."""
    legs = [
        Leg(K.SELLER_PAYABLE, amount, ref.seller_id),
        Leg(K.SELLER_RESERVE, -amount, ref.seller_id),
    ]
    ref.post(EntryKind.RESERVE_KEPT, legs)


def post_reserve_share(
    ref: TransferRef, *, previous: tuple[int, int], refund: int, dispute: int
) -> None:
    """Book a change in what the seller's reserve covers of the order's refunds and chargeback.

    The reserve pays its part of the refund (``refund``) and of the chargeback (``dispute``)
    in all, out of the seller's reserve: nothing is taken back at Stripe for it (or, when the
    shares fell, it is the seller's reserve again)."""
    refund_grown, dispute_grown = refund - previous[0], dispute - previous[1]
    legs = [
        Leg(K.SELLER_RESERVE, refund_grown + dispute_grown, ref.seller_id),
        Leg(K.BUYER_REFUNDS, -refund_grown),
        Leg(K.DISPUTES, -dispute_grown),
    ]
    ref.post(EntryKind.RESERVE_SHARE, legs)


def post_reserve_owed(
    ref: TransferRef, *, previous: tuple[int, int], refund: int, dispute: int, given_back: int
) -> None:
    """Book a change in what the seller owes of their released reserve.

    The seller owes ``refund`` of the order's refunds and ``dispute`` of its chargeback in all
    beyond what the reserve and the transfer cover: their debt grows (or, when the shares fell,
    is cancelled). ``given_back``: of a debt cancelled, what the seller had paid already; it is
    owed to them again through their reserve account, and a release sends it."""
    refund_grown, dispute_grown = refund - previous[0], dispute - previous[1]
    legs = [
        Leg(K.SELLER_DEBT, refund_grown + dispute_grown + given_back, ref.seller_id),
        Leg(K.BUYER_REFUNDS, -refund_grown),
        Leg(K.DISPUTES, -dispute_grown),
        Leg(K.SELLER_RESERVE, -given_back, ref.seller_id),
    ]
    ref.post(EntryKind.RESERVE_OWED, legs)


def post_reserve_released(
    *, seller_id: int, currency: str, amount: int, release_id: int, stripe_transfer_id: str
) -> None:
    """The seller's reserve, ``amount`` of it, was sent to them at Stripe (one release row)."""
    entry_post(
        kind=EntryKind.RESERVE_RELEASED,
        external_id=f"reserve_release:{release_id}",
        currency=currency,
        legs=[Leg(K.SELLER_RESERVE, amount, seller_id), Leg(K.PLATFORM_CASH, -amount)],
        seller_id=seller_id,
        stripe_id=stripe_transfer_id,
    )


class WriteOffRefused(InvalidInput):
    code = "write_off_refused"


def write_off_check(*, seller_id: int, currency: str, amount: int, free: int) -> None:
    """Refuse a write-off of more than the debt nothing else is settling (``free``).

    The message says how much is owed and how much of it is being debited."""
    if 0 < amount <= free:
        return
    claimed = seller_debt_claimed(seller_id=seller_id, currency=currency)
    owed = f"seller {seller_id} owes {format_money(free + claimed, currency)}"
    if claimed:
        owed += (
            f", of which {format_money(claimed, currency)} is being debited from their connected "
            "account now"
        )
    raise WriteOffRefused(
        f"{owed}; cannot write off {format_money(amount, currency)} ({amount} minor units)"
    )


def debt_write_off(*, seller_id: int, currency: str, amount: int, reason: str, user) -> int:
    """Write off part of a seller's debt.

    Staff give up ``amount`` of the seller's debt in ``currency``, with a reason. Returns the
    debt left. Raises ``WriteOffRefused`` (nothing changed) for a bad amount or reason."""
    if not reason.strip():
        raise WriteOffRefused("a write-off needs a reason")
    with transaction.atomic():
        free = seller_debt_free_lock(seller_id=seller_id, currency=currency)
        write_off_check(seller_id=seller_id, currency=currency, amount=amount, free=free)
        # Named by the debt's last line: under the lock it is the debt as it stands, so a form
        # sent twice writes off once (the second finds less debt) and a later debt of the same
        # size, after new lines, is a new write-off.
        last_line = Line.objects.filter(
            account__kind=K.SELLER_DEBT, account__seller_id=seller_id, currency=currency
        ).aggregate(last=Max("pk"))["last"]
        entry_post(
            kind=EntryKind.DEBT_WRITTEN_OFF,
            external_id=f"seller:{seller_id}:{currency}:debt-line:{last_line}:off:{amount}",
            currency=currency,
            legs=[Leg(K.BAD_DEBT, amount), Leg(K.SELLER_DEBT, -amount, seller_id)],
            seller_id=seller_id,
            memo=reason.strip(),
            user=user,
        )
    return account_balance(kind=K.SELLER_DEBT, seller_id=seller_id, currency=currency)
