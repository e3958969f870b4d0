"""One home for a seller transfer's arithmetic: what is owed in each direction, and what is next.

Plain values in, plain values out: no database, no Stripe, no model. ``Facts`` are a transfer's
amount fields (``Facts.of(row)`` reads them off a row); ``balances`` says what is owed each way
and the next step; the other functions are the steps' own sums (what to reverse, what a
settled reversal leaves to give back, how a give-back cancels debt, each seller's share of a
refund). Every path that sends, takes back, gives back, books or compares a transfer's money
reads this module, so no two of them can compute one amount differently.

The words: the *shares* are the seller's part of the order's refunds (``refund_share``, the
row's ``reversal_target``) and of its chargeback being recovered (``dispute_share``,
``dispute_target``). Before a transfer is paid its shares are *kept back* from what it sends;
once paid, they are *taken back*: kept back at send, reversed at Stripe, or booked as the
seller's debt, less what was *given back* since (in new transfers, or by cancelling debt).

The laws (``tests/test_money_model.py`` holds one property test per law, each named after it):

1. Amounts are never negative: no balance, step amount or share is below nothing.
2. Never more is reversed than was sent: what a settle records, and what a reversal asks
   for, stay within the transfer Stripe holds.
3. What is still to take back and what is kept back together never exceed the transfer's
   amount; before payment, every share is either kept back or owed as debt, exactly.
4. The shares of one order add up exactly to what its refunds (and, with them, its chargeback)
   cost the sellers: ``cost × Σ amounts / order total``, rounded half up, the whole cost when
   the transfers are the whole order; and no transfer's shares exceed its amount.
5. A give-back never exceeds what was taken: what is to be given back, the debt it cancels
   and what it revives from a write-off stay within what the seller gave up.
6. The next step agrees with the amounts: ``SEND`` only when something is to send and the
   transfer is unpaid and not held; ``REVERSE`` only when something is left to take and
   Stripe still holds some of the transfer; ``GIVE_BACK`` only when something is to be given
   back; ``NOTHING`` when every balance is zero.
7. Money is conserved: an unpaid transfer's amount is what it sends, what it keeps back and
   what it nets against debt; a paid one's is what it sent, kept back and netted.
8. Recording is idempotent: recording Stripe's same totals again moves nothing.
9. The steps settle: following the next step (reverse, book the rest as debt, give back, each
   as its function here says) leaves, within a few steps, nothing to take and nothing to give
   back.
10. The reserve is kept, never lost: the reserve taken never exceeds the reserve kept; what a
    refund or chargeback takes from the reserve plus what it takes from the transfer is its
    share; and reserve + netted + sent + kept back is the seller's share (``amount``). Once
    released, what the reserve covers never grows, and what it covers now plus what it gave
    back (``reserve_after_release``) is what it covered; what the reserve covers, what the
    transfer part takes and what the seller owes of the released reserve
    (``beyond_the_transfer``) add up to the shares, the transfer part never taking more than
    it is.

The rolling reserve: a part of the seller's share (``reserved``, ``reserve_kept``) is never
sent with the transfer; it waits on the platform and is released in a transfer of its own
once its days pass. A refund's or chargeback's share is taken from it first
(``reserve_split``); only the rest reaches the transfer. ``Facts.of(row)`` reads the transfer
part: its amount is the share less the reserve, its shares what the reserve did not cover, so
every law above holds for that part as it did before reserves.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

K = TypeVar("K")


class NextStep(StrEnum):
    """What the transfer's money asks for next."""

    SEND = "send"
    REVERSE = "reverse"
    GIVE_BACK = "give_back"
    BOOK_DEBT = "book_debt"
    NOTHING = "nothing"


class Standing(StrEnum):
    """Where a paid transfer stands once a reversal step is recorded."""

    # Something is left to take back, or to give back: the worker goes on.
    UNSETTLED = "unsettled"
    # Nothing is taken from the seller (all of it given back, or nothing asked).
    NOTHING_TAKEN = "nothing_taken"
    # All of the transfer is taken back.
    ALL_TAKEN = "all_taken"
    # Its shares are met, and they are part of it.
    PART_TAKEN = "part_taken"


@dataclass(frozen=True, slots=True)
class Facts:
    """A transfer's amounts as recorded, in minor units.

    ``paid``: Stripe holds (or held) the transfer, or it completed with nothing to send;
    ``held``: it is unpaid and waits on purpose (its shares are kept back, nothing is sent)."""

    amount: int
    platform_fee: int = 0
    netted: int = 0
    withheld: int = 0
    reversed: int = 0
    returned: int = 0
    owed: int = 0
    refund_share: int = 0
    dispute_share: int = 0
    to_give_back: int = 0
    paid: bool = False
    held: bool = False

    @classmethod
    def of(cls, row: Any, *, paid: bool | None = None, held: bool | None = None) -> "Facts":
        """The facts of a transfer row (any object with its amount fields).

        ``paid`` and ``held`` default to what the row's Stripe transfer id and status say."""
        status = str(getattr(row, "status", ""))
        return cls(
            # The reserve is not the transfer's to send: the transfer part is the rest.
            amount=row.amount - getattr(row, "amount_reserved", 0),
            platform_fee=getattr(row, "platform_fee", 0),
            netted=row.amount_netted,
            withheld=row.amount_withheld,
            reversed=row.amount_reversed,
            returned=row.amount_returned,
            owed=row.amount_owed,
            refund_share=row.reversal_target,
            dispute_share=row.dispute_target,
            to_give_back=row.amount_to_give_back,
            paid=paid if paid is not None else bool(row.stripe_transfer_id) or status in PAID,
            held=held if held is not None else status == "held",
        )

    @property
    def shares(self) -> int:
        """The refund and chargeback shares together: what the seller gives up now."""
        return self.refund_share + self.dispute_share


# The statuses of a paid transfer (``payouts.transfer.transitions.PAID_STATUSES``, spelled out
# so this module imports nothing; a test keeps the two equal).
PAID = frozenset(
    {"completed", "reversal_pending", "partially_reversed", "reversed", "reversal_refused"}
)


@dataclass(frozen=True, slots=True)
class Balances:
    """What is owed in each direction for one transfer, and the step that moves it."""

    to_send: int
    sent: int
    kept_back: int
    to_take_back: int
    to_give_back: int
    owed: int
    next: NextStep


# --- Before payment -----------------------------------------------------------------------------


def netted_at_creation(*, amount: int, debt: int) -> int:
    """What a new transfer keeps to settle the seller's debt: all of it, up to its amount."""
    return min(max(debt, 0), amount)


def withheld_at_send(f: Facts) -> int:
    """What an unpaid transfer keeps back of its shares: no more than it has left once netted."""
    return min(f.shares, f.amount - f.netted)


def owed_at_send(f: Facts) -> int:
    """The shares beyond what an unpaid transfer has left to keep back: the seller's debt."""
    return f.shares - withheld_at_send(f)


def to_send(f: Facts) -> int:
    """What an unpaid transfer sends: its amount, less netting, less the shares kept back."""
    return f.amount - f.netted - withheld_at_send(f)


def unpaid_share(f: Facts) -> int:
    """What of the transfer the seller is owed once its shares are kept back.

    What a cancelled transfer never pays them, and a reinstated one owes them again."""
    return f.amount - f.shares


# --- After payment ------------------------------------------------------------------------------


def sent(f: Facts) -> int:
    """What Stripe's transfer was for: the amount, less netting, less what was kept back."""
    return f.amount - f.netted - f.withheld


def sent_if_paid(f: Facts) -> int:
    """What the transfer sent at Stripe: ``sent`` once paid, nothing before."""
    return sent(f) if f.paid else 0


def at_stripe(f: Facts) -> int:
    """What of the transfer Stripe still holds with the seller (not reversed)."""
    return sent(f) - f.reversed


def taken_back(f: Facts) -> int:
    """What is taken from the seller now: kept back, reversed, made debt, less given back."""
    return f.withheld + f.reversed + f.owed - f.returned


def left_to_take(f: Facts) -> int:
    """What is left of the shares to take (negative when the shares fell below what is taken)."""
    return f.shares - taken_back(f)


def to_reverse(f: Facts) -> int:
    """What the next reversal asks Stripe for: what is left to take, within what it holds."""
    return max(min(left_to_take(f), at_stripe(f)), 0)


def owed_after_refusal(f: Facts) -> int:
    """The seller's debt once Stripe refuses the rest: what they owed, plus what is left."""
    return f.owed + max(left_to_take(f), 0)


def to_give_back_when(f: Facts, new_shares: int) -> int:
    """What to give back once the shares total ``new_shares``: what is held beyond them.

    What Stripe reversed on its own beyond the old shares (and not already due back) is not
    counted: it is reported for staff, never paid back by itself."""
    taken = taken_back(f)
    made_elsewhere = max(taken - f.shares - f.to_give_back, 0)
    return max(taken - made_elsewhere - new_shares, 0)


def given_back_against_debt(f: Facts) -> int:
    """What was given back in new transfers beyond what was kept back or reversed.

    It can only have given back debt the seller paid by netting."""
    return max(f.returned - f.withheld - f.reversed, 0)


def over_reversed(f: Facts) -> bool:
    """Whether Stripe took back more than the shares and what is due back account for."""
    return taken_back(f) > f.shares + f.to_give_back


def reversal_pays_debt(f: Facts, *, reversed_at_stripe: int) -> int:
    """What of a reversal Stripe made (seen there) pays the seller's debt, to be given back.

    Beyond the shares, what is due back already and the debt, it is an over-reversal."""
    growth = reversed_at_stripe - f.reversed
    beyond = taken_back(f) + growth - f.shares - f.to_give_back
    return max(min(growth, beyond, f.owed), 0)


@dataclass(frozen=True, slots=True)
class Settlement:
    """What recording a reversal step leaves: the totals, what is due back, where it stands."""

    reversed: int
    returned: int
    given_back: int
    to_give_back: int
    ours_beyond: int
    standing: Standing


def settle(
    f: Facts, *, reversed_seen: int = 0, returned_seen: int = 0, ours: int = 0, elsewhere: int = 0
) -> Settlement:
    """Record what Stripe reversed (``reversed_seen``) and gave back (``returned_seen``) in all.

    Totals only grow; what is reversed stays within what was sent. What our own reversals
    (``ours``) took beyond the shares and what is due back, and that reversals made elsewhere
    (``elsewhere``) do not account for, is added to what is to be given back."""
    reversed_total = min(max(f.reversed, reversed_seen), sent(f))
    returned_total = max(f.returned, returned_seen)
    given_back = returned_total - f.returned
    taken = f.withheld + reversed_total + f.owed - returned_total
    to_give_back = max(f.to_give_back - given_back, 0)
    beyond = min(max(taken - f.shares - to_give_back - elsewhere, 0), ours)
    to_give_back += beyond
    return Settlement(
        reversed=reversed_total,
        returned=returned_total,
        given_back=given_back,
        to_give_back=to_give_back,
        ours_beyond=beyond,
        standing=standing(amount=f.amount, shares=f.shares, taken=taken, to_give=to_give_back),
    )


def standing(*, amount: int, shares: int, taken: int, to_give: int) -> Standing:
    """Where a paid transfer stands with ``taken`` taken and ``to_give`` still to give back."""
    if taken < shares or to_give > 0:
        return Standing.UNSETTLED
    if taken <= 0:
        return Standing.NOTHING_TAKEN
    if taken >= amount:
        return Standing.ALL_TAKEN
    return Standing.PART_TAKEN


@dataclass(frozen=True, slots=True)
class DebtCancelled:
    """What of a give-back cancels the seller's debt instead of being sent."""

    # Cancelled from what the seller still owes.
    cancelled: int
    # Cancelled from what staff wrote off (never paid: the seller kept it).
    revived: int

    @property
    def total(self) -> int:
        return self.cancelled + self.revived


def debt_cancelled(f: Facts, *, seller_debt: int, written_off: int) -> DebtCancelled:
    """What of the give-back cancels debt instead of being sent.

    The row's debt the seller still owes first, then what of it staff wrote off. Only the rest
    is sent to the seller."""
    cancelled = min(f.to_give_back, f.owed, max(seller_debt, 0))
    revived = min(f.to_give_back - cancelled, f.owed - cancelled, max(written_off, 0))
    return DebtCancelled(cancelled=cancelled, revived=max(revived, 0))


# --- The whole picture --------------------------------------------------------------------------


def balances(f: Facts) -> Balances:
    """What is owed each way for the transfer, and the step that moves it next."""
    if not f.paid:
        return _unpaid_balances(f)
    taken = taken_back(f)
    to_take = max(left_to_take(f), 0)
    if f.to_give_back > 0:
        step = NextStep.GIVE_BACK
    elif to_take > 0:
        step = NextStep.REVERSE if at_stripe(f) > 0 else NextStep.BOOK_DEBT
    else:
        step = NextStep.NOTHING
    return Balances(
        to_send=0,
        sent=sent(f),
        kept_back=min(f.withheld, max(taken, 0)),
        to_take_back=to_take,
        to_give_back=f.to_give_back,
        owed=f.owed,
        next=step,
    )


def _unpaid_balances(f: Facts) -> Balances:
    sending, owed = to_send(f), owed_at_send(f)
    if f.held:
        step = NextStep.NOTHING
    elif sending > 0:
        step = NextStep.SEND
    elif owed > 0:
        step = NextStep.BOOK_DEBT
    else:
        step = NextStep.NOTHING
    return Balances(
        to_send=sending,
        sent=0,
        kept_back=withheld_at_send(f),
        to_take_back=0,
        to_give_back=0,
        owed=f.owed + owed,
        next=step,
    )


def row_payable(f: Facts, *, cancelled: bool) -> int:
    """What the transfer leaves on the seller's payable account in the book (debit positive).

    Owed at payment, then netted, sent and given back, its shares charged, reversed and made
    debt; a transfer cancelled with its order gives back what it did not keep back."""
    payable = -f.amount + f.netted + sent_if_paid(f) + f.returned
    payable += f.shares - f.reversed - f.owed
    return payable + (unpaid_share(f) if cancelled else 0)


def debt_left(f: Facts) -> int:
    """What the transfer adds to the seller's debt: made debt, less what it netted."""
    return f.owed - f.netted


# --- Each transfer's share of what the order gave back ------------------------------------------


def allocate(amount: int, *, of: int, weights: Mapping[K, int]) -> dict[K, int]:
    """Split an amount in proportion to weights, in whole minor units.

    ``amount / of`` of each weight, in whole minor units: the parts add up to the rounded
    (half up) exact total, the units lost by flooring going to the largest remainders (ties:
    lowest key). With weights adding up to ``of``, the parts add up to ``amount`` exactly."""
    if of <= 0 or amount <= 0:
        return dict.fromkeys(weights, 0)
    exact = {key: amount * weight for key, weight in weights.items()}  # part × of
    parts = {key: value // of for key, value in exact.items()}
    total = (2 * sum(exact.values()) + of) // (2 * of)
    by_remainder = sorted(weights, key=lambda key: (-(exact[key] % of), key))
    for key in by_remainder[: max(total - sum(parts.values()), 0)]:
        parts[key] += 1
    return parts


def proportional_targets(*, refunded: int, order_total: int, amounts: Mapping[K, int]) -> dict:
    """Each transfer's share of the order's refunds, in proportion to its amount.

    Each transfer's share of ``refunded / order_total`` of its amount (``allocate``), never
    above the transfer's amount; all of it when the order is fully refunded."""
    shares = allocate(min(refunded, order_total), of=order_total, weights=amounts)
    return {pk: min(share, amounts[pk]) for pk, share in shares.items()}


@dataclass(frozen=True, slots=True)
class Shares:
    """One transfer's share of the order's refunds and of its chargeback being recovered."""

    refund: int
    dispute: int


def order_shares(
    *, refunded: int, recovered: int, order_total: int, amounts: Mapping[K, int]
) -> dict[K, Shares]:
    """Each transfer's shares of what the order's refunds and recovered chargeback cost.

    The refunds are split first; refunds and chargeback together are split the same way, and
    each transfer's chargeback share is the difference, so the chargeback shares add up to the
    chargeback's cost too. Never more than a transfer's amount in all."""
    refunds = proportional_targets(refunded=refunded, order_total=order_total, amounts=amounts)
    both = proportional_targets(
        refunded=refunded + recovered, order_total=order_total, amounts=amounts
    )
    return {
        pk: Shares(
            refund=refunds[pk],
            dispute=min(max(both[pk] - refunds[pk], 0), amounts[pk] - refunds[pk]),
        )
        for pk in amounts
    }


# --- The rolling reserve ------------------------------------------------------------------------

BPS = 10_000


def reserve_kept(*, amount: int, bps: int) -> int:
    """The reserve kept back from a seller's share: ``bps`` of it, rounded half up.

    Whole minor units; the transfer sends the rest, so no unit is lost to the rounding."""
    if amount <= 0 or bps <= 0:
        return 0
    return min((2 * amount * bps + BPS) // (2 * BPS), amount)


def reserve_split(shares: Shares, *, reserve: int) -> tuple[Shares, Shares]:
    """Split a transfer's shares between its reserve (first) and the transfer (the rest).

    ``reserve``: what the reserve can still cover (all it kept, while it is held). The refund
    share is taken from it first, then the chargeback share. Returns (from the reserve, from
    the transfer); the two add up to ``shares``."""
    reserve = max(reserve, 0)
    refund = min(shares.refund, reserve)
    dispute = min(shares.dispute, reserve - refund)
    return (
        Shares(refund=refund, dispute=dispute),
        Shares(refund=shares.refund - refund, dispute=shares.dispute - dispute),
    )


def reserve_held(*, reserved: int, taken: int) -> int:
    """What of the reserve is still the seller's to be released: kept, less what was taken."""
    return max(reserved - taken, 0)


@dataclass(frozen=True, slots=True)
class ReleasedReserve:
    """What a released reserve covers of the shares now, and what it gives back to the seller."""

    from_reserve: Shares
    from_transfer: Shares
    # What it covered before and covers no more (a refund failed, a dispute was won): owed to
    # the seller again, in a release of its own.
    given_back: int


def reserve_after_release(shares: Shares, *, covered: Shares) -> ReleasedReserve:
    """Split a transfer's shares once its reserve is released (what was left of it is sent).

    The reserve covers no more than it ``covered`` (refund first, then chargeback), so what it
    covers never grows after its release; when the shares fall, what it covers no more is
    given back. Shares beyond it fall on the transfer."""
    before = covered.refund + covered.dispute
    from_reserve, rest = reserve_split(shares, reserve=before)
    given_back = before - from_reserve.refund - from_reserve.dispute
    return ReleasedReserve(from_reserve=from_reserve, from_transfer=rest, given_back=given_back)


def beyond_the_transfer(rest: Shares, *, room: int) -> tuple[Shares, Shares]:
    """Split the shares a released reserve does not cover: the transfer part's, then debt.

    The transfer part takes them up to its amount (``room``; the refund first, then the
    chargeback); what is beyond was paid to the seller by the release and cannot be reversed
    from this transfer: it is their debt. Returns (from the transfer, owed)."""
    room = max(room, 0)
    refund = min(rest.refund, room)
    dispute = min(rest.dispute, room - refund)
    return Shares(refund=refund, dispute=dispute), Shares(
        refund=rest.refund - refund, dispute=rest.dispute - dispute
    )
