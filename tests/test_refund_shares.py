"""Each seller's share of an order's refunds: proportional to what the seller was paid, in whole
cents that add up exactly and never exceed what was paid."""

import pytest

from payouts.transfer.money import proportional_targets


@pytest.mark.parametrize(
    ("refunded", "total", "amounts"),
    [
        (1000, 6333, {1: 900, 2: 1800, 3: 3000}),
        (1, 6333, {1: 900, 2: 1800, 3: 3000}),
        (3167, 6333, {1: 900, 2: 1800, 3: 3000}),
        (999, 1000, {1: 333, 2: 333, 3: 334}),
        (6333, 6333, {1: 900, 2: 1800, 3: 3000}),
    ],
)
def test_shares_add_up_exactly_and_never_exceed_an_amount(refunded, total, amounts):
    shares = proportional_targets(refunded=refunded, order_total=total, amounts=amounts)

    exact_total = refunded * sum(amounts.values()) / total
    assert sum(shares.values()) == int(exact_total + 0.5)
    assert all(0 <= shares[pk] <= amounts[pk] for pk in amounts)
    assert all(abs(shares[pk] - refunded * amounts[pk] / total) < 1 for pk in amounts)


def test_a_full_refund_targets_every_whole_amount():
    amounts = {1: 900, 2: 1800, 3: 3000}

    assert proportional_targets(refunded=6333, order_total=6333, amounts=amounts) == amounts
