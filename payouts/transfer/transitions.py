"""The seller transfer state machine: the one table of allowed moves.

``SellerTransferManager.transition`` is the only code that changes a transfer's status, and it
asks ``can_transition`` first; ``payouts.transfer.moves`` names each edge and is its only caller. A
same-state move is allowed for every known status: it is how a worker records another attempt
(``retry_count``, ``next_retry_at``) with an audit row. ``docs/states.md`` draws the table, and a
test keeps the README's diagram equal to it.
"""

from collections.abc import Mapping

from django.db import models

from config.errors import Conflict


class TransferStatus(models.TextChoices):
    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    PERMANENTLY_FAILED = "permanently_failed"
    REVERSAL_PENDING = "reversal_pending"
    PARTIALLY_REVERSED = "partially_reversed"
    REVERSED = "reversed"
    # Stripe refused the reversal for the seller's balance: the rest of the share is the seller's
    # debt (recovered by netting it from their next transfers, or written off).
    REVERSAL_REFUSED = "reversal_refused"
    # Not sent yet, on purpose: the order is held until released, or the seller's account cannot
    # receive transfers (``held_reason``). Waiting spends no retries.
    HELD = "held"


class HeldReason(models.TextChoices):
    """Why a transfer is ``held``."""

    AWAITING_RELEASE = "awaiting_release"  # the order's hold (TRANSFER_HOLD) until release
    ACCOUNT_RESTRICTED = "account_restricted"  # the seller's account cannot receive transfers
    ACCOUNT_DEAUTHORIZED = "account_deauthorized"  # the seller disconnected the platform
    # The seller's disputes passed RISK_DISPUTE_COUNT and RISK_DISPUTE_RATIO: until staff
    # release them (no time ends this hold).
    RISK = "risk"


class EndReason(models.TextChoices):
    """Why a transfer ended ``permanently_failed``."""

    RETRIES_EXHAUSTED = "retries_exhausted"
    # Stripe answered 404 for the transfer to reverse: it never existed in this account/mode.
    TRANSFER_MISSING = "transfer_missing"
    # A legacy row with no Stripe transfer id: nothing to reverse at Stripe.
    NO_STRIPE_TRANSFER = "no_stripe_transfer"
    # The order was refunded in full before the seller was paid: the seller is never paid.
    ORDER_REFUNDED = "order_refunded"


ALLOWED_TRANSITIONS: Mapping[str, frozenset[str]] = {
    # pending → permanently_failed: the order was refunded in full before the seller was paid.
    TransferStatus.PENDING: frozenset(
        {
            TransferStatus.COMPLETED,
            TransferStatus.FAILED,
            TransferStatus.HELD,
            TransferStatus.PERMANENTLY_FAILED,
        }
    ),
    TransferStatus.HELD: frozenset({TransferStatus.PENDING, TransferStatus.PERMANENTLY_FAILED}),
    TransferStatus.COMPLETED: frozenset({TransferStatus.REVERSAL_PENDING}),
    TransferStatus.FAILED: frozenset(
        {TransferStatus.COMPLETED, TransferStatus.HELD, TransferStatus.PERMANENTLY_FAILED}
    ),
    # reversal_pending → completed: everything taken back was given back (a dispute won, a
    # refund that failed): the seller keeps all of it again.
    TransferStatus.REVERSAL_PENDING: frozenset(
        {
            TransferStatus.COMPLETED,
            TransferStatus.REVERSED,
            TransferStatus.PARTIALLY_REVERSED,
            TransferStatus.REVERSAL_REFUSED,
            TransferStatus.PERMANENTLY_FAILED,
        }
    ),
    TransferStatus.PARTIALLY_REVERSED: frozenset({TransferStatus.REVERSAL_PENDING}),
    # A reversed transfer can be owed something back (a dispute won, a refund that failed).
    TransferStatus.REVERSED: frozenset({TransferStatus.REVERSAL_PENDING}),
    # Another refund of the order: its share is tried at Stripe again.
    TransferStatus.REVERSAL_REFUSED: frozenset({TransferStatus.REVERSAL_PENDING}),
    # Staff only: a row that gave up after its retries is re-queued, an unpaid transfer as
    # failed, an unfinished reversal as reversal_pending. Held or pending: a transfer cancelled
    # because its order was refunded in full is owed again (that refund failed).
    TransferStatus.PERMANENTLY_FAILED: frozenset(
        {
            TransferStatus.FAILED,
            TransferStatus.REVERSAL_PENDING,
            TransferStatus.HELD,
            TransferStatus.PENDING,
        }
    ),
}

# Edges only a person may take (``moves.requeued``); no worker, webhook or sweep ever does.
STAFF_ONLY_TRANSITIONS = frozenset(
    {
        (TransferStatus.PERMANENTLY_FAILED, TransferStatus.FAILED),
        (TransferStatus.PERMANENTLY_FAILED, TransferStatus.REVERSAL_PENDING),
    }
)

# Statuses no automatic actor ever leaves.
TERMINAL_STATUSES = frozenset(
    s
    for s, exits in ALLOWED_TRANSITIONS.items()
    if all((s, to) in STAFF_ONLY_TRANSITIONS for to in exits)
)


# Transfers that moved money to a seller, so a refund's share can be taken back from them.
PAID_STATUSES = frozenset(
    {
        TransferStatus.COMPLETED,
        TransferStatus.REVERSAL_PENDING,
        TransferStatus.PARTIALLY_REVERSED,
        TransferStatus.REVERSED,
        TransferStatus.REVERSAL_REFUSED,
    }
)


def can_transition(from_status: str, to_status: str, *, by_staff: bool = False) -> bool:
    """Whether the state table allows a move from one status to another.

    True when the table allows ``from_status → to_status`` (a staff-only edge only
    ``by_staff``); an unknown status allows nothing."""
    exits = ALLOWED_TRANSITIONS.get(from_status)
    if exits is None:
        return False
    if (from_status, to_status) in STAFF_ONLY_TRANSITIONS and not by_staff:
        return False
    return to_status == from_status or to_status in exits


class TransitionNotAllowed(Conflict):
    """The table forbids the move; raised before the database is touched."""

    code = "transition_not_allowed"

    def __init__(self, transfer_id: int | None, from_status: str, to_status: str):
        super().__init__(
            f"seller transfer {transfer_id}: {from_status} → {to_status} is not allowed"
        )
        self.transfer_id = transfer_id
        self.from_status = from_status
        self.to_status = to_status


class ConcurrentTransition(Conflict):
    """The guarded update matched no row: another actor moved the transfer first."""

    code = "concurrent_change"

    def __init__(self, transfer_id: int | None, expected_status: str, to_status: str):
        super().__init__(
            f"seller transfer {transfer_id} is no longer {expected_status}; "
            f"someone else moved it before {to_status}"
        )
        self.transfer_id = transfer_id
        self.expected_status = expected_status
        self.to_status = to_status
