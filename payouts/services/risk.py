"""Risk holds: a seller with too many disputes is paid only once staff release them.

When, over ``RISK_WINDOW`` (90 days by default), a seller's disputed orders reach
``RISK_DISPUTE_COUNT`` and their share of the seller's paid orders reaches
``RISK_DISPUTE_RATIO``, each new transfer of theirs is created ``held`` with the reason
``risk``. No time ends that hold (beat's release sweep leaves it alone); staff release it
(``seller_risk_release``, through the approvals app), which also starts the count again from
that moment, so the disputes already judged do not hold the next transfer.
"""

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from config.errors import Conflict
from marketplace.models import Seller
from payouts.models import SellerPolicy, SellerPolicyChange, SellerTransfer
from payouts.selectors import seller_dispute_record
from payouts.services.policies import UnknownSeller
from payouts.transfer import moves
from payouts.transfer.actors import Actor
from payouts.transfer.locks import transfer_lock
from payouts.transfer.transitions import HeldReason, TransferStatus
from payouts.wakeups import send_transfers_after_commit


class NoRiskHold(Conflict):
    code = "no_risk_hold"


def seller_at_risk(*, seller_id: int, released_at=None) -> bool:
    """Whether the seller's disputes pass both thresholds over the window (since a release)."""
    conf = settings.PAYOUTS
    since = timezone.now() - conf.risk_window
    if released_at is not None and released_at > since:
        since = released_at
    disputed, paid = seller_dispute_record(seller_id=seller_id, since=since)
    if disputed < conf.risk_dispute_count:
        return False
    return paid == 0 or disputed >= conf.risk_dispute_ratio * paid


def risk_held_transfers(seller_id: int):
    return SellerTransfer.objects.filter(
        seller_id=seller_id, status=TransferStatus.HELD, held_reason=HeldReason.RISK
    )


def seller_risk_release(*, seller_id: int, actor: Actor, reason: str = "") -> list[int]:
    """Release a seller's transfers held for risk; each is sent after commit. Audited.

    The dispute count starts again now. Returns the released rows' ids. Raises
    ``UnknownSeller`` or ``NoRiskHold`` (nothing held for risk); nothing changes then."""
    with transaction.atomic():
        if not Seller.objects.select_for_update().filter(pk=seller_id).exists():
            raise UnknownSeller(f"No seller {seller_id}.")
        ids = list(risk_held_transfers(seller_id).order_by("pk").values_list("pk", flat=True))
        if not ids:
            raise NoRiskHold(f"seller {seller_id} has no transfer held for risk")
        policy, _ = SellerPolicy.objects.get_or_create(seller_id=seller_id)
        before = policy.risk_released_at
        policy.risk_released_at = timezone.now()
        policy.save(update_fields=["risk_released_at", "updated_at"])
        SellerPolicyChange.objects.create(
            seller_id=seller_id,
            changed_by=actor.user,
            kind="risk_release",
            before={"risk_released_at": before.isoformat() if before else None},
            after={"risk_released_at": policy.risk_released_at.isoformat(), "released": ids},
            reason=reason,
        )
        for transfer_id in ids:
            row = transfer_lock(transfer_id)
            if row.status != TransferStatus.HELD or row.held_reason != HeldReason.RISK:
                continue  # cancelled meanwhile (its order refunded in full, say)
            moves.released(row, actor=actor)
            send_transfers_after_commit(order_id=row.order_id)
    return ids
