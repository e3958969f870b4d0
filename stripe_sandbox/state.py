"""The in-memory Stripe objects and the operations that change them.

``Store`` is deliberately not thread-safe: the ``Sandbox`` calls it only while
holding its single lock, which keeps every operation atomic (a reversal can
never observe a half-updated transfer) without per-object locking. Operations
check everything that can fail before they change anything, so a refused
request leaves no trace.

Objects are kept in Stripe's shape and copied on the way out, so a response
stored for idempotent replay never changes when the object changes later.

The Store is assembled from parts: money at rest (``balances``), disputes
(``disputes``), connected accounts' capabilities and deauthorization
(``connect``); the ``ledger`` view lives in ``ledger``. ``dump``/``restore``
turn the whole store into JSON and back for ``--state-file``.
"""

from __future__ import annotations

import copy
import secrets
from dataclasses import dataclass
from typing import Any

from .balances import BalancesMixin, default_settlement
from .common import changed_attributes, new_id, snapshot_fields
from .common import now as _now
from .connect import ConnectMixin, requirements
from .disputes import DisputesMixin
from .errors import account_access_denied, invalid_request, resource_missing
from .forms import Params
from .ledger import build_ledger
from .money import format_money as _money

API_VERSION = "2024-06-20"
REVERSALS_EMBEDDED = 10  # Stripe embeds only the most recent reversals in a transfer.
REFUND_STATUSES = ("pending", "succeeded", "failed", "canceled")
REFUND_FAILURE_REASONS = (
    "lost_or_stolen_card",
    "expired_or_canceled_card",
    "charge_for_pending_refund_disputed",
    "insufficient_funds",
    "declined",
    "merchant_request",
    "unknown",
)
# Fields that name another object and can be expanded; the object is found by its
# id prefix (``source`` on a balance transaction can be any of them).
_EXPANDABLE = frozenset(
    {
        "balance_transaction",
        "charge",
        "failure_balance_transaction",
        "latest_charge",
        "payment_intent",
        "source",
    }
)
_TABLE_BY_PREFIX = {
    "ch": "charges",
    "dp": "disputes",
    "pi": "payment_intents",
    "po": "payouts",
    "py": "destination_payments",
    "pyr": "destination_payment_refunds",
    "re": "refunds",
    "tr": "transfers",
    "trr": "reversals",
    "txn": "balance_transactions",
}
# What ``dump`` writes and ``restore`` reads back.
PERSISTED = (
    "accounts",
    "payment_intents",
    "charges",
    "refunds",
    "transfers",
    "reversals",
    "reversals_by_transfer",
    "events",
    "deliveries",
    "new_refund_status",
    "settlement",
    "balance_transactions",
    "account_debits",
    "txn_owner",
    "balances",
    "disputes",
    "payouts",
    "txn_payout",
    "destination_payments",
    "destination_payment_refunds",
    "deauthorized",
    "application",
)
STATE_VERSION = 1


@dataclass(frozen=True)
class RequestContext:
    """Who asked for a change; copied into the ``request`` field of events.

    ``stripe_account`` is the ``Stripe-Account`` header (a request made as a
    connected account); ``api_key`` is only used to quote it back, masked, in errors.
    """

    request_id: str | None = None
    idempotency_key: str | None = None
    stripe_account: str | None = None
    api_key: str | None = None


class Store(BalancesMixin, DisputesMixin, ConnectMixin):
    def __init__(self) -> None:
        self.accounts: dict[str, dict[str, Any]] = {}
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.transfers: dict[str, dict[str, Any]] = {}
        self.reversals: dict[str, dict[str, Any]] = {}
        self.reversals_by_transfer: dict[str, list[str]] = {}
        self.events: dict[str, dict[str, Any]] = {}
        # Table -> (its size and ends, its ids in creation order, each id's position): lets a
        # page of a big list start at ``starting_after`` without scanning everything before it.
        self._positions: dict[str, tuple[tuple, list[str], dict[str, int]]] = {}
        self.deliveries: list[dict[str, Any]] = []
        # Events created by the current operation, collected by the Sandbox for delivery.
        self.outbox: list[dict[str, Any]] = []
        self.new_refund_status = "succeeded"
        self.settlement = default_settlement()
        self.balance_transactions: dict[str, dict[str, Any]] = {}
        # Balance transactions of connected accounts (payouts) -> the account; the rest
        # are the platform's.
        self.txn_owner: dict[str, str] = {}
        # Connected account -> currency -> available amount.
        self.balances: dict[str, dict[str, int]] = {}
        self.disputes: dict[str, dict[str, Any]] = {}
        self.payouts: dict[str, dict[str, Any]] = {}
        # Balance transaction -> the automatic payout that carried it to the bank.
        self.txn_payout: dict[str, str] = {}
        # Transfers and reversals as their connected accounts see them (py_…, pyr_…).
        self.destination_payments: dict[str, dict[str, Any]] = {}
        self.destination_payment_refunds: dict[str, dict[str, Any]] = {}
        # Transfers made as a connected account to the platform (account debits), by id.
        self.account_debits: dict[str, dict[str, Any]] = {}
        # Accounts the platform was deauthorized from -> when.
        self.deauthorized: dict[str, int] = {}
        self.application = {"id": new_id("ca"), "object": "application", "name": "stripe_sandbox"}

    # -- persistence ----------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        """Everything worth keeping across a restart, as JSON-ready data (not a copy)."""
        return {"version": STATE_VERSION, **{name: getattr(self, name) for name in PERSISTED}}

    @classmethod
    def restore(cls, data: dict[str, Any]) -> Store:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported state version {data.get('version')!r}")
        store = cls()
        for name in PERSISTED:
            if name in data:
                setattr(store, name, data[name])
        return store

    # -- events -------------------------------------------------------------

    def emit(
        self,
        event_type: str,
        obj: dict[str, Any],
        ctx: RequestContext,
        *,
        account: str | None = None,
        previous: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        event = self.build_event(event_type, obj, ctx, account=account, previous=previous)
        self.events[event["id"]] = event
        self.outbox.append(event)
        return event

    @staticmethod
    def build_event(
        event_type: str,
        obj: dict[str, Any],
        ctx: RequestContext,
        event_id: str | None = None,
        *,
        account: str | None = None,
        previous: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Stripe's event envelope; Connect events name their ``account``."""
        event: dict[str, Any] = {"id": event_id or new_id("evt"), "object": "event"}
        if account:
            event["account"] = account
        data: dict[str, Any] = {"object": copy.deepcopy(obj)}
        if previous:
            data["previous_attributes"] = copy.deepcopy(previous)
        event.update(
            api_version=API_VERSION,
            created=_now(),
            type=event_type,
            livemode=False,
            pending_webhooks=1,
            data=data,
            request={"id": ctx.request_id, "idempotency_key": ctx.idempotency_key},
        )
        return event

    def take_outbox(self) -> list[dict[str, Any]]:
        events, self.outbox = self.outbox, []
        return events

    # -- lookups ------------------------------------------------------------

    @staticmethod
    def _get(table: dict[str, dict[str, Any]], noun: str, object_id: str, **kwargs):
        found = table.get(object_id)
        if found is None:
            raise resource_missing(noun, object_id, **kwargs)
        return found

    def render_transfer(self, transfer: dict[str, Any]) -> dict[str, Any]:
        rendered = copy.deepcopy(transfer)
        ids = self.reversals_by_transfer.get(transfer["id"], [])
        newest = [copy.deepcopy(self.reversals[i]) for i in reversed(ids)]
        rendered["reversals"] = {
            "object": "list",
            "data": newest[:REVERSALS_EMBEDDED],
            "has_more": len(newest) > REVERSALS_EMBEDDED,
            "total_count": len(newest),
            "url": f"/v1/transfers/{transfer['id']}/reversals",
        }
        return rendered

    def expand(self, obj: dict[str, Any], paths: list[str]) -> dict[str, Any]:
        """Replace ids by objects along each ``expand[]`` path.

        Paths can go deep: ``latest_charge.balance_transaction`` on a payment intent.
        """
        for path in paths:
            self._expand_path(obj, path.split("."), path)
        return obj

    def _expand_path(self, obj: dict[str, Any], parts: list[str], path: str) -> None:
        field = parts[0]
        if field not in _EXPANDABLE or field not in obj:
            raise invalid_request(f"This property cannot be expanded ({path}).")
        value = obj[field]
        if isinstance(value, str):
            found = self._lookup(value)
            if found is not None:
                obj[field] = value = found
        if isinstance(value, dict) and len(parts) > 1:
            self._expand_path(value, parts[1:], path)

    def _lookup(self, object_id: str) -> dict[str, Any] | None:
        table = _TABLE_BY_PREFIX.get(object_id.split("_", 1)[0])
        found = getattr(self, table).get(object_id) if table else None
        if found is None:
            return None
        return self.render_transfer(found) if table == "transfers" else copy.deepcopy(found)

    # -- accounts -------------------------------------------------------------

    def create_account(self, params: Params, args: tuple[str, ...], ctx: RequestContext):
        account_type = params.choice("type", ("standard", "express", "custom"), "standard")
        country = (params.string("country") or "US").upper()
        account = {
            "id": new_id("acct"),
            "object": "account",
            "business_type": params.string("business_type"),
            "capabilities": {"card_payments": "active", "transfers": "active"},
            "charges_enabled": True,
            "country": country,
            "created": _now(),
            "default_currency": params.currency("default_currency", required=False) or "usd",
            "details_submitted": True,
            "email": params.string("email"),
            "livemode": False,
            "metadata": params.metadata(),
            "payouts_enabled": True,
            "requirements": requirements(),
            "type": account_type,
        }
        self.accounts[account["id"]] = account
        return copy.deepcopy(account)

    def retrieve_account(self, params: Params, args: tuple[str, ...], ctx: RequestContext):
        account = self._get(self.accounts, "account", args[0])
        if account["id"] in self.deauthorized:
            raise account_access_denied(account["id"], ctx.api_key)
        return copy.deepcopy(account)

    # -- payment intents and charges ----------------------------------------

    def create_payment_intent(self, params: Params, args: tuple[str, ...], ctx: RequestContext):
        payment_method = params.string("payment_method")
        intent = {
            "id": new_id("pi"),
            "object": "payment_intent",
            "amount": params.integer("amount", required=True, minimum=1),
            "amount_received": 0,
            "capture_method": "automatic",
            "client_secret": None,
            "created": _now(),
            "currency": params.currency(),
            "customer": params.string("customer"),
            "description": params.string("description"),
            "latest_charge": None,
            "livemode": False,
            "metadata": params.metadata(),
            "payment_method": payment_method,
            "status": "requires_confirmation" if payment_method else "requires_payment_method",
            "transfer_group": params.string("transfer_group"),
        }
        intent["client_secret"] = f"{intent['id']}_secret_{secrets.token_hex(12)}"
        confirm = params.boolean("confirm")
        if confirm and not payment_method:
            # Fail before storing so a rejected create leaves nothing behind.
            self._confirm(intent, None, ctx)
        self.payment_intents[intent["id"]] = intent
        if confirm:
            self._confirm(intent, None, ctx)
        return copy.deepcopy(intent)

    def confirm_payment_intent(self, params: Params, args: tuple[str, ...], ctx: RequestContext):
        intent = self._get(self.payment_intents, "payment_intent", args[0])
        self._confirm(intent, params.string("payment_method"), ctx)
        return copy.deepcopy(intent)

    def _confirm(self, intent: dict[str, Any], payment_method: str | None, ctx: RequestContext):
        if intent["status"] not in ("requires_payment_method", "requires_confirmation"):
            raise invalid_request(
                "You cannot confirm this PaymentIntent because it has a status of "
                f"{intent['status']}. Only a PaymentIntent with one of the following statuses "
                "may be confirmed: requires_confirmation, requires_action, "
                "requires_payment_method.",
                code="payment_intent_unexpected_state",
            )
        payment_method = payment_method or intent["payment_method"]
        if not payment_method:
            raise invalid_request(
                "You cannot confirm this PaymentIntent because it's missing a payment method. "
                "You can either update the PaymentIntent with a payment method and then "
                "confirm it again, or confirm it again directly with a payment method.",
                code="payment_intent_unexpected_state",
            )
        charge = self._new_charge(intent, payment_method)
        self._settle_charge(charge)
        self.charges[charge["id"]] = charge
        intent.update(
            payment_method=payment_method,
            status="succeeded",
            amount_received=intent["amount"],
            latest_charge=charge["id"],
        )
        self.emit("payment_intent.succeeded", intent, ctx)

    @staticmethod
    def _new_charge(intent: dict[str, Any], payment_method: str) -> dict[str, Any]:
        return {
            "id": new_id("ch"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": intent["amount"],
            "amount_refunded": 0,
            "balance_transaction": None,
            "captured": True,
            "created": _now(),
            "currency": intent["currency"],
            "description": intent["description"],
            "disputed": False,
            "livemode": False,
            "metadata": copy.deepcopy(intent["metadata"]),
            "paid": True,
            "payment_intent": intent["id"],
            "payment_method": payment_method,
            "refunded": False,
            "status": "succeeded",
            "transfer_group": intent["transfer_group"],
        }

    def retrieve_payment_intent(self, params: Params, args: tuple[str, ...], ctx: RequestContext):
        intent = copy.deepcopy(self._get(self.payment_intents, "payment_intent", args[0]))
        return self.expand(intent, params.string_list("expand"))

    def retrieve_charge(self, params: Params, args: tuple[str, ...], ctx: RequestContext):
        charge = copy.deepcopy(self._get(self.charges, "charge", args[0]))
        return self.expand(charge, params.string_list("expand"))

    # -- refunds ------------------------------------------------------------

    def create_refund(self, params: Params, args: tuple[str, ...], ctx: RequestContext):
        charge = self._refund_target(params)
        self._check_refundable(charge)
        currency = charge["currency"]
        remaining = charge["amount"] - charge["amount_refunded"]
        if remaining <= 0:
            raise invalid_request(
                f"Charge {charge['id']} has already been refunded.",
                code="charge_already_refunded",
            )
        amount = params.integer("amount", minimum=1)
        if amount is None:
            amount = remaining
        if amount > remaining:
            raise invalid_request(
                f"Refund amount ({_money(amount, currency)}) is greater than unrefunded amount "
                f"on charge ({_money(remaining, currency)})",
                param="amount",
                code="amount_too_large",
            )
        reason = params.choice("reason", ("duplicate", "fraudulent", "requested_by_customer"))
        refund = self._new_refund(charge, amount, reason, params.metadata())
        refund["balance_transaction"] = self._refund_txn(refund)
        self.refunds[refund["id"]] = refund
        self._adjust_refunded(charge, amount)
        self.emit("charge.refunded", charge, ctx)
        self.emit("refund.created", refund, ctx)
        return copy.deepcopy(refund)

    def _new_refund(self, charge, amount: int, reason: str | None, metadata) -> dict[str, Any]:
        return {
            "id": new_id("re"),
            "object": "refund",
            "amount": amount,
            "balance_transaction": None,
            "charge": charge["id"],
            "created": _now(),
            "currency": charge["currency"],
            "failure_reason": None,
            "metadata": metadata,
            "payment_intent": charge["payment_intent"],
            "reason": reason,
            "status": self.new_refund_status,
            "livemode": False,
        }

    def _refund_target(self, params: Params) -> dict[str, Any]:
        intent_id = params.string("payment_intent")
        charge_id = params.string("charge")
        if not intent_id and not charge_id:
            raise invalid_request(
                "One of the following params should be provided for this request: "
                "payment_intent or charge.",
                code="parameter_missing",
            )
        if intent_id:
            intent = self._get(
                self.payment_intents,
                "payment_intent",
                intent_id,
                param="payment_intent",
                status=400,
            )
            if not intent["latest_charge"]:
                raise invalid_request(
                    f"This PaymentIntent ({intent_id}) does not have a successful charge to "
                    "refund.",
                    param="payment_intent",
                    code="charge_not_refundable",
                )
            if charge_id and charge_id != intent["latest_charge"]:
                raise invalid_request(
                    f"The charge {charge_id} does not belong to PaymentIntent {intent_id}.",
                    param="charge",
                )
            charge_id = intent["latest_charge"]
        return self._get(self.charges, "charge", charge_id, param="charge", status=400)

    def _adjust_refunded(self, charge: dict[str, Any], delta: int) -> None:
        charge["amount_refunded"] += delta
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]

    def set_refund_status(
        self,
        refund_id: str,
        status: Any,
        ctx: RequestContext,
        failure_reason: Any = None,
    ) -> dict[str, Any]:
        """Move a refund on (control API); ``failed``/``canceled`` give the money back."""
        refund = self._get(self.refunds, "refund", refund_id)
        if status not in REFUND_STATUSES:
            raise invalid_request(
                f"Invalid status: must be one of {', '.join(REFUND_STATUSES)}", param="status"
            )
        if failure_reason is not None and (
            status != "failed" or failure_reason not in REFUND_FAILURE_REASONS
        ):
            raise invalid_request(
                "failure_reason goes with status failed and must be one of "
                f"{', '.join(REFUND_FAILURE_REASONS)}",
                param="failure_reason",
            )
        previous = refund["status"]
        if previous == status:
            return copy.deepcopy(refund)
        if previous in ("failed", "canceled"):
            raise invalid_request(f"Refund {refund_id} is already {previous}.", param="status")
        before = snapshot_fields(
            refund, ("status", "failure_reason", "failure_balance_transaction")
        )
        if status in ("failed", "canceled"):
            self._undo_refund(refund, status, failure_reason or "declined")
        refund["status"] = status
        changes = changed_attributes(before, refund)
        self.emit("charge.refund.updated", refund, ctx, previous=changes)
        self.emit("refund.updated", refund, ctx, previous=changes)
        if status == "failed":
            self.emit("refund.failed", refund, ctx)
        return copy.deepcopy(refund)

    def _undo_refund(self, refund: dict[str, Any], status: str, failure_reason: str) -> None:
        """A refund that does not go through gives the money back to the charge and balance."""
        self._adjust_refunded(self.charges[refund["charge"]], -refund["amount"])
        restored = self._refund_failure_txn(refund)
        if status == "failed":
            refund["failure_reason"] = failure_reason
            refund["failure_balance_transaction"] = restored

    def fail_refund(self, refund_id: str, failure_reason: Any, ctx: RequestContext):
        """A refund that fails after it succeeded (or while pending) (control API)."""
        refund = self._get(self.refunds, "refund", refund_id)
        if refund["status"] in ("failed", "canceled"):
            raise invalid_request(f"Refund {refund_id} is already {refund['status']}.")
        return self.set_refund_status(refund_id, "failed", ctx, failure_reason or "declined")

    def retrieve_refund(self, params: Params, args: tuple[str, ...], ctx: RequestContext):
        refund = copy.deepcopy(self._get(self.refunds, "refund", args[0]))
        return self.expand(refund, params.string_list("expand"))

    def list_refunds(self, params: Params, args: tuple[str, ...], ctx: RequestContext):
        charge_id = params.string("charge")
        intent_id = params.string("payment_intent")
        created = params.timestamp_range("created")
        items = [
            r
            for r in self.refunds.values()
            if (charge_id is None or r["charge"] == charge_id)
            and (intent_id is None or r["payment_intent"] == intent_id)
            and created(r["created"])
        ]
        return self._page(items, params, "/v1/refunds", "refund", copy.deepcopy)

    # -- transfers and reversals --------------------------------------------

    def create_transfer(self, params: Params, args: tuple[str, ...], ctx: RequestContext):
        if ctx.stripe_account is not None:
            return self.account_debit(params, ctx.stripe_account, ctx)
        amount = params.integer("amount", required=True, minimum=1)
        currency = params.currency()
        destination = params.string("destination", required=True)
        self._check_destination(destination)
        source_transaction = params.string("source_transaction")
        if source_transaction is not None:
            charge = self._get(
                self.charges, "charge", source_transaction, param="source_transaction", status=400
            )
            self._check_source_funds(charge, amount, currency)
        transfer = {
            "id": new_id("tr"),
            "object": "transfer",
            "amount": amount,
            "amount_reversed": 0,
            "balance_transaction": None,
            "created": _now(),
            "currency": currency,
            "description": params.string("description"),
            "destination": destination,
            "destination_payment": new_id("py"),
            "livemode": False,
            "metadata": params.metadata(),
            "reversed": False,
            "source_transaction": source_transaction,
            "source_type": "card",
            "transfer_group": params.string("transfer_group"),
        }
        transfer["balance_transaction"] = self._transfer_txn(transfer)
        self.transfers[transfer["id"]] = transfer
        self.reversals_by_transfer[transfer["id"]] = []
        rendered = self.render_transfer(transfer)
        self.emit("transfer.created", rendered, ctx)
        return rendered

    def retrieve_transfer(self, params: Params, args: tuple[str, ...], ctx: RequestContext):
        return self.render_transfer(self._get(self.transfers, "transfer", args[0]))

    def list_transfers(self, params: Params, args: tuple[str, ...], ctx: RequestContext):
        if ctx.stripe_account is not None:
            return self.list_account_debits(params, ctx.stripe_account)
        group = params.string("transfer_group")
        destination = params.string("destination")
        created = params.timestamp_range("created")

        def matches(t: dict[str, Any]) -> bool:
            return (
                (group is None or t["transfer_group"] == group)
                and (destination is None or t["destination"] == destination)
                and created(t["created"])
            )

        return self._page_newest_first(
            "transfers", matches, params, "/v1/transfers", "transfer", self.render_transfer
        )

    def create_reversal(self, params: Params, args: tuple[str, ...], ctx: RequestContext):
        return self.reverse(
            args[0],
            params.integer("amount", minimum=1),
            params.metadata(),
            params.string("description"),
            ctx,
        )

    def reverse(
        self,
        transfer_id: str,
        amount: int | None,
        metadata: dict[str, str],
        description: str | None,
        ctx: RequestContext,
    ) -> dict[str, Any]:
        transfer = self._get(self.transfers, "transfer", transfer_id)
        remaining = transfer["amount"] - transfer["amount_reversed"]
        if remaining <= 0:
            raise invalid_request(f"The transfer {transfer_id} is already fully reversed.")
        if amount is None:
            amount = remaining
        if amount > remaining:
            raise invalid_request(
                f"Amount ({amount}) is greater than the unreversed amount ({remaining}) on the "
                "transfer.",
                param="amount",
            )
        self._check_reversal_funds(transfer, amount)
        reversal = _new_reversal(transfer, amount, metadata, description)
        reversal["balance_transaction"] = self._reversal_txn(reversal, transfer["destination"])
        self.reversals[reversal["id"]] = reversal
        self.reversals_by_transfer[transfer_id].append(reversal["id"])
        transfer["amount_reversed"] += amount
        transfer["reversed"] = transfer["amount_reversed"] >= transfer["amount"]
        self.emit("transfer.reversed", self.render_transfer(transfer), ctx)
        return copy.deepcopy(reversal)

    def list_reversals(self, params: Params, args: tuple[str, ...], ctx: RequestContext):
        transfer = self._get(self.transfers, "transfer", args[0])
        items = [self.reversals[i] for i in self.reversals_by_transfer[transfer["id"]]]
        url = f"/v1/transfers/{transfer['id']}/reversals"
        return self._page(items, params, url, "transfer_reversal", copy.deepcopy)

    def retrieve_reversal(self, params: Params, args: tuple[str, ...], ctx: RequestContext):
        transfer = self._get(self.transfers, "transfer", args[0])
        reversal = self.reversals.get(args[1])
        if reversal is None or reversal["transfer"] != transfer["id"]:
            raise resource_missing("transfer_reversal", args[1])
        return copy.deepcopy(reversal)

    # -- events -------------------------------------------------------------

    def retrieve_event(self, params: Params, args: tuple[str, ...], ctx: RequestContext):
        return copy.deepcopy(self._get(self.events, "event", args[0]))

    def list_events(self, params: Params, args: tuple[str, ...], ctx: RequestContext):
        """The account's events, newest first: the platform's own unless ``Stripe-Account``
        names a connected account; by ``type`` and ``created``, in pages."""
        event_type = params.string("type")
        created = params.timestamp_range("created")

        def matches(e: dict[str, Any]) -> bool:
            return (
                e.get("account") == ctx.stripe_account
                and (event_type is None or e["type"] == event_type)
                and created(e["created"])
            )

        return self._page_newest_first(
            "events", matches, params, "/v1/events", "event", copy.deepcopy
        )

    # -- shared ---------------------------------------------------------------

    def _positions_of(self, table_name: str) -> tuple[list[str], dict[str, int]]:
        table = getattr(self, table_name)
        key = (len(table), next(iter(table), None), next(reversed(table), None))
        cached = self._positions.get(table_name)
        if cached is None or cached[0] != key:
            ids = list(table)
            cached = (key, ids, {object_id: index for index, object_id in enumerate(ids)})
            self._positions[table_name] = cached
        return cached[1], cached[2]

    def _page_newest_first(self, table_name, matches, params, url, noun, render):
        """A page of the table's objects that ``matches``, newest first, as ``_page`` gives it,
        walking back from ``starting_after`` instead of filtering the whole table for each page
        (a check lists a day of transfers a hundred at a time)."""
        if params.string("ending_before") is not None:
            items = [item for item in getattr(self, table_name).values() if matches(item)]
            return self._page(items, params, url, noun, render)
        limit = self._limit(params)
        table = getattr(self, table_name)
        ids, position = self._positions_of(table_name)
        index = len(ids) - 1
        after = params.string("starting_after")
        if after is not None:
            if after not in position:
                raise resource_missing(noun, after, param="starting_after", status=400)
            index = position[after] - 1
        page: list[dict[str, Any]] = []
        while index >= 0 and len(page) <= limit:
            item = table[ids[index]]
            if matches(item):
                page.append(item)
            index -= 1
        return {
            "object": "list",
            "data": [render(item) for item in page[:limit]],
            "has_more": len(page) > limit,
            "url": url,
        }

    @staticmethod
    def _limit(params: Params) -> int:
        limit = params.integer("limit", minimum=1)
        if limit is None:
            limit = 10
        if limit > 100:
            raise invalid_request(
                "This value must be less than or equal to 100.",
                param="limit",
                code="parameter_invalid_integer",
            )
        return limit

    @staticmethod
    def _page(items, params: Params, url: str, noun: str, render) -> dict[str, Any]:
        limit = Store._limit(params)
        newest = list(reversed(items))
        position = {item["id"]: index for index, item in enumerate(newest)}
        after = params.string("starting_after")
        before = params.string("ending_before")
        if after is not None:
            if after not in position:
                raise resource_missing(noun, after, param="starting_after", status=400)
            rest = newest[position[after] + 1 :]
            page, has_more = rest[:limit], len(rest) > limit
        elif before is not None:
            if before not in position:
                raise resource_missing(noun, before, param="ending_before", status=400)
            rest = newest[: position[before]]
            page, has_more = rest[-limit:], len(rest) > limit
        else:
            page, has_more = newest[:limit], len(newest) > limit
        return {
            "object": "list",
            "data": [render(item) for item in page],
            "has_more": has_more,
            "url": url,
        }

    # -- inspection (control API) -------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(
            {
                "accounts": list(self.accounts.values()),
                "payment_intents": list(self.payment_intents.values()),
                "charges": list(self.charges.values()),
                "refunds": list(self.refunds.values()),
                "transfers": [self.render_transfer(t) for t in self.transfers.values()],
                "transfer_reversals": list(self.reversals.values()),
                "balance_transactions": list(self.balance_transactions.values()),
                "disputes": list(self.disputes.values()),
                "payouts": list(self.payouts.values()),
                "balances": self.balances,
                "account_debits": list(self.account_debits.values()),
                "deauthorized": sorted(self.deauthorized),
                "events": list(self.events.values()),
                "deliveries": self.deliveries,
                "config": {"new_refund_status": self.new_refund_status},
            }
        )

    def ledger(self) -> dict[str, Any]:
        return build_ledger(self)


def _new_reversal(transfer, amount: int, metadata, description: str | None) -> dict[str, Any]:
    return {
        "id": new_id("trr"),
        "object": "transfer_reversal",
        "amount": amount,
        "balance_transaction": None,
        "created": _now(),
        "currency": transfer["currency"],
        "description": description,
        "destination_payment_refund": new_id("pyr"),
        "livemode": False,
        "metadata": metadata,
        "source_refund": None,
        "transfer": transfer["id"],
    }


# Operation name -> Store method. The names are what fault injection, scripts and
# the call log refer to.
OPERATIONS = {
    "accounts.create": Store.create_account,
    "accounts.retrieve": Store.retrieve_account,
    "payment_intents.create": Store.create_payment_intent,
    "payment_intents.confirm": Store.confirm_payment_intent,
    "payment_intents.retrieve": Store.retrieve_payment_intent,
    "charges.retrieve": Store.retrieve_charge,
    "refunds.create": Store.create_refund,
    "refunds.retrieve": Store.retrieve_refund,
    "refunds.list": Store.list_refunds,
    "transfers.create": Store.create_transfer,
    "transfers.retrieve": Store.retrieve_transfer,
    "transfers.list": Store.list_transfers,
    "reversals.create": Store.create_reversal,
    "reversals.list": Store.list_reversals,
    "reversals.retrieve": Store.retrieve_reversal,
    "events.retrieve": Store.retrieve_event,
    "events.list": Store.list_events,
    "balance.retrieve": Store.retrieve_balance,
    "balance_transactions.retrieve": Store.retrieve_balance_transaction,
    "balance_transactions.list": Store.list_balance_transactions,
    "disputes.retrieve": Store.retrieve_dispute,
    "disputes.list": Store.list_disputes,
}
