"""Money at rest: the platform's settlement currency and balance transactions, and the
available balances of connected accounts.

Every movement of money gets a Stripe balance transaction (``txn_…``):

* a succeeded charge: ``type: "charge"``, its amount converted to the settlement
  currency at the rate configured when it was confirmed, less the processing fee
  (a currency with no configured rate settles as it is, unconverted, as for a
  platform with a bank account in that currency);
* a refund: ``type: "refund"``, negative, at the rate configured when it was made
  (so it can differ from its charge's rate); a failed or canceled refund gets a
  ``refund_failure`` transaction that gives back exactly what the refund took;
* a dispute: ``type: "adjustment"``, negative plus the dispute fee when funds are
  withdrawn, positive (fee returned) when they are reinstated;
* a transfer: ``type: "transfer"``, negative; a reversal: ``type: "transfer_refund"``;
* a payout from a connected account: ``type: "payout"``, owned by that account;
  a failed one gives its amount back with a ``payout_failure`` transaction.

A transfer also lands on its connected account, as Stripe shows it there: a
``payment`` (``py_…``, the transfer's ``destination_payment``, whose
``source_transfer`` names the transfer) with a ``type: "payment"`` balance
transaction; a reversal takes it back as a ``payment_refund`` (``pyr_…``, the
reversal's ``destination_payment_refund``, whose ``charge`` is the ``py_…``).
These transactions, and the account's manual adjustments, are owned by the
account. A payout of everything available (the default) carries every one of
them not paid out yet, as Stripe's automatic payouts do, so
``GET /v1/balance_transactions?payout=po_…`` (as the account) lists what is in
it; a payout of part of the balance is a manual one, which Stripe cannot list.

Everything is ``available`` at once; the sandbox has no pending period. The
platform's balance is the sum of the ``net`` of its own transactions. Unlike
Stripe, a transfer without ``source_transaction`` is not checked against it (the
platform balance may go negative), so flows that never model pay-ins still work;
a transfer with ``source_transaction`` must be in the currency its charge settled
in and can't take more than what is left of that charge's net. A connected
account's available balance, per currency, is credited by transfers and debited
by reversals, payouts and account debits; a reversal, payout or debit larger than
it is refused.

An account debit is Stripe's ``POST /v1/transfers`` made as the connected account
(``Stripe-Account: acct_…``) with the platform (``PLATFORM_ACCOUNT_ID``) as its
destination: the account's balance goes down (a ``transfer`` transaction it
owns), the platform's goes up (a ``payment`` transaction). It is refused, as
Stripe refuses it, for an account the platform may not debit (a Standard account,
which carries its own negative balances) and for more than the account has.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from .common import PLATFORM_ACCOUNT_ID, new_id, now
from .errors import ControlError, StripeApiError, invalid_request, resource_missing
from .money import convert, format_money, percentage

DEFAULT_SETTLEMENT: dict[str, Any] = {
    "currency": "usd",
    "rates": {},
    "fee_percent": 0,
    "fee_fixed": 0,
    "dispute_fee": 1500,
}
_SETTLEMENT_KEYS = frozenset(DEFAULT_SETTLEMENT) | {"replace_rates"}

# What the sandbox records -> Stripe's balance transaction (type, reporting_category).
TXN_KINDS = {
    "charge": ("charge", "charge"),
    "refund": ("refund", "refund"),
    "refund_failure": ("refund_failure", "refund_failure"),
    "dispute": ("adjustment", "dispute"),
    "dispute_reversal": ("adjustment", "dispute_reversal"),
    "transfer": ("transfer", "transfer"),
    "transfer_refund": ("transfer_refund", "transfer_reversal"),
    "payout": ("payout", "payout"),
    "payout_failure": ("payout_failure", "payout_reversal"),
    "payment": ("payment", "charge"),
    "payment_refund": ("payment_refund", "refund"),
    "adjustment": ("adjustment", "other_adjustment"),
}

# Stripe's failure codes for payouts the sandbox can fail, with Stripe's wording.
PAYOUT_FAILURES = {
    "account_closed": "The bank account has been closed.",
    "account_frozen": "The bank account has been frozen.",
    "could_not_process": "The bank could not process this payout.",
    "insufficient_funds": "Your Stripe account has insufficient funds to cover the payout.",
    "no_account": "The bank account details on file are probably incorrect. No bank account "
    "could be located with those details.",
}
MANUAL_PAYOUT_LISTING = (
    "Balance transaction history can only be filtered on automatic transfers, not manual."
)

# Stripe's answer to a payout larger than the available balance.
PAYOUT_INSUFFICIENT = (
    "You have insufficient funds in your Stripe account for this transfer. Your card balance "
    "is too low. You can use the /v1/balance endpoint to view your Stripe balance (for more "
    "details, see stripe.com/docs/api#balance)."
)


def default_settlement() -> dict[str, Any]:
    return copy.deepcopy(DEFAULT_SETTLEMENT)


def _currency(value: Any, name: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z]{3}", value):
        raise ControlError(f"{name} must be a three-letter currency code, got {value!r}")
    return value.lower()


def _number(name: str, value: Any, *, integer: bool, maximum: float | None = None):
    kinds = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < 0:
        kind = "integer" if integer else "number"
        raise ControlError(f"{name} must be a non-negative {kind}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ControlError(f"{name} must be at most {maximum}, got {value!r}")
    return value


def _merged_rates(rates: dict[str, float], changes: Any) -> dict[str, float]:
    if not isinstance(changes, dict):
        raise ControlError("rates must be an object of currency -> rate")
    merged = dict(rates)
    for key, rate in changes.items():
        currency = _currency(key, "a rates key")
        if rate is None:
            merged.pop(currency, None)
        elif isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
            raise ControlError(f"the rate for {currency} must be a positive number, got {rate!r}")
        else:
            merged[currency] = float(rate)
    return merged


def _balance_object(amounts: dict[str, int], default: str, *, platform: bool) -> dict[str, Any]:
    currencies = sorted(amounts) or [default]
    funds = [(c, amounts.get(c, 0)) for c in currencies]
    balance: dict[str, Any] = {
        "object": "balance",
        "available": [{"amount": a, "currency": c, "source_types": {"card": a}} for c, a in funds],
        "livemode": False,
        "pending": [{"amount": 0, "currency": c, "source_types": {"card": 0}} for c in currencies],
    }
    if platform:
        balance["connect_reserved"] = [{"amount": 0, "currency": c} for c in currencies]
    return balance


def _fee_detail(fee: int, currency: str, label: str | None) -> dict[str, Any]:
    return {
        "amount": fee,
        "application": None,
        "currency": currency,
        "description": label,
        "type": "stripe_fee",
    }


def _new_payout(amount: int, currency: str, *, automatic: bool) -> dict[str, Any]:
    created = now()
    return {
        "id": new_id("po"),
        "object": "payout",
        "amount": amount,
        "arrival_date": created,
        "automatic": automatic,
        "balance_transaction": None,
        "created": created,
        "currency": currency,
        "description": "STRIPE PAYOUT",
        "destination": None,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "livemode": False,
        "metadata": {},
        "method": "standard",
        "original_payout": None,
        "reversed_by": None,
        "source_type": "card",
        "statement_descriptor": None,
        "status": "pending",
        "type": "bank_account",
    }


class BalancesMixin:
    """Settlement, balance transactions and balances; mixed into ``Store``."""

    # -- settlement configuration (control API) -------------------------------

    def configure_settlement(self, payload: dict[str, Any], ctx) -> dict[str, Any]:
        unknown = set(payload) - _SETTLEMENT_KEYS
        if unknown:
            raise ControlError(f"unknown settlement keys: {', '.join(sorted(unknown))}")
        updated = copy.deepcopy(self.settlement)
        if payload.get("currency") is not None:
            updated["currency"] = _currency(payload["currency"], "currency")
        if payload.get("rates") is not None:
            base = {} if payload.get("replace_rates") else updated["rates"]
            updated["rates"] = _merged_rates(base, payload["rates"])
        for name, integer, maximum in (
            ("fee_percent", False, 100),
            ("fee_fixed", True, None),
            ("dispute_fee", True, None),
        ):
            if payload.get(name) is not None:
                updated[name] = _number(name, payload[name], integer=integer, maximum=maximum)
        updated["rates"].pop(updated["currency"], None)
        self.settlement = updated
        return copy.deepcopy(updated)

    def _to_settlement(self, amount: int, currency: str) -> tuple[int, str, float | None]:
        """``amount`` as it settles today: (amount, currency, exchange rate or None).

        A currency with a configured rate is converted to the settlement currency.
        One without settles as it is, with no conversion: what Stripe does for a
        platform that has a bank account in that currency.
        """
        rate = self.settlement["rates"].get(currency)
        if currency == self.settlement["currency"] or rate is None:
            return amount, currency, None
        settlement = self.settlement["currency"]
        return convert(amount, currency, rate, settlement), settlement, rate

    # -- balance transactions -------------------------------------------------

    def _txn(
        self,
        kind: str,
        source: str,
        amount: int,
        currency: str,
        *,
        rate: float | None = None,
        fee: int = 0,
        fee_label: str | None = None,
        description: str | None = None,
        owner: str | None = None,
    ) -> dict[str, Any]:
        txn_type, category = TXN_KINDS[kind]
        created = now()
        details = [_fee_detail(fee, currency, fee_label)] if fee else []
        txn = {
            "id": new_id("txn"),
            "object": "balance_transaction",
            "amount": amount,
            "available_on": created,
            "created": created,
            "currency": currency,
            "description": description,
            "exchange_rate": rate,
            "fee": fee,
            "fee_details": details,
            "net": amount - fee,
            "reporting_category": category,
            "source": source,
            "status": "available",
            "type": txn_type,
        }
        self.balance_transactions[txn["id"]] = txn
        if owner is not None:
            self.txn_owner[txn["id"]] = owner
        return txn

    def _settle_charge(self, charge: dict[str, Any]) -> None:
        amount, currency, rate = self._to_settlement(charge["amount"], charge["currency"])
        fee = 0
        if amount:
            fee = percentage(amount, self.settlement["fee_percent"]) + self.settlement["fee_fixed"]
        txn = self._txn(
            "charge",
            charge["id"],
            amount,
            currency,
            rate=rate,
            fee=fee,
            fee_label="Stripe processing fees",
            description=charge["description"],
        )
        charge["balance_transaction"] = txn["id"]

    def _refund_txn(self, refund: dict[str, Any]) -> str:
        amount, currency, rate = self._to_settlement(refund["amount"], refund["currency"])
        return self._txn("refund", refund["id"], -amount, currency, rate=rate)["id"]

    def _refund_failure_txn(self, refund: dict[str, Any]) -> str:
        """Give back exactly what the refund's own balance transaction took."""
        taken = self.balance_transactions[refund["balance_transaction"]]
        return self._txn(
            "refund_failure",
            refund["id"],
            -taken["amount"],
            taken["currency"],
            rate=taken["exchange_rate"],
        )["id"]

    def retrieve_balance_transaction(self, params, args: tuple[str, ...], ctx):
        txn = self._get(self.balance_transactions, "balance_transaction", args[0])
        # A connected account's transactions are visible only with its Stripe-Account header.
        if self.txn_owner.get(txn["id"]) != ctx.stripe_account:
            raise resource_missing("balance_transaction", args[0])
        return self.expand(copy.deepcopy(txn), params.string_list("expand"))

    # -- transfers' money -----------------------------------------------------

    def _check_source_funds(self, charge: dict[str, Any], amount: int, currency: str) -> None:
        """A transfer with ``source_transaction`` draws on that charge's settled funds."""
        txn = self.balance_transactions[charge["balance_transaction"]]
        if currency != txn["currency"]:
            raise invalid_request(
                f"The currency of source_transaction's balance transaction ({txn['currency']}) "
                f"must be the same as the transfer currency ({currency})",
                param="source_transaction",
            )
        used = sum(
            t["amount"] for t in self.transfers.values() if t["source_transaction"] == charge["id"]
        )
        left = max(txn["net"] - used, 0)
        if amount > left:
            raise invalid_request(
                f"Insufficient funds in source transaction {charge['id']}: the transfer amount "
                f"({format_money(amount, currency)}) is greater than what is left of the "
                f"charge's funds ({format_money(left, currency)}).",
                param="amount",
                code="balance_insufficient",
            )

    def _transfer_txn(self, transfer: dict[str, Any]) -> str:
        self._credit(transfer["destination"], transfer["currency"], transfer["amount"])
        txn = self._txn("transfer", transfer["id"], -transfer["amount"], transfer["currency"])
        self._destination_payment(transfer)
        return txn["id"]

    def _destination_payment(self, transfer: dict[str, Any]) -> None:
        """The transfer as the connected account sees it: a ``py_…`` payment."""
        payment_id, account = transfer["destination_payment"], transfer["destination"]
        txn = self._txn(
            "payment", payment_id, transfer["amount"], transfer["currency"], owner=account
        )
        self.destination_payments[payment_id] = {
            "id": payment_id,
            "object": "charge",
            "amount": transfer["amount"],
            "amount_refunded": 0,
            "balance_transaction": txn["id"],
            "created": txn["created"],
            "currency": transfer["currency"],
            "paid": True,
            "source_transfer": transfer["id"],
            "status": "succeeded",
        }

    def _check_reversal_funds(self, transfer: dict[str, Any], amount: int) -> None:
        account, currency = transfer["destination"], transfer["currency"]
        available = self.available(account, currency)
        if amount > available:
            raise invalid_request(
                f"Insufficient funds in the connected account {account} to cover this reversal: "
                f"its available balance is {format_money(available, currency)} and the "
                f"reversal needs {format_money(amount, currency)}.",
                code="balance_insufficient",
            )

    def _reversal_txn(self, reversal: dict[str, Any], destination: str) -> str:
        self._credit(destination, reversal["currency"], -reversal["amount"])
        txn = self._txn("transfer_refund", reversal["id"], reversal["amount"], reversal["currency"])
        self._destination_payment_refund(reversal, destination)
        return txn["id"]

    def _destination_payment_refund(self, reversal: dict[str, Any], destination: str) -> None:
        """The reversal as the connected account sees it: a ``pyr_…`` refund of its payment."""
        refund_id = reversal["destination_payment_refund"]
        payment_id = self.transfers[reversal["transfer"]]["destination_payment"]
        txn = self._txn(
            "payment_refund",
            refund_id,
            -reversal["amount"],
            reversal["currency"],
            owner=destination,
        )
        payment = self.destination_payments.get(payment_id)
        if payment is not None:
            payment["amount_refunded"] += reversal["amount"]
        self.destination_payment_refunds[refund_id] = {
            "id": refund_id,
            "object": "refund",
            "amount": reversal["amount"],
            "balance_transaction": txn["id"],
            "charge": payment_id,
            "created": txn["created"],
            "currency": reversal["currency"],
            "status": "succeeded",
        }

    # -- account debits -------------------------------------------------------

    def account_debit(self, params, account_id: str, ctx) -> dict[str, Any]:
        """``POST /v1/transfers`` as a connected account, to the platform: a debit of it."""
        amount = params.integer("amount", required=True, minimum=1)
        currency = params.currency()
        destination = params.string("destination", required=True)
        if destination != PLATFORM_ACCOUNT_ID:
            raise invalid_request(
                "A transfer made as a connected account can only go to its platform "
                f"({PLATFORM_ACCOUNT_ID}).",
                param="destination",
                code="transfers_not_allowed",
            )
        account = self.accounts[account_id]
        if account["type"] == "standard":
            raise invalid_request(
                f"The platform cannot debit {account_id}: account debits need an Express or "
                "Custom account whose negative balances the platform is liable for.",
                code="transfers_not_allowed",
            )
        available = self.available(account_id, currency)
        if amount > available:
            raise invalid_request(
                f"Insufficient funds in the connected account {account_id} to cover this "
                f"debit: its available balance is {format_money(available, currency)} and "
                f"the debit needs {format_money(amount, currency)}.",
                code="balance_insufficient",
            )
        self._credit(account_id, currency, -amount)
        transfer = {
            "id": new_id("tr"),
            "object": "transfer",
            "amount": amount,
            "amount_reversed": 0,
            "created": now(),
            "currency": currency,
            "description": params.string("description"),
            "destination": PLATFORM_ACCOUNT_ID,
            "destination_payment": new_id("py"),
            "livemode": False,
            "metadata": params.metadata(),
            "reversed": False,
            "source_transaction": None,
            "source_type": "card",
            "transfer_group": params.string("transfer_group"),
        }
        debit_txn = self._txn("transfer", transfer["id"], -amount, currency, owner=account_id)
        transfer["balance_transaction"] = debit_txn["id"]
        self._txn("payment", transfer["destination_payment"], amount, currency)
        self.account_debits[transfer["id"]] = {**transfer, "source_account": account_id}
        return copy.deepcopy(transfer)

    def list_account_debits(self, params, account_id: str) -> dict[str, Any]:
        """``GET /v1/transfers`` as a connected account: the transfers it made (its debits)."""
        group = params.string("transfer_group")
        items = [
            debit
            for debit in self.account_debits.values()
            if debit["source_account"] == account_id
            and (group is None or debit["transfer_group"] == group)
        ]
        return self._page(items, params, "/v1/transfers", "transfer", _without_source)

    # -- balances -------------------------------------------------------------

    def _credit(self, account_id: str, currency: str, amount: int) -> None:
        balances = self.balances.setdefault(account_id, {})
        balances[currency] = balances.get(currency, 0) + amount

    def available(self, account_id: str, currency: str) -> int:
        return self.balances.get(account_id, {}).get(currency, 0)

    def platform_balance(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for txn in self.balance_transactions.values():
            if txn["id"] not in self.txn_owner:
                totals[txn["currency"]] = totals.get(txn["currency"], 0) + txn["net"]
        return totals

    def account_balance(self, account_id: str) -> dict[str, Any]:
        account = self._get(self.accounts, "account", account_id)
        amounts = dict(self.balances.get(account_id, {}))
        return _balance_object(amounts, account["default_currency"], platform=False)

    def retrieve_balance(self, params, args: tuple[str, ...], ctx) -> dict[str, Any]:
        if ctx.stripe_account is not None:
            return self.account_balance(ctx.stripe_account)
        return _balance_object(self.platform_balance(), self.settlement["currency"], platform=True)

    def simulate_payout(
        self,
        account_id: str,
        amount: int | None,
        currency: str | None,
        ctx,
        *,
        failure_code: str | None = None,
    ):
        """A payout from a connected account to its bank: debits its available balance.

        ``currency`` defaults to the account's default currency and ``amount`` to all of its
        available balance in it: such a payout carries every balance transaction not paid out
        yet (an automatic payout). Part of the balance is a manual payout. With
        ``failure_code`` the bank refuses it: ``payout.failed``, and the money comes back.
        """
        account = self._get(self.accounts, "account", account_id)
        currency = currency or account["default_currency"]
        available = self.available(account_id, currency)
        if failure_code is not None and failure_code not in PAYOUT_FAILURES:
            known = ", ".join(sorted(PAYOUT_FAILURES))
            raise ControlError(f"failure_code must be one of {known}, got {failure_code!r}")
        if amount is None:
            if available <= 0:
                raise ControlError(f"{account_id} has nothing available in {currency}", 409)
            amount = available
        if amount > available:
            raise StripeApiError(
                400, "invalid_request_error", PAYOUT_INSUFFICIENT, code="balance_insufficient"
            )
        automatic = amount == available
        payout = _new_payout(amount, currency, automatic=automatic)
        if automatic:
            for txn_id in self._unpaid_txns(account_id, currency):
                self.txn_payout[txn_id] = payout["id"]
        txn = self._txn(
            "payout", payout["id"], -amount, currency, description="STRIPE PAYOUT", owner=account_id
        )
        self.txn_payout[txn["id"]] = payout["id"]
        payout["balance_transaction"] = txn["id"]
        self._credit(account_id, currency, -amount)
        self.payouts[payout["id"]] = payout
        self.emit("payout.created", payout, ctx, account=account_id)
        if failure_code is None:
            payout["status"] = "paid"
            self.emit("payout.paid", payout, ctx, account=account_id)
        else:
            failure = self._txn("payout_failure", payout["id"], amount, currency, owner=account_id)
            self._credit(account_id, currency, amount)
            payout.update(
                status="failed",
                failure_balance_transaction=failure["id"],
                failure_code=failure_code,
                failure_message=PAYOUT_FAILURES[failure_code],
            )
            self.emit("payout.failed", payout, ctx, account=account_id)
        return copy.deepcopy(payout)

    def _unpaid_txns(self, account_id: str, currency: str) -> list[str]:
        return [
            txn_id
            for txn_id, owner in self.txn_owner.items()
            if owner == account_id
            and txn_id not in self.txn_payout
            and self.balance_transactions[txn_id]["currency"] == currency
        ]

    def adjust_account(self, account_id: str, amount: int, currency: str | None, ctx):
        """Money on a connected account that no transfer of the platform explains (a fee
        Stripe charged it, a credit): an ``adjustment`` owned by the account."""
        account = self._get(self.accounts, "account", account_id)
        currency = currency or account["default_currency"]
        if amount < 0 and -amount > self.available(account_id, currency):
            raise ControlError(f"{account_id} has less than {-amount} available", 409)
        self._credit(account_id, currency, amount)
        txn = self._txn(
            "adjustment", new_id("adj"), amount, currency, description="Adjustment",
            owner=account_id,
        )  # fmt: skip
        return copy.deepcopy(txn)

    def list_balance_transactions(self, params, args: tuple[str, ...], ctx):
        """``GET /v1/balance_transactions``: the platform's, or (``Stripe-Account``) the
        account's; ``payout`` filters to what an automatic payout carried."""
        payout_id, txn_type = params.string("payout"), params.string("type")
        owner = ctx.stripe_account
        if payout_id is not None:
            payout = self.payouts.get(payout_id)
            if payout is None or self.txn_owner.get(payout["balance_transaction"]) != owner:
                raise resource_missing("payout", payout_id, param="payout", status=400)
            if not payout["automatic"]:
                raise invalid_request(MANUAL_PAYOUT_LISTING, param="payout")
        items = [
            txn
            for txn in self.balance_transactions.values()
            if self.txn_owner.get(txn["id"]) == owner
            and (payout_id is None or self.txn_payout.get(txn["id"]) == payout_id)
            and (txn_type is None or txn["type"] == txn_type)
        ]
        expand = [
            path.removeprefix("data.")
            for path in params.string_list("expand")
            if path.startswith("data.")
        ]

        def render(txn: dict[str, Any]) -> dict[str, Any]:
            return self.expand(copy.deepcopy(txn), expand)

        return self._page(items, params, "/v1/balance_transactions", "balance_transaction", render)


def _without_source(debit: dict[str, Any]) -> dict[str, Any]:
    """A debit as Stripe shows it: the sandbox's note of its source account left out."""
    return {key: copy.deepcopy(value) for key, value in debit.items() if key != "source_account"}
