"""Connected accounts that can't receive: the transfers capability and deauthorization.

Accounts carry Stripe's ``capabilities``, ``requirements``, ``charges_enabled``,
``payouts_enabled`` and ``details_submitted``. The control API switches the
``transfers`` capability between ``active``, ``inactive`` and ``pending`` (emitting
``account.updated`` with ``previous_attributes`` and ``capability.updated``), and
deauthorizes the platform from an account (``account.application.deauthorized``,
whose object is the platform's ``application``). These are Connect events: their
envelope names the account (``"account": "acct_…"``) and they go to the Connect
webhook endpoint, never to the platform one.

What Stripe then refuses:

* a transfer to an account whose transfers capability is not active: 400
  ``insufficient_capabilities_for_transfer``;
* a transfer to a deauthorized account: 400 ``account_invalid`` on ``destination``;
* any request made as a deauthorized (or unknown) account through the
  ``Stripe-Account`` header, and retrieving it: 403 ``account_invalid``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from .common import changed_attributes, now, snapshot_fields
from .errors import ControlError, account_access_denied, invalid_request, resource_missing

TRANSFERS_STATUSES = ("active", "inactive", "pending")
CAPABILITY_REQUIRED = (
    "Your destination account needs to have at least one of the following capabilities "
    "enabled: transfers, crypto_transfers, legacy_payments"
)
_DEFAULT_DUE = {"inactive": ["external_account"], "pending": ["individual.verification.document"]}
_DEFAULT_REASON = {
    "inactive": "requirements.past_due",
    "pending": "requirements.pending_verification",
}


def requirements(
    currently_due: Iterable[str] = (),
    past_due: Iterable[str] = (),
    pending: Iterable[str] = (),
    disabled_reason: str | None = None,
) -> dict[str, Any]:
    """An account's (or capability's) ``requirements`` hash."""
    return {
        "alternatives": [],
        "current_deadline": None,
        "currently_due": list(currently_due),
        "disabled_reason": disabled_reason,
        "errors": [],
        "eventually_due": list(currently_due),
        "past_due": list(past_due),
        "pending_verification": list(pending),
    }


def _requirements_for(status: str, reason: str | None, fields: list[str] | None):
    if status == "active":
        return requirements()
    due = list(fields) if fields else list(_DEFAULT_DUE[status])
    reason = reason or _DEFAULT_REASON[status]
    if status == "pending":
        return requirements(pending=due, disabled_reason=reason)
    return requirements(currently_due=due, past_due=due, disabled_reason=reason)


class ConnectMixin:
    """Capabilities, deauthorization and access checks; mixed into ``Store``."""

    def check_account_access(self, ctx) -> None:
        """Refuse requests made as a connected account the platform can't reach."""
        account_id = ctx.stripe_account
        if account_id is not None and (
            account_id not in self.accounts or account_id in self.deauthorized
        ):
            raise account_access_denied(account_id, ctx.api_key)

    def _check_destination(self, destination: str) -> None:
        if destination not in self.accounts:
            raise resource_missing("destination", destination, param="destination", status=400)
        if destination in self.deauthorized:
            raise invalid_request(
                f"The destination account '{destination}' is not connected to your platform "
                "(or that account does not exist). Application access may have been revoked.",
                param="destination",
                code="account_invalid",
            )
        if self.accounts[destination]["capabilities"].get("transfers") != "active":
            raise invalid_request(
                CAPABILITY_REQUIRED, code="insufficient_capabilities_for_transfer"
            )

    def set_transfers_capability(
        self,
        account_id: str,
        status: str,
        disabled_reason: str | None,
        fields: list[str] | None,
        ctx,
    ) -> dict[str, Any]:
        account = self._get(self.accounts, "account", account_id)
        if account_id in self.deauthorized:
            raise ControlError(f"the platform was deauthorized from {account_id}", 409)
        if status not in TRANSFERS_STATUSES:
            raise ControlError(f"status must be one of {', '.join(TRANSFERS_STATUSES)}")
        before = snapshot_fields(account, ("capabilities", "payouts_enabled", "requirements"))
        account["capabilities"]["transfers"] = status
        account["requirements"] = _requirements_for(status, disabled_reason, fields)
        account["payouts_enabled"] = status == "active"
        previous = changed_attributes(before, account)
        if previous:
            self.emit("account.updated", account, ctx, account=account_id, previous=previous)
            self.emit("capability.updated", self._capability(account), ctx, account=account_id)
        return copy.deepcopy(account)

    @staticmethod
    def _capability(account: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": "transfers",
            "object": "capability",
            "account": account["id"],
            "requested": True,
            "requested_at": account["created"],
            "requirements": copy.deepcopy(account["requirements"]),
            "status": account["capabilities"]["transfers"],
        }

    def deauthorize_account(self, account_id: str, ctx) -> dict[str, Any]:
        self._get(self.accounts, "account", account_id)
        if account_id in self.deauthorized:
            raise ControlError(f"the platform is already deauthorized from {account_id}", 409)
        self.deauthorized[account_id] = now()
        self.emit("account.application.deauthorized", self.application, ctx, account=account_id)
        return {"account": account_id, "application": copy.deepcopy(self.application)}
