"""The laws of the money arithmetic (``payouts/transfer/money.py``), one property test each.

The facts drawn keep what the rows' check constraints keep (nothing reversed beyond what was
sent, shares within the amount…) and what the moves keep (nothing given back beyond what was
taken); within those, any combination. Hypothesis runs derandomized (``tests/conftest.py``).
"""

from dataclasses import replace

from hypothesis import assume, given
from hypothesis import strategies as st

from payouts.transfer import money
from payouts.transfer.money import Facts, NextStep
from payouts.transfer.transitions import PAID_STATUSES

AMOUNT = st.integers(min_value=1, max_value=100_000)


@st.composite
def shares_of(draw, amount: int) -> tuple[int, int]:
    refund = draw(st.integers(0, amount))
    return refund, draw(st.integers(0, amount - refund))


@st.composite
def unpaid_facts(draw) -> Facts:
    amount = draw(AMOUNT)
    refund, dispute = draw(shares_of(amount))
    return Facts(
        amount=amount,
        netted=draw(st.integers(0, amount)),
        refund_share=refund,
        dispute_share=dispute,
        held=draw(st.booleans()),
    )


@st.composite
def paid_facts(draw) -> Facts:
    amount = draw(AMOUNT)
    netted = draw(st.integers(0, amount))
    withheld = draw(st.integers(0, amount - netted))
    reversed_ = draw(st.integers(0, amount - netted - withheld))
    owed = draw(st.integers(0, amount))
    returned = draw(st.integers(0, withheld + reversed_ + owed))
    refund, dispute = draw(shares_of(amount))
    taken = withheld + reversed_ + owed - returned
    return Facts(
        amount=amount,
        netted=netted,
        withheld=withheld,
        reversed=reversed_,
        returned=returned,
        owed=owed,
        refund_share=refund,
        dispute_share=dispute,
        to_give_back=draw(st.integers(0, taken)),
        paid=True,
    )


FACTS = st.one_of(unpaid_facts(), paid_facts())


@st.composite
def settled(draw):
    """Paid facts and a reversal step's outcome: Stripe's totals, never less than ours."""
    f = draw(paid_facts())
    reversed_seen = draw(st.integers(0, money.sent(f) + 10))
    returned_seen = draw(st.integers(f.returned, f.returned + f.to_give_back))
    ours = draw(st.integers(0, max(reversed_seen - f.reversed, 0)))
    elsewhere = max(reversed_seen - f.reversed - ours, 0)
    outcome = money.settle(
        f, reversed_seen=reversed_seen, returned_seen=returned_seen, ours=ours, elsewhere=elsewhere
    )
    return f, outcome


@st.composite
def an_order(draw):
    """Transfers of one order (1–4 sellers), what the payment settled as, what it gave back."""
    amounts = draw(st.lists(AMOUNT, min_size=1, max_size=4))
    fees = draw(st.lists(st.integers(0, 5_000), min_size=len(amounts), max_size=len(amounts)))
    whole = draw(st.booleans())  # the transfers are the whole order, or fees were kept
    total = sum(amounts) + (0 if whole else sum(fees))
    refunded = draw(st.integers(0, total + 100))
    recovered = draw(st.integers(0, total + 100))
    return dict(enumerate(amounts)), total, refunded, recovered


def _half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


@given(FACTS, st.integers(-100, 200_000), st.integers(-100, 200_000), settled())
def test_amounts_never_negative(f, debt, written_off, step):
    b = money.balances(f)
    assert min(b.to_send, b.sent, b.kept_back, b.to_take_back, b.to_give_back, b.owed) >= 0
    assert money.to_reverse(f) >= 0
    assert money.withheld_at_send(f) >= 0 and money.owed_at_send(f) >= 0
    assert money.to_give_back_when(f, f.shares) >= 0
    assert money.owed_after_refusal(f) >= 0
    assert money.netted_at_creation(amount=f.amount, debt=debt) >= 0
    cancelled = money.debt_cancelled(f, seller_debt=debt, written_off=written_off)
    assert cancelled.cancelled >= 0 and cancelled.revived >= 0
    _, outcome = step
    assert min(outcome.reversed, outcome.returned, outcome.given_back, outcome.to_give_back) >= 0
    assert outcome.ours_beyond >= 0


@given(paid_facts(), settled(), st.integers(0, 200_000))
def test_never_more_reversed_than_sent(f, step, seen):
    assert f.reversed + money.to_reverse(f) <= money.sent(f)
    assert money.settle(f, reversed_seen=seen).reversed <= money.sent(f)
    before, outcome = step
    assert before.reversed <= outcome.reversed <= money.sent(before)


@given(FACTS)
def test_to_take_back_and_kept_back_never_exceed_the_share(f):
    b = money.balances(f)
    assert b.to_take_back + b.kept_back <= f.amount
    if not f.paid:
        # Before payment every share is kept back or, beyond what is left, owed as debt.
        assert money.withheld_at_send(f) + money.owed_at_send(f) == f.shares
        assert b.kept_back <= f.shares


@given(an_order())
def test_shares_of_one_order_add_up_to_the_cost(order):
    amounts, total, refunded, recovered = order
    shares = money.order_shares(
        refunded=refunded, recovered=recovered, order_total=total, amounts=amounts
    )
    sellers_part = sum(amounts.values())
    refund_cost = min(refunded, total)
    both_cost = min(refunded + recovered, total)
    assert sum(s.refund for s in shares.values()) == _half_up(refund_cost * sellers_part, total)
    assert sum(s.refund + s.dispute for s in shares.values()) == _half_up(
        both_cost * sellers_part, total
    )
    if sellers_part == total:
        assert sum(s.refund for s in shares.values()) == refund_cost
        assert sum(s.refund + s.dispute for s in shares.values()) == both_cost
    for pk, share in shares.items():
        assert share.refund + share.dispute <= amounts[pk]


@given(paid_facts(), st.integers(0, 100_000), settled(), st.integers(-10, 200_000))
def test_give_back_never_exceeds_what_was_taken(f, new_shares, step, debt):
    taken = money.taken_back(f)
    assert money.to_give_back_when(f, new_shares) <= max(taken, 0)
    cancelled = money.debt_cancelled(f, seller_debt=debt, written_off=debt // 2)
    assert cancelled.total <= f.to_give_back
    assert cancelled.total <= f.owed
    before, outcome = step
    taken_after = before.withheld + outcome.reversed + before.owed - outcome.returned
    assert outcome.to_give_back <= max(taken_after, 0)
    assert outcome.given_back <= before.to_give_back


@given(FACTS)
def test_next_step_is_consistent_with_the_amounts(f):
    b = money.balances(f)
    if b.next == NextStep.SEND:
        assert b.to_send > 0 and not f.paid and not f.held
    if b.next == NextStep.REVERSE:
        assert b.to_take_back > 0 and money.to_reverse(f) > 0
    if b.next == NextStep.GIVE_BACK:
        assert b.to_give_back > 0
    if b.next == NextStep.BOOK_DEBT:
        assert b.to_take_back > 0 or (not f.paid and money.owed_at_send(f) > 0)
    if f.paid and b.to_take_back == 0 and b.to_give_back == 0:
        assert b.next == NextStep.NOTHING
    if not f.paid and b.to_send == 0 and money.owed_at_send(f) == 0:
        assert b.next == NextStep.NOTHING
    if f.paid and b.to_give_back == 0 and b.to_take_back > 0:
        assert b.next in (NextStep.REVERSE, NextStep.BOOK_DEBT)


@given(FACTS)
def test_money_is_conserved(f):
    b = money.balances(f)
    if f.paid:
        assert b.sent + f.withheld + f.netted == f.amount
    else:
        assert b.to_send + b.kept_back + f.netted == f.amount


@given(settled())
def test_a_settled_step_stands_where_its_amounts_say(step):
    before, outcome = step
    taken = before.withheld + outcome.reversed + before.owed - outcome.returned
    if outcome.standing == money.Standing.UNSETTLED:
        assert taken < before.shares or outcome.to_give_back > 0
    else:
        assert taken >= before.shares and outcome.to_give_back == 0
    if outcome.standing == money.Standing.ALL_TAKEN:
        assert taken >= before.amount


@given(
    st.dictionaries(st.integers(0, 9), st.integers(0, 10_000), max_size=5), st.integers(0, 10**6)
)
def test_allocation_is_exact_when_weights_make_the_whole(weights, amount):
    of = sum(weights.values())
    parts = money.allocate(amount, of=of, weights=weights)
    if of > 0:
        assert sum(parts.values()) == amount
        for key, part in parts.items():
            assert abs(part * of - amount * weights[key]) < of  # within one unit of exact
    assert min(parts.values(), default=0) >= 0


def test_paid_statuses_are_the_state_machine_s():
    assert {str(status) for status in PAID_STATUSES} == money.PAID


@given(FACTS)
def test_a_row_reads_as_its_facts(f):
    """``Facts.of`` reads a row's fields as the facts they record."""

    class Row:
        amount, platform_fee, amount_netted = f.amount, f.platform_fee, f.netted
        amount_withheld, amount_reversed, amount_returned = f.withheld, f.reversed, f.returned
        amount_owed, reversal_target, dispute_target = f.owed, f.refund_share, f.dispute_share
        amount_to_give_back = f.to_give_back
        stripe_transfer_id = "tr_1" if f.paid else ""
        status = "held" if f.held else ("completed" if f.paid else "pending")

    assume(not (f.paid and f.held))
    assert Facts.of(Row) == f


@given(settled())
def test_recording_the_same_totals_again_changes_nothing(step):
    before, outcome = step
    after = _recorded(before, outcome)
    again = money.settle(after, reversed_seen=outcome.reversed, returned_seen=outcome.returned)
    assert (again.reversed, again.returned, again.to_give_back) == (
        outcome.reversed,
        outcome.returned,
        outcome.to_give_back,
    )
    assert again.given_back == 0 and again.ours_beyond == 0


@given(paid_facts())
def test_following_the_next_steps_settles_a_paid_transfer(f):
    for _ in range(6):
        step = money.balances(f).next
        if step == NextStep.NOTHING:
            break
        f = _FOLLOW[step](f)
    else:
        raise AssertionError(f"still {money.balances(f).next} after six steps: {f}")
    assert money.left_to_take(f) <= 0 and f.to_give_back == 0


def _recorded(f: Facts, outcome: money.Settlement) -> Facts:
    return replace(
        f, reversed=outcome.reversed, returned=outcome.returned, to_give_back=outcome.to_give_back
    )


def _reverse(f: Facts) -> Facts:
    asked = money.to_reverse(f)
    return _recorded(f, money.settle(f, reversed_seen=f.reversed + asked, ours=asked))


def _book_debt(f: Facts) -> Facts:
    return replace(f, owed=money.owed_after_refusal(f))


def _give_back(f: Facts) -> Facts:
    cancel = money.debt_cancelled(f, seller_debt=f.owed, written_off=0)
    f = replace(f, owed=f.owed - cancel.total, to_give_back=f.to_give_back - cancel.total)
    return _recorded(f, money.settle(f, returned_seen=f.returned + f.to_give_back))


_FOLLOW = {
    NextStep.REVERSE: _reverse,
    NextStep.BOOK_DEBT: _book_debt,
    NextStep.GIVE_BACK: _give_back,
}


@given(
    AMOUNT,
    st.integers(0, 10_000),
    st.integers(0, 200_000),
    st.data(),
)
def test_the_reserve_is_kept_never_lost(amount, bps, debt, data):
    """Law 10: the reserve taken stays within the reserve kept; reserve first, then transfer.

    What the reserve and the transfer take of the shares adds up to them, and the reserve,
    the netting, what is sent and what is kept back add up to the seller's share."""
    reserve = money.reserve_kept(amount=amount, bps=bps)
    assert 0 <= reserve <= amount
    assert abs(reserve * money.BPS - amount * bps) <= money.BPS // 2
    netted = money.netted_at_creation(amount=amount - reserve, debt=debt)
    refund, dispute = data.draw(shares_of(amount))
    shares = money.Shares(refund=refund, dispute=dispute)
    from_reserve, from_transfer = money.reserve_split(shares, reserve=reserve)
    taken = from_reserve.refund + from_reserve.dispute
    assert 0 <= taken <= reserve
    assert from_reserve.refund + from_transfer.refund == refund
    assert from_reserve.dispute + from_transfer.dispute == dispute
    assert min(from_transfer.refund, from_transfer.dispute) >= 0
    # The reserve is used up before the transfer is touched.
    assert from_transfer.refund + from_transfer.dispute == 0 or taken == reserve

    class Row:
        amount_reserved = reserve
        amount_netted, amount_withheld, amount_reversed, amount_returned = netted, 0, 0, 0
        amount_owed, amount_to_give_back = 0, 0
        reversal_target, dispute_target = from_transfer.refund, from_transfer.dispute
        stripe_transfer_id, status = "", "pending"

    Row.amount = amount
    part = Facts.of(Row)
    assert part.amount == amount - reserve
    kept_back = money.withheld_at_send(part)
    owed = money.owed_at_send(part)
    assert reserve + netted + money.to_send(part) + kept_back == amount
    assert kept_back + owed == from_transfer.refund + from_transfer.dispute
    assert money.reserve_held(reserved=reserve, taken=taken) == reserve - taken


@given(AMOUNT, st.integers(0, 10_000), st.data())
def test_a_released_reserve_covers_no_more_and_gives_back_what_it_covers_no_more(amount, bps, data):
    """Law 10, after the release: the reserve's cover never grows, and is never lost.

    What it covers now plus what it gives back is what it covered; what it and the transfer
    take is the shares; following the shares again moves nothing."""
    reserve = money.reserve_kept(amount=amount, bps=bps)
    at_release = money.reserve_split(money.Shares(*data.draw(shares_of(amount))), reserve=reserve)
    covered = at_release[0]
    shares = money.Shares(*data.draw(shares_of(amount)))

    released = money.reserve_after_release(shares, covered=covered)

    now = released.from_reserve
    assert now.refund + now.dispute + released.given_back == covered.refund + covered.dispute
    assert released.given_back >= 0 and min(now.refund, now.dispute) >= 0
    assert now.refund + released.from_transfer.refund == shares.refund
    assert now.dispute + released.from_transfer.dispute == shares.dispute
    again = money.reserve_after_release(shares, covered=now)
    assert (again.from_reserve, again.given_back) == (now, 0)


@given(AMOUNT, st.integers(0, 10_000), st.data())
def test_after_the_release_the_transfer_part_takes_what_it_can_and_the_rest_is_owed(
    amount, bps, data
):
    """Law 10, after the release: the reserve, the transfer part and the seller's debt cover
    the shares exactly, the transfer part never more than it is, and debt only beyond it."""
    reserve = money.reserve_kept(amount=amount, bps=bps)
    at_release = money.reserve_split(money.Shares(*data.draw(shares_of(amount))), reserve=reserve)
    shares = money.Shares(*data.draw(shares_of(amount)))
    released = money.reserve_after_release(shares, covered=at_release[0])

    part, owed = money.beyond_the_transfer(released.from_transfer, room=amount - reserve)

    now = released.from_reserve
    assert now.refund + part.refund + owed.refund == shares.refund
    assert now.dispute + part.dispute + owed.dispute == shares.dispute
    assert min(part.refund, part.dispute, owed.refund, owed.dispute) >= 0
    assert part.refund + part.dispute <= amount - reserve
    assert owed.refund + owed.dispute == 0 or part.refund + part.dispute == amount - reserve
    # What the seller owes is never more than the release paid them.
    assert owed.refund + owed.dispute <= reserve - at_release[0].refund - at_release[0].dispute
