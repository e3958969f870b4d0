"""Control API: everything under /_sandbox/, JSON in and out. Not part of Stripe's API.

Errors come back as {"error": {"type": "sandbox_error", "message": ...}} (400,
404 for unknown endpoints, 409 for a change the object's state forbids), or in
Stripe's own error shape when the change is one Stripe itself would refuse.

Inspection
  GET  /_sandbox/health                    {"ok": true}
  GET  /_sandbox/state                     every object, event and delivery; the config
  GET  /_sandbox/ledger                    where the money went, with consistency checks
  GET  /_sandbox/calls?operation=&outcome= the API call log
  GET  /_sandbox/faults                    fault knobs, scripts and rate limit
  GET  /_sandbox/config                    refund status, seed, webhooks, settlement
  GET  /_sandbox/objects/{id}              one object by its id (acct_, tr_, trr_, pi_, ch_,
                                           re_, dp_, evt_, ...), as the API shows it; 404 if none

Set-up and faults
  POST /_sandbox/reset                     forget everything, back to the start-up config
  POST /_sandbox/faults      {"operation", "latency_ms", "timeout_seconds", "*_rate"...}
  POST /_sandbox/script      {"operation", "responses": [...], "replace"}
  POST /_sandbox/rate_limit  {"per_second", "burst", "per_operation", "operations"}
       Stripe's limits as token buckets: per_second in all (holding burst, default a second's
       worth), per_operation on each named operation, operations {"transfers.create": 25}
       overriding some; null: no such limit. Live: 100 and 25; a sandbox: 25 in all. A refused
       request is a 429 rate_limit with Stripe-Rate-Limited-Reason global-rate or endpoint-rate
  POST /_sandbox/config      {"new_refund_status": "succeeded"|"pending", "seed"}
  POST /_sandbox/idempotency/forget
       forget every idempotency key, as Stripe does 24 hours after a key's first use
  GET  /_sandbox/settlement
  POST /_sandbox/settlement  {"currency": "usd", "rates": {"eur": 1.0873, "jpy": 0.0067},
                              "replace_rates", "fee_percent", "fee_fixed", "dispute_fee"}
       The settlement currency (default usd) and rates converting 1 unit of a
       presentment currency into it; rates merge (null removes one) unless
       replace_rates. A currency without a rate settles unconverted. Fees
       default to 0; the dispute fee to 1500 minor units.

Webhooks
  POST /_sandbox/webhooks          {"url", "secret"}  platform endpoint (null url: off)
  POST /_sandbox/webhooks/connect  {"url", "secret"}  Connect endpoint, with its own secret:
       it gets the connected accounts' events (those with "account"), and only those
  POST /_sandbox/events  {"type", "object", "id", "account"} or {"event_id"}
       deliver one event now (a new one, or again one the sandbox already sent)

Out-of-band changes: what happens at Stripe without the service asking
  POST /_sandbox/transfers/{id}/reverse  {"amount", "metadata"}
  POST /_sandbox/refunds/{id}/status     {"status", "failure_reason"}
  POST /_sandbox/refunds/{id}/fail       {"failure_reason": "expired_or_canceled_card"}
       a (succeeded or pending) refund fails: money back to the charge and balance,
       refund.failed, refund.updated and charge.refund.updated
  POST /_sandbox/disputes  {"charge", "amount", "reason", "due_by", "inquiry", "metadata"}
       open a chargeback (funds withdrawn at once) or, with inquiry, an inquiry
  POST /_sandbox/disputes/{id}/advance  {"status"}
       under_review | won | lost | warning_under_review | warning_closed | needs_response
  POST /_sandbox/accounts/{id}/capabilities/transfers
                                         {"status", "disabled_reason", "requirements"}
       active | inactive | pending; emits account.updated and capability.updated
  POST /_sandbox/accounts/{id}/deauthorize   emits account.application.deauthorized
  POST /_sandbox/accounts/{id}/payout   {"amount", "currency", "failure_code"}
       pay out of its balance: all of it by default (an automatic payout, whose balance
       transactions GET /v1/balance_transactions?payout= lists), or part of it (manual);
       payout.created then payout.paid, or payout.failed with failure_code
       (account_closed, account_frozen, could_not_process, insufficient_funds, no_account)
  POST /_sandbox/accounts/{id}/adjustment  {"amount" (signed), "currency"}
       money on the account that no transfer explains (an adjustment)
  GET  /_sandbox/accounts/{id}/balance  its available balance, as Stripe's balance object
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from .errors import ControlError

_ID = None  # a path segment that is an object id


def _integer(payload: dict[str, Any], name: str, *, required: bool = False) -> int | None:
    value = payload.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ControlError(f"{name} must be a positive integer, got {value!r}")
    return value


def _string(payload: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = payload.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ControlError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _strings(payload: dict[str, Any], name: str) -> list[str] | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ControlError(f"{name} must be a list of strings, got {value!r}")
    return value


def _metadata(payload: dict[str, Any]) -> dict[str, str]:
    value = payload.get("metadata") or {}
    if not isinstance(value, dict):
        raise ControlError("metadata must be an object")
    return {str(key): str(item) for key, item in value.items()}


def _settlement(sandbox, ids, payload):
    return sandbox.read(lambda store: copy.deepcopy(store.settlement))


def _set_settlement(sandbox, ids, payload):
    return sandbox.mutate(lambda store, ctx: store.configure_settlement(payload, ctx))


def _fail_refund(sandbox, ids, payload):
    reason = _string(payload, "failure_reason")
    return sandbox.mutate(lambda store, ctx: store.fail_refund(ids[0], reason, ctx))


def _open_dispute(sandbox, ids, payload):
    charge = _string(payload, "charge", required=True)
    spec = {
        "amount": _integer(payload, "amount"),
        "reason": _string(payload, "reason"),
        "due_by": _integer(payload, "due_by"),
        "inquiry": bool(payload.get("inquiry", False)),
        "metadata": _metadata(payload),
    }
    return sandbox.mutate(lambda store, ctx: store.open_dispute(charge, spec, ctx))


def _advance_dispute(sandbox, ids, payload):
    status = _string(payload, "status", required=True)
    return sandbox.mutate(lambda store, ctx: store.advance_dispute(ids[0], status, ctx))


def _set_transfers_capability(sandbox, ids, payload):
    status = _string(payload, "status", required=True)
    reason = _string(payload, "disabled_reason")
    fields = _strings(payload, "requirements")
    return sandbox.mutate(
        lambda store, ctx: store.set_transfers_capability(ids[0], status, reason, fields, ctx)
    )


def _deauthorize(sandbox, ids, payload):
    return sandbox.mutate(lambda store, ctx: store.deauthorize_account(ids[0], ctx))


def _currency(payload: dict[str, Any]) -> str | None:
    currency = _string(payload, "currency")
    if currency is not None and not re.fullmatch(r"[A-Za-z]{3}", currency):
        raise ControlError(f"currency must be a three-letter code, got {currency!r}")
    return currency.lower() if currency else None


def _payout(sandbox, ids, payload):
    amount = _integer(payload, "amount")
    chosen = _currency(payload)
    failure_code = _string(payload, "failure_code")
    return sandbox.mutate(
        lambda store, ctx: store.simulate_payout(
            ids[0], amount, chosen, ctx, failure_code=failure_code
        )
    )


def _adjustment(sandbox, ids, payload):
    amount = payload.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
        raise ControlError(f"amount must be a non-zero integer, got {amount!r}")
    chosen = _currency(payload)
    return sandbox.mutate(lambda store, ctx: store.adjust_account(ids[0], amount, chosen, ctx))


def _account_balance(sandbox, ids, payload):
    return sandbox.read(lambda store: store.account_balance(ids[0]))


def _connect_webhooks(sandbox, ids, payload):
    return sandbox.configure_connect_webhooks(payload)


def _forget_idempotency_keys(sandbox, ids, payload):
    return sandbox.forget_idempotency_keys()


def _object(sandbox, ids, payload):
    """The page the service's admin links to for a Stripe id, in place of the Dashboard."""
    object_id = ids[0]
    found = sandbox.read(lambda store: _find(store, object_id))
    if found is None:
        raise ControlError(f"no object {object_id!r}", status=404)
    return found


def _find(store, object_id: str) -> dict[str, Any] | None:
    # Accounts and events are not among the objects the API expands; the rest are.
    tables = {"acct": store.accounts, "evt": store.events}
    table = tables.get(object_id.split("_", 1)[0])
    if table is None:
        return store._lookup(object_id)
    found = table.get(object_id)
    return copy.deepcopy(found) if found is not None else None


Handler = Callable[[Any, tuple[str, ...], dict[str, Any]], Any]
ROUTES: list[tuple[str, tuple[str | None, ...], Handler]] = [
    ("GET", ("settlement",), _settlement),
    ("POST", ("settlement",), _set_settlement),
    ("POST", ("refunds", _ID, "fail"), _fail_refund),
    ("POST", ("disputes",), _open_dispute),
    ("POST", ("disputes", _ID, "advance"), _advance_dispute),
    ("POST", ("accounts", _ID, "capabilities", "transfers"), _set_transfers_capability),
    ("POST", ("accounts", _ID, "deauthorize"), _deauthorize),
    ("POST", ("accounts", _ID, "payout"), _payout),
    ("POST", ("accounts", _ID, "adjustment"), _adjustment),
    ("GET", ("accounts", _ID, "balance"), _account_balance),
    ("POST", ("webhooks", "connect"), _connect_webhooks),
    ("POST", ("idempotency", "forget"), _forget_idempotency_keys),
    ("GET", ("objects", _ID), _object),
]


def dispatch(sandbox, method: str, parts: list[str], payload: dict[str, Any]):
    """Run the endpoint ``parts`` names: ``(True, result)``, or ``(False, None)`` if none does."""
    for route_method, pattern, handler in ROUTES:
        if route_method != method or len(pattern) != len(parts):
            continue
        pairs = list(zip(pattern, parts, strict=True))
        if all(segment is _ID or segment == part for segment, part in pairs):
            ids = tuple(part for segment, part in pairs if segment is _ID)
            return True, handler(sandbox, ids, payload)
    return False, None
