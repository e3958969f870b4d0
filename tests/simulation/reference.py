"""What each seller is owed, from the facts of a history alone: the orders paid, what was
refunded (and not failed since), the disputes and how they ended, and what staff wrote off.

Written on purpose without the production money code: no shares, no rounding rules, no rows.
Each order owes each of its sellers their items less the platform's fee, less the part of the
order taken back from the buyer's side (refunds, and chargebacks recovered under the policy),
in exact fractions. Production rounds each share to a whole minor unit, so each order a seller
has a share taken from may differ by less than one unit: ``Expectation.slack`` says how much.

A seller keeps more than that only in two ways the model also knows:

- a debt still open in the book (a reversal their balance could not cover, not yet netted);
- a debt staff wrote off. A write-off forgives what the seller kept of an order at that moment;
  if that order's entitlement rises again afterwards (its refund failed, its dispute was won),
  the rise is covered by what they kept, so the write-off shrinks by it. Paying the rise again
  would pay the seller twice. The rise is counted when the reversal worker runs
  (``workers_ran``), as the service's give-back revives the write-off then.

The seller-risk features:

- **Fees per seller.** A seller whose payout policy names a fee pays that one instead of the
  platform's (``seller_fees``); it is set before the history starts and never changed.
- **The rolling reserve** changes when a seller is paid, not what they are owed: a part of each
  share is kept back, refunds and recovered chargebacks take from it first, and once its days
  pass what it has left is sent (a reserve release, a transfer of no order). The simulator
  checks at the end, once every reserve's days have passed, so each seller is owed their whole
  entitlement whatever reserve they had; that their reserve account in the book is empty and
  no release is pending or given up is checked beside it.
- **Account debits** take a seller's old debt from their connected account (a transfer made as
  them to the platform). A debit lowers what the seller holds at Stripe and their open debt
  alike, so what they should hold (entitlement + open debt + write-offs) is unchanged by it:
  the world counts each debit against what the seller holds, and the book's open debt is read
  after it.
- **Risk holds** keep a seller's new transfers until staff release them; staff release every
  one while settling, so they change nothing the seller is owed either.
"""

from dataclasses import dataclass, field
from fractions import Fraction

# Dispute statuses under which Stripe holds the funds (withdrawn when the chargeback opened).
FUNDS_WITHDRAWN = ("needs_response", "under_review", "lost")


@dataclass
class OrderFacts:
    currency: str
    items: dict[int, int]  # seller -> gross amount of their items
    refunds: dict[str, int] = field(default_factory=dict)  # succeeded, not failed since
    disputes: dict[str, tuple[int, str]] = field(default_factory=dict)  # id -> (amount, status)

    @property
    def total(self) -> int:
        return sum(self.items.values())


@dataclass
class WriteOff:
    seller: int
    currency: str
    order: int  # -1: tied to no order
    amount: int
    entitlement_then: Fraction


@dataclass(frozen=True)
class Expectation:
    amount: Fraction  # what the seller should hold at Stripe
    slack: int  # rounding: at most one minor unit per order with a share taken


class ReferenceModel:
    def __init__(
        self, *, fee_bps: int, dispute_recovery: str, seller_fees: dict[int, int] | None = None
    ):
        self.fee_bps = fee_bps
        self.seller_fees = dict(seller_fees or {})  # seller -> their own fee, in basis points
        self.dispute_recovery = dispute_recovery
        self.orders: dict[int, OrderFacts] = {}
        self.write_offs: list[WriteOff] = []

    # --- facts -----------------------------------------------------------------------------

    def paid(self, order: int, *, currency: str, items: dict[int, int]) -> None:
        self.orders[order] = OrderFacts(currency, dict(items))

    def refunded(self, order: int, refund: str, amount: int) -> None:
        self.orders[order].refunds[refund] = amount

    def refund_failed(self, order: int, refund: str) -> None:
        self.orders[order].refunds.pop(refund, None)

    def dispute(self, order: int, dispute: str, amount: int, status: str) -> None:
        self.orders[order].disputes[dispute] = (amount, status)

    def written_off(
        self,
        *,
        seller: int,
        currency: str,
        amount: int,
        kept: dict[int, int],
        settled: bool = True,
        entitled: dict[int, int] | None = None,
    ):
        """Staff wrote off ``amount`` of the seller's debt; ``kept`` is what they hold beyond
        their entitlement per order at Stripe now. The write-off covers the largest first.

        What is left once it covers all they keep is debt of facts the book has not caught up
        with (a failed refund whose debt the workers have not cancelled yet): while the world
        is ``settled`` it is forgiven for good, else the service cancels it later (with its
        part of the write-off) and it forgives nothing. ``entitled``: the entitlement per
        order a later rise is measured from, as the book has it (the model's own unless
        given)."""
        left = amount
        for order, excess in sorted(kept.items(), key=lambda pair: (-pair[1], pair[0])):
            if left <= 0 or excess <= 0 or self.orders[order].currency != currency:
                continue
            part = min(left, excess)
            owed_now = self.owed(seller, order) if entitled is None else Fraction(entitled[order])
            self.write_offs.append(WriteOff(seller, currency, order, part, owed_now))
            left -= part
        if left > 0 and settled:  # nothing kept to tie it to: forgiven for good
            self.write_offs.append(WriteOff(seller, currency, -1, left, Fraction(0)))

    # --- what is owed ----------------------------------------------------------------------

    def net_of_fee(self, gross: int, seller: int | None = None) -> int:
        bps = self.seller_fees.get(seller, self.fee_bps)
        return gross - (gross * bps + 5_000) // 10_000  # the fee, rounded half up

    def taken_back(self, order: OrderFacts) -> Fraction:
        """The fraction of the order taken back from its sellers."""
        recovered = sum(
            amount for amount, status in order.disputes.values() if self._recovers(status)
        )
        return min(Fraction(sum(order.refunds.values()) + recovered, order.total), Fraction(1))

    def _recovers(self, status: str) -> bool:
        if self.dispute_recovery == "on_loss":
            return status == "lost"
        return status in FUNDS_WITHDRAWN

    def owed(self, seller: int, order_id: int) -> Fraction:
        order = self.orders[order_id]
        if seller not in order.items:
            return Fraction(0)
        return self.net_of_fee(order.items[seller], seller) * (1 - self.taken_back(order))

    def workers_ran(self) -> None:
        """The reversal worker ran, every fact heard: a rise of an order's entitlement since a
        write-off uses the write-off up now, as the service revives it when it gives back.

        Not when the fact happens: a refund that fails and a new refund before any worker runs
        leave the service no rise to see, and the write-off whole (``ladder`` seeds 20, 96).
        Nor at the write-off: one tied by a book that lagged the facts is used up by the rise
        they held then once the worker runs (seeds 3 and 53)."""
        self._absorb()

    def _absorb(self) -> None:
        for write_off in self.write_offs:
            if write_off.order < 0:
                continue
            now = self.owed(write_off.seller, write_off.order)
            # In whole units, as the write-off was: production pays whole units of a share, so
            # an entitlement rising from 918.07 to 1224 gives back the 306 written off.
            rise = round(now) - round(write_off.entitlement_then)
            if rise > 0:
                write_off.amount = max(write_off.amount - rise, 0)
                # Only a rise above the highest entitlement since uses the write-off up: one
                # that falls (a new refund) and rises back (it fails) gives back a debt of its
                # own, not the one written off (seed 34 of ``ladder``).
                write_off.entitlement_then = now

    def expected(self, seller: int, currency: str, *, open_debt: int) -> Expectation:
        """What the seller should hold at Stripe in ``currency``, given the debt the book
        still holds against them."""
        mine = [
            order_id
            for order_id, order in self.orders.items()
            if order.currency == currency and seller in order.items
        ]
        entitled = sum((self.owed(seller, order_id) for order_id in mine), Fraction(0))
        forgiven = sum(
            w.amount for w in self.write_offs if (w.seller, w.currency) == (seller, currency)
        )
        shared = sum(1 for order_id in mine if self.taken_back(self.orders[order_id]) > 0)
        return Expectation(entitled + open_debt + forgiven, slack=shared)
