"""The transfer state table (``payouts/transfer/transitions.py``): exactly the documented
moves, and out of permanently_failed only by staff or to pay a transfer whose cancelling refund
failed."""

import itertools

import pytest

from payouts.transfer.transitions import (
    ALLOWED_TRANSITIONS,
    TERMINAL_STATUSES,
    TransferStatus,
    can_transition,
)

EXPECTED_ALLOWED = {
    (TransferStatus.PENDING, TransferStatus.COMPLETED),
    (TransferStatus.PENDING, TransferStatus.FAILED),
    (TransferStatus.PENDING, TransferStatus.PERMANENTLY_FAILED),
    (TransferStatus.PENDING, TransferStatus.HELD),
    (TransferStatus.FAILED, TransferStatus.HELD),
    (TransferStatus.HELD, TransferStatus.PENDING),
    (TransferStatus.HELD, TransferStatus.PERMANENTLY_FAILED),
    (TransferStatus.COMPLETED, TransferStatus.REVERSAL_PENDING),
    (TransferStatus.FAILED, TransferStatus.COMPLETED),
    (TransferStatus.FAILED, TransferStatus.PERMANENTLY_FAILED),
    (TransferStatus.REVERSAL_PENDING, TransferStatus.REVERSED),
    (TransferStatus.REVERSAL_PENDING, TransferStatus.PERMANENTLY_FAILED),
    (TransferStatus.REVERSAL_PENDING, TransferStatus.PARTIALLY_REVERSED),
    (TransferStatus.PARTIALLY_REVERSED, TransferStatus.REVERSAL_PENDING),
    (TransferStatus.REVERSAL_PENDING, TransferStatus.REVERSAL_REFUSED),
    (TransferStatus.REVERSAL_PENDING, TransferStatus.COMPLETED),
    (TransferStatus.REVERSED, TransferStatus.REVERSAL_PENDING),
    (TransferStatus.REVERSAL_REFUSED, TransferStatus.REVERSAL_PENDING),
    (TransferStatus.PERMANENTLY_FAILED, TransferStatus.HELD),
    (TransferStatus.PERMANENTLY_FAILED, TransferStatus.PENDING),
} | {(s, s) for s in TransferStatus}
ALL_PAIRS = list(itertools.product(TransferStatus, repeat=2))


def test_nine_statuses_allow_29_of_their_81_pairs():
    assert len(ALL_PAIRS) == 81
    assert sum(can_transition(a, b) for a, b in ALL_PAIRS) == 29


@pytest.mark.parametrize(("from_status", "to_status"), ALL_PAIRS)
def test_every_pair_matches_the_documented_table(from_status, to_status):
    assert can_transition(from_status, to_status) is ((from_status, to_status) in EXPECTED_ALLOWED)


def test_permanently_failed_is_left_automatically_only_to_be_paid_again():
    # A transfer cancelled by a full refund is reinstated when that refund fails; every other
    # way out of permanently_failed is staff's.
    automatic = {
        other
        for other in TransferStatus
        if can_transition(TransferStatus.PERMANENTLY_FAILED, other)
    }
    assert automatic == {
        TransferStatus.PERMANENTLY_FAILED,
        TransferStatus.HELD,
        TransferStatus.PENDING,
    }
    assert not TERMINAL_STATUSES


@pytest.mark.parametrize("unknown", ["", "paid", "REVERSED", "partially-reversed", None])
def test_an_unknown_from_status_allows_nothing(unknown):
    assert not any(can_transition(unknown, to) for to in TransferStatus)
    assert not can_transition(unknown, unknown)


def test_the_table_keys_are_exactly_the_statuses():
    assert set(ALLOWED_TRANSITIONS) == set(TransferStatus.values)
    assert all(exits <= set(TransferStatus.values) for exits in ALLOWED_TRANSITIONS.values())
