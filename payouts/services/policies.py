"""Each seller's payout policy: read with its defaults, changed by staff (audited).

A policy field left empty means the setting's default (``TRANSFER_HOLD``, ``PLATFORM_FEE_BPS``,
``RESERVE_BPS`` and ``RESERVE_DAYS``; no account debits). ``policy_effective`` says what
applies to a seller now; the transfer service computes each new row with it and records it on
the row.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from config.durations import duration_text, parse_duration
from config.errors import InvalidInput, NotFound
from marketplace.models import Seller
from payouts.models import SellerPolicy, SellerPolicyChange
from payouts.wakeups import debits_due_at

FIELDS = ("hold", "reserve_bps", "reserve_days", "fee_bps", "debits_allowed", "debit_consent_at")
LONGEST_HOLD = timedelta(days=365)


class UnknownSeller(NotFound):
    code = "unknown_seller"


class InvalidPolicy(InvalidInput):
    """A policy field out of range or of the wrong type; the message starts with its name."""

    code = "invalid_policy"

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class EffectivePolicy:
    """What applies to a seller now, every default filled in."""

    hold: timedelta
    reserve_bps: int
    reserve_days: int
    fee_bps: int
    debits_allowed: bool
    debit_consent_at: datetime | None

    def as_recorded(self, *, risk: bool = False) -> dict:
        """What a transfer row records of the policy it was computed with."""
        return {
            "fee_bps": self.fee_bps,
            "hold": int(self.hold.total_seconds()),
            "risk": risk,
            "reserve_bps": self.reserve_bps,
            "reserve_days": self.reserve_days,
        }


def seller_policy(seller_id: int) -> SellerPolicy:
    """The seller's stored policy (unsaved and empty when they have none)."""
    found = SellerPolicy.objects.filter(seller_id=seller_id).first()
    return found or SellerPolicy(seller_id=seller_id)


def policy_effective(policy: SellerPolicy) -> EffectivePolicy:
    """The policy with every empty field replaced by the setting's default."""
    conf = settings.PAYOUTS
    return EffectivePolicy(
        hold=conf.transfer_hold if policy.hold is None else policy.hold,
        reserve_bps=conf.reserve_bps if policy.reserve_bps is None else policy.reserve_bps,
        reserve_days=conf.reserve_days if policy.reserve_days is None else policy.reserve_days,
        fee_bps=conf.platform_fee_bps if policy.fee_bps is None else policy.fee_bps,
        debits_allowed=bool(policy.debits_allowed) and policy.debit_consent_at is not None,
        debit_consent_at=policy.debit_consent_at,
    )


def policy_as_json(policy: SellerPolicy) -> dict[str, Any]:
    """The stored fields as the API and the audit trail write them (``None``: the default)."""
    return {
        "hold": None if policy.hold is None else duration_text(policy.hold),
        "reserve_bps": policy.reserve_bps,
        "reserve_days": policy.reserve_days,
        "fee_bps": policy.fee_bps,
        "debits_allowed": policy.debits_allowed,
        "debit_consent_at": (
            None if policy.debit_consent_at is None else policy.debit_consent_at.isoformat()
        ),
    }


def effective_as_json(effective: EffectivePolicy) -> dict[str, Any]:
    return {
        "hold": duration_text(effective.hold),
        "reserve_bps": effective.reserve_bps,
        "reserve_days": effective.reserve_days,
        "fee_bps": effective.fee_bps,
        "debits_allowed": effective.debits_allowed,
        "debit_consent_at": (
            None if effective.debit_consent_at is None else effective.debit_consent_at.isoformat()
        ),
    }


def _integer(field: str, value: Any, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPolicy(field, f"{value!r} is not a whole number")
    if not low <= value <= high:
        raise InvalidPolicy(field, f"{value} is outside {low}..{high}")
    return value


def _hold(value: Any) -> timedelta | None:
    if value is None:
        return None
    try:
        hold = parse_duration(str(value), zero_allowed=True)
    except ValueError as error:
        raise InvalidPolicy("hold", str(error)) from None
    if hold > LONGEST_HOLD:
        raise InvalidPolicy("hold", f"{value} is longer than the maximum, 365d")
    return hold


def _consent(value: Any) -> datetime | None:
    if value is None:
        return None
    found = parse_datetime(value) if isinstance(value, str) else None
    if found is None or found.tzinfo is None:
        raise InvalidPolicy("debit_consent_at", f"{value!r} is not a date and time with a zone")
    return found


def _debits(value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise InvalidPolicy("debits_allowed", f"{value!r} is not true, false or null")
    return value


_PARSERS = {
    "hold": _hold,
    "reserve_bps": lambda value: _integer("reserve_bps", value, 0, 10_000),
    "reserve_days": lambda value: _integer("reserve_days", value, 0, 180),
    "fee_bps": lambda value: _integer("fee_bps", value, 0, 10_000),
    "debits_allowed": _debits,
    "debit_consent_at": _consent,
}


def policy_changes_parse(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Check the asked changes field by field; raises ``InvalidPolicy`` naming the first bad one.

    Only the fields given are returned; ``None`` is kept (it means "back to the default")."""
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise InvalidPolicy(unknown[0], f"is not a policy field (known: {', '.join(FIELDS)})")
    return {name: _PARSERS[name](value) for name, value in changes.items()}


def seller_policy_set(
    *, seller_id: int, changes: Mapping[str, Any], user, reason: str = ""
) -> SellerPolicy:
    """Change some fields of a seller's payout policy, audited (who, when, before, after).

    Raises ``UnknownSeller`` or ``InvalidPolicy`` (naming the field); nothing changes then.
    Account debits need a consent date: allowing them without one (given, or stored) is
    refused."""
    parsed = policy_changes_parse(changes)
    with transaction.atomic():
        if not Seller.objects.select_for_update().filter(pk=seller_id).exists():
            raise UnknownSeller(f"No seller {seller_id}.")
        policy = seller_policy(seller_id)
        before = policy_as_json(policy)
        for name, value in parsed.items():
            setattr(policy, name, value)
        if policy.debits_allowed and policy.debit_consent_at is None:
            raise InvalidPolicy(
                "debit_consent_at", "account debits need the date the seller's consent was recorded"
            )
        policy.save()
        SellerPolicyChange.objects.create(
            seller_id=seller_id,
            changed_by=user,
            before=before,
            after=policy_as_json(policy),
            reason=reason,
        )
        if policy_effective(policy).debits_allowed:
            debits_due_at(timezone.now())  # a debt old enough may be debited at once
    return policy


def seller_policy_row(*, seller_id: int) -> SellerPolicy:
    """The seller's stored policy, made empty (every field the default) when they had none.

    For the admin, which needs a row to show while a change waits for approval: an empty
    policy changes nothing a transfer is computed with."""
    policy, _ = SellerPolicy.objects.get_or_create(seller_id=seller_id)
    return policy
