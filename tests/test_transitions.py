"""The transfer state table (``payouts/transitions.py``): exactly the documented moves, and out
of permanently_failed only by staff or to pay a transfer whose cancelling refund failed."""

import itertools

import pytest

from payouts.transitions import (
    ALLOWED_TRANSITIONS,
    TERMINAL_STATUSES,
    TransferStatus,
    can_transition,
)

S = TransferStatus

EXPECTED_ALLOWED = {
    (S.PENDING, S.COMPLETED),
    (S.PENDING, S.FAILED),
    (S.PENDING, S.PERMANENTLY_FAILED),
    (S.PENDING, S.HELD),
    (S.FAILED, S.HELD),
    (S.HELD, S.PENDING),
    (S.HELD, S.PERMANENTLY_FAILED),
    (S.COMPLETED, S.REVERSAL_PENDING),
    (S.FAILED, S.COMPLETED),
    (S.FAILED, S.PERMANENTLY_FAILED),
    (S.REVERSAL_PENDING, S.REVERSED),
    (S.REVERSAL_PENDING, S.PERMANENTLY_FAILED),
    (S.REVERSAL_PENDING, S.PARTIALLY_REVERSED),
    (S.PARTIALLY_REVERSED, S.REVERSAL_PENDING),
    (S.REVERSAL_PENDING, S.REVERSAL_REFUSED),
    (S.REVERSAL_PENDING, S.COMPLETED),
    (S.REVERSED, S.REVERSAL_PENDING),
    (S.REVERSAL_REFUSED, S.REVERSAL_PENDING),
    (S.PERMANENTLY_FAILED, S.HELD),
    (S.PERMANENTLY_FAILED, S.PENDING),
} | {(s, s) for s in S}
ALL_PAIRS = list(itertools.product(S, repeat=2))


def test_nine_statuses_allow_29_of_their_81_pairs():
    assert len(ALL_PAIRS) == 81
    assert sum(can_transition(a, b) for a, b in ALL_PAIRS) == 29


@pytest.mark.parametrize(("from_status", "to_status"), ALL_PAIRS)
def test_every_pair_matches_the_documented_table(from_status, to_status):
    assert can_transition(from_status, to_status) is ((from_status, to_status) in EXPECTED_ALLOWED)


def test_permanently_failed_is_left_automatically_only_to_be_paid_again():
    # A transfer cancelled by a full refund is reinstated when that refund fails; every other
    # way out of permanently_failed is staff's.
    automatic = {other for other in S if can_transition(S.PERMANENTLY_FAILED, other)}
    assert automatic == {S.PERMANENTLY_FAILED, S.HELD, S.PENDING}
    assert not TERMINAL_STATUSES


@pytest.mark.parametrize("unknown", ["", "paid", "REVERSED", "partially-reversed", None])
def test_an_unknown_from_status_allows_nothing(unknown):
    assert not any(can_transition(unknown, to) for to in S)
    assert not can_transition(unknown, unknown)


def test_the_table_keys_are_exactly_the_statuses():
    assert set(ALLOWED_TRANSITIONS) == set(S.values)
    assert all(exits <= set(S.values) for exits in ALLOWED_TRANSITIONS.values())
