"""The one boundary to Stripe.

Only this module calls the Stripe API. It returns our own small results and raises our own small
exceptions, so services, Celery, logs and tests never depend on stripe-python's types.

Error classification reads ``http_status``, ``error.type``, ``error.code`` and the message, never
the exception class alone: stripe-python raises every 402 as ``CardError``, whatever the body.
"""

import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any

import stripe
from django.conf import settings

from payouts.conf import RateBudgets
from payouts.stripe_api.rate_limit import Share, StripeRateLimiter
from payouts.telemetry import stripe_call_observed

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StripeTransfer:
    id: str
    amount: int
    amount_reversed: int
    currency: str
    destination: str
    transfer_group: str
    metadata: dict[str, str] = field(default_factory=dict)
    created: int = 0  # Unix time at Stripe
    # The transfer as its connected account sees it: a payment ``py_…`` in that account.
    destination_payment: str = ""

    @property
    def fully_reversed(self) -> bool:
        return self.amount_reversed >= self.amount


@dataclass(frozen=True, slots=True)
class StripeAccount:
    """Whether a connected account can receive transfers, and if not, why."""

    id: str
    can_receive: bool
    reason: str  # empty when it can receive


@dataclass(frozen=True, slots=True)
class StripeBalanceMove:
    """A dispute's move of funds on the platform's balance.

    One of a dispute's balance transactions: ``net`` negative when funds were withdrawn
    (amount and fee), positive when reinstated."""

    id: str
    amount: int
    fee: int
    net: int
    currency: str


@dataclass(frozen=True, slots=True)
class StripeSettlement:
    """How a charge or refund settled on the platform's balance.

    How a charge or a refund landed on the platform's balance: its balance transaction, in
    the settlement currency. ``amount`` is positive for a charge and a refund alike (what came
    in, what went out); ``exchange_rate`` is ``None`` when no conversion happened."""

    balance_transaction_id: str
    amount: int
    fee: int
    net: int
    currency: str
    exchange_rate: Decimal | None


def settlement_from_stripe(txn: Any) -> StripeSettlement:
    """Our settlement from an (expanded) balance transaction."""
    amount = int(txn["amount"])
    fee = int(txn.get("fee") or 0)
    rate = txn.get("exchange_rate")
    return StripeSettlement(
        balance_transaction_id=txn["id"],
        amount=minor_units(abs(amount)),
        fee=minor_units(fee, field="fee"),
        net=minor_units(abs(int(txn.get("net", amount - fee))), field="net"),
        currency=str(txn["currency"]).lower(),
        exchange_rate=None if rate is None else Decimal(str(rate)),
    )


@dataclass(frozen=True, slots=True)
class StripeDispute:
    id: str
    charge_id: str
    payment_intent_id: str
    amount: int
    currency: str
    reason: str
    status: str
    evidence_due_by: int | None  # Unix time
    balance_moves: tuple[StripeBalanceMove, ...]


def dispute_from_stripe(obj: Any) -> StripeDispute:
    """Our dispute from Stripe's JSON (a ``charge.dispute.*`` event's object)."""
    moves = tuple(
        StripeBalanceMove(
            id=txn["id"],
            amount=int(txn["amount"]),
            fee=int(txn.get("fee") or 0),
            net=int(txn.get("net", int(txn["amount"]) - int(txn.get("fee") or 0))),
            currency=str(txn.get("currency") or obj["currency"]).lower(),
        )
        for txn in obj.get("balance_transactions") or []
        if isinstance(txn, dict)
    )
    due_by = (obj.get("evidence_details") or {}).get("due_by")
    return StripeDispute(
        id=obj["id"],
        charge_id=obj.get("charge") or "",
        payment_intent_id=obj.get("payment_intent") or "",
        amount=minor_units(obj["amount"]),
        currency=str(obj["currency"]).lower(),
        reason=obj.get("reason") or "",
        status=obj["status"],
        evidence_due_by=int(due_by) if due_by else None,
        balance_moves=moves,
    )


def account_from_stripe(obj: Any) -> StripeAccount:
    """Our view of a connected account (an API answer or an ``account.updated`` event)."""
    transfers = (obj.get("capabilities") or {}).get("transfers") or "inactive"
    requirements = obj.get("requirements") or {}
    reason = requirements.get("disabled_reason") or ""
    if transfers != "active":
        reason = reason or f"transfers capability {transfers}"
        past_due = requirements.get("past_due") or []
        if past_due:
            reason += f" (past due: {', '.join(past_due[:5])})"
    return StripeAccount(id=obj["id"], can_receive=transfers == "active", reason=reason)


@dataclass(frozen=True, slots=True)
class StripeReversal:
    id: str
    amount: int
    transfer_id: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StripeRefund:
    id: str
    amount: int
    currency: str
    status: str
    charge_id: str
    payment_intent_id: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StripePayout:
    """A connected account's payout to its bank (``payout.*`` events)."""

    id: str
    amount: int
    currency: str
    status: str  # pending, in_transit, paid, failed, canceled
    arrival_date: int | None  # Unix time
    created: int
    automatic: bool
    failure_code: str
    failure_message: str


def payout_from_stripe(obj: Any) -> StripePayout:
    """Our payout from Stripe's JSON (a ``payout.*`` event's object)."""
    arrival = obj.get("arrival_date")
    return StripePayout(
        id=obj["id"],
        amount=minor_units(obj["amount"]),
        currency=str(obj["currency"]).lower(),
        status=str(obj.get("status") or "pending"),
        arrival_date=int(arrival) if arrival else None,
        created=int(obj.get("created") or 0),
        automatic=bool(obj.get("automatic", True)),
        failure_code=obj.get("failure_code") or "",
        failure_message=obj.get("failure_message") or "",
    )


@dataclass(frozen=True, slots=True)
class StripeAccountBalanceLine:
    """One balance transaction on a connected account.

    ``amount`` and ``net`` are signed (a payment in is positive, a payment refund or the payout
    itself negative). ``source`` is the object that made it (``py_…``, ``pyr_…``, ``po_…``);
    ``source_transfer`` is the platform's transfer behind a payment, ``source_payment`` the payment
    a payment refund took back."""

    id: str
    type: str
    amount: int
    fee: int
    net: int
    currency: str
    source: str
    source_transfer: str = ""
    source_payment: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class StripeBalancePage:
    lines: tuple[StripeAccountBalanceLine, ...]
    has_more: bool


def _signed_units(value: Any, *, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field} must be an integer of minor units, got {value!r}")
    return value


def _account_balance_line(obj: Any) -> StripeAccountBalanceLine:
    source = obj.get("source")
    expanded = source if isinstance(source, dict) else {}
    amount = _signed_units(obj["amount"], field="amount")
    fee = _signed_units(obj.get("fee") or 0, field="fee")
    return StripeAccountBalanceLine(
        id=obj["id"],
        type=str(obj.get("type") or ""),
        amount=amount,
        fee=fee,
        net=_signed_units(obj.get("net", amount - fee), field="net"),
        currency=str(obj["currency"]).lower(),
        source=_id_of(source),
        source_transfer=_id_of(expanded.get("source_transfer")),
        source_payment=_id_of(expanded.get("charge"))
        if obj.get("type") == "payment_refund"
        else "",
        description=obj.get("description") or "",
    )


class _OnePage:
    """A list answer kept to the one page Stripe sent.

    ``_call`` would read a ``ListObject`` to its end in one budget slot, and a payout is read page
    by page, each page through the limiter."""

    def __init__(self, page: Any):
        self._page = page

    def to_dict(self) -> dict:
        return {
            "data": [item.to_dict() for item in self._page.data],
            "has_more": bool(self._page.has_more),
        }


class GatewayError(Exception):
    """Base of every error the gateway raises; carries what Stripe said, if anything.

    ``response_seen`` is False when we do not know what Stripe did (timeout, dropped connection,
    409 ``idempotency_key_in_use``): the same idempotency key must be sent again so that Stripe
    replays the real outcome. ``may_have_executed`` is True after a 5xx or an answer we did not
    see: before any attempt with a *new* key, Stripe's state must be read first.
    ``rate_limited``: a 429, for which Stripe stores nothing.
    """

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        error_type: str | None = None,
        code: str | None = None,
        response_seen: bool = True,
        may_have_executed: bool = False,
        rate_limited: bool = False,
    ):
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.error_type = error_type
        self.code = code
        self.response_seen = response_seen
        self.may_have_executed = may_have_executed
        self.rate_limited = rate_limited

    def describe(self) -> str:
        """One line for ``error_message`` columns and logs."""
        status = self.http_status if self.http_status is not None else "no response"
        code = f" {self.code}" if self.code else ""
        return f"Stripe {status}{code}: {self.message}"


class TransferNotFound(GatewayError):
    """404 ``resource_missing`` on a transfer: terminal, never retried."""


class TransferAlreadyReversed(GatewayError):
    """Stripe refused a reversal because the transfer is already fully reversed."""


class SellerBalanceInsufficient(GatewayError):
    """Stripe refused a reversal: the seller's balance cannot cover it.

    Stripe refused a reversal because the seller's Stripe balance cannot cover it (they were
    paid out already). Retrying on the usual schedule will not help: the share becomes the
    seller's debt."""


class DestinationCannotReceive(GatewayError):
    """Stripe refused a transfer: the seller's account cannot receive it.

    Stripe refused a transfer because the seller's account cannot receive one (the
    ``transfers`` capability is not active) or no longer lets the platform in (deauthorized).
    Retrying will not help until the account changes."""

    @property
    def deauthorized(self) -> bool:
        return self.code == "account_invalid"


class StripeTransientError(GatewayError):
    """Anything else; retried with backoff."""


class DebitRefused(GatewayError):
    """Stripe refused an account debit for good (the balance, or an account it cannot debit).

    The connected account's balance cannot cover it, or the platform may not debit that
    account. Trying the same debit again will not help."""


# Stripe's codes for a reversal the connected account's balance cannot cover.
_SELLER_BALANCE_CODES = frozenset({"balance_insufficient", "insufficient_funds"})
# Stripe's codes for an account debit the platform may not make.
_DEBIT_NOT_ALLOWED_CODES = frozenset({"transfers_not_allowed", "account_invalid"})
# Stripe's codes for a transfer the destination account cannot receive.
_DESTINATION_CODES = frozenset({"insufficient_capabilities_for_transfer", "account_invalid"})


def _is_already_reversed_message(message: str) -> bool:
    # Stripe has no error code for this; its text is "The transfer tr_… is already fully
    # reversed." Match the two stems, case-insensitively, and nothing more specific.
    lowered = message.lower()
    return "already" in lowered and "revers" in lowered


def classify(exc: stripe.StripeError) -> GatewayError:
    """Turn a stripe-python error into ours. Pure: no I/O, decided from the response body."""
    status = exc.http_status
    error = exc.error
    error_type = getattr(error, "type", None)
    code = getattr(error, "code", None) or exc.code
    message = (getattr(error, "message", None) or exc.user_message or str(exc)).strip()
    details = {"http_status": status, "error_type": error_type, "code": code}

    if status is None:
        # Timeout or connection failure: the request may or may not have reached Stripe.
        return StripeTransientError(
            message or "network error", response_seen=False, may_have_executed=True, **details
        )
    if status == 404 and code == "resource_missing":
        return TransferNotFound(message, **details)
    if status == 400 and _is_already_reversed_message(message):
        return TransferAlreadyReversed(message, **details)
    if status == 409 and code == "idempotency_key_in_use":
        # The first request with this key is still running at Stripe: its outcome is unknown.
        return StripeTransientError(message, response_seen=False, may_have_executed=True, **details)
    if status == 429:
        # Stripe stores nothing for a 429; the same key may be sent again.
        return StripeTransientError(
            message, response_seen=True, may_have_executed=False, rate_limited=True, **details
        )
    # A 5xx is stored by Stripe and may hide an executed request; an idempotency_error means the
    # key was already used for something else, which did execute.
    may_have_executed = status >= 500 or error_type == "idempotency_error"
    return StripeTransientError(
        message, response_seen=True, may_have_executed=may_have_executed, **details
    )


def minor_units(value: Any, *, field: str = "amount") -> int:
    """Check that an amount from Stripe is a whole, non-negative number of minor units.

    A Stripe amount: an integer number of minor units, never a string or a fraction (a
    hostile or broken body must not turn "500" or 700.9 into money)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{field} must be a non-negative integer of minor units, got {value!r}")
    return value


def _transfer(obj: Any) -> StripeTransfer:
    return StripeTransfer(
        id=obj["id"],
        amount=minor_units(obj["amount"]),
        amount_reversed=minor_units(obj.get("amount_reversed") or 0, field="amount_reversed"),
        currency=obj["currency"],
        destination=obj.get("destination") or "",
        transfer_group=obj.get("transfer_group") or "",
        metadata=dict(obj.get("metadata") or {}),
        created=int(obj.get("created") or 0),
        destination_payment=_id_of(obj.get("destination_payment")),
    )


def _id_of(value: Any) -> str:
    """An id, whether Stripe sent it as is or expanded into its object."""
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return str(value or "")


def _reversal(obj: Any) -> StripeReversal:
    return StripeReversal(
        id=obj["id"],
        amount=minor_units(obj["amount"]),
        transfer_id=obj.get("transfer") or "",
        metadata=dict(obj.get("metadata") or {}),
    )


def refund_from_stripe(obj: Any) -> StripeRefund:
    """Our refund from Stripe's JSON (an API answer or a webhook's ``data.object``)."""
    return StripeRefund(
        id=obj["id"],
        amount=minor_units(obj["amount"]),
        currency=obj["currency"],
        status=obj.get("status") or "",
        charge_id=obj.get("charge") or "",
        payment_intent_id=obj.get("payment_intent") or "",
        metadata=dict(obj.get("metadata") or {}),
    )


# Stripe's largest page.
PAGE_SIZE = 100


class StripeGateway:
    def __init__(
        self,
        client: stripe.StripeClient,
        rate_limiter: StripeRateLimiter | None = None,
        *,
        share: Share = Share.WORK,
    ):
        self._client = client
        self._rate_limiter = rate_limiter
        self._share = share

    def _call(self, operation: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one Stripe API request and return a plain dict.

        A list gives its page, ``data`` and ``has_more``. Each request, each page of a list too,
        takes its own place in the budgets."""
        if self._rate_limiter is not None:
            self._rate_limiter.acquire(operation, share=self._share)
        started = time.monotonic()
        try:
            result = func(*args, **kwargs).to_dict()
        except stripe.StripeError as exc:
            classified = classify(exc)
            stripe_call_observed(operation=operation, outcome=type(classified).__name__)
            if self._rate_limiter is not None and getattr(classified, "rate_limited", False):
                self._rate_limiter.slow_down()
            logger.warning(
                "stripe call failed",
                extra={
                    "stripe_operation": operation,
                    "outcome": type(classified).__name__,
                    "http_status": classified.http_status,
                    "code": classified.code,
                    "duration_ms": round((time.monotonic() - started) * 1000),
                },
            )
            raise classified from exc
        stripe_call_observed(operation=operation, outcome="succeeded")
        logger.info(
            "stripe call succeeded",
            extra={
                "stripe_operation": operation,
                "stripe_id": result.get("id") if isinstance(result, dict) else None,
                "duration_ms": round((time.monotonic() - started) * 1000),
            },
        )
        return result

    def create_transfer(
        self,
        *,
        amount: int,
        currency: str,
        destination: str,
        transfer_group: str,
        source_transaction: str | None,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> StripeTransfer:
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency,
            "destination": destination,
            "transfer_group": transfer_group,
            "metadata": metadata,
        }
        if source_transaction:
            params["source_transaction"] = source_transaction
        try:
            obj = self._call(
                "transfers.create",
                self._client.v1.transfers.create,
                params=params,
                options={"idempotency_key": idempotency_key},
            )
        except StripeTransientError as refused:
            if refused.http_status in (400, 403) and refused.code in _DESTINATION_CODES:
                raise DestinationCannotReceive(
                    refused.message, http_status=refused.http_status, code=refused.code
                ) from refused
            raise
        if not obj.get("id"):
            raise StripeTransientError(
                "Stripe answered a transfer creation without an id",
                response_seen=True,
                may_have_executed=True,
            )
        return _transfer(obj)

    def debit_account(
        self,
        *,
        account_id: str,
        amount: int,
        currency: str,
        platform_account_id: str,
        transfer_group: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> StripeTransfer:
        """Take ``amount`` from a connected account's balance to the platform's (an account debit).

        Stripe's account debit: a transfer made as the connected account (``Stripe-Account``)
        whose destination is the platform. Raises ``DebitRefused`` when Stripe refuses it for
        the balance or the account (no retry helps), ``StripeTransientError`` otherwise."""
        params = {
            "amount": amount,
            "currency": currency,
            "destination": platform_account_id,
            "transfer_group": transfer_group,
            "metadata": metadata,
        }
        try:
            obj = self._call(
                "transfers.create_debit",
                self._client.v1.transfers.create,
                params=params,
                options={"idempotency_key": idempotency_key, "stripe_account": account_id},
            )
        except StripeTransientError as refused:
            codes = _SELLER_BALANCE_CODES | _DEBIT_NOT_ALLOWED_CODES
            if refused.http_status in (400, 403) and refused.code in codes:
                raise DebitRefused(
                    refused.message, http_status=refused.http_status, code=refused.code
                ) from refused
            raise
        return _transfer(obj)

    def reverse_transfer(
        self,
        stripe_transfer_id: str,
        *,
        amount: int | None = None,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> StripeReversal:
        """Reverse ``amount`` of the transfer (everything left when ``None``).

        A refusal worded "already … reversed" is confirmed by reading the transfer: only when
        Stripe's own figures say it is fully reversed is ``TransferAlreadyReversed`` raised.
        """
        params: dict[str, Any] = {"metadata": metadata}
        if amount is not None:
            params["amount"] = amount
        try:
            obj = self._call(
                "reversals.create",
                self._client.v1.transfers.reversals.create,
                stripe_transfer_id,
                params=params,
                options={"idempotency_key": idempotency_key},
            )
        except TransferAlreadyReversed as refused:
            self._confirm_fully_reversed(stripe_transfer_id, refused)
            raise
        except StripeTransientError as refused:
            if refused.http_status == 400 and refused.code in _SELLER_BALANCE_CODES:
                raise SellerBalanceInsufficient(
                    refused.message, http_status=400, code=refused.code
                ) from refused
            raise
        if not obj.get("id"):
            raise StripeTransientError(
                "Stripe answered a reversal without an id",
                response_seen=True,
                may_have_executed=True,
            )
        return _reversal(obj)

    def _confirm_fully_reversed(self, stripe_transfer_id: str, refused: GatewayError) -> None:
        transfer = self.retrieve_transfer(stripe_transfer_id)
        if not transfer.fully_reversed:
            raise StripeTransientError(
                f"{refused.message} (but Stripe reports {transfer.amount_reversed} of "
                f"{transfer.amount} reversed)",
                response_seen=True,
                may_have_executed=False,
                http_status=refused.http_status,
            )

    def retrieve_account(self, account_id: str) -> StripeAccount:
        """Ask Stripe whether a connected account can receive transfers.

        A connected account's ability to receive transfers. A deauthorized account (403
        ``account_invalid``) cannot."""
        try:
            obj = self._call("accounts.retrieve", self._client.v1.accounts.retrieve, account_id)
        except StripeTransientError as refused:
            if refused.http_status == 403 and refused.code == "account_invalid":
                return StripeAccount(account_id, can_receive=False, reason="deauthorized")
            raise
        return account_from_stripe(obj)

    def retrieve_transfer(self, stripe_transfer_id: str) -> StripeTransfer:
        obj = self._call(
            "transfers.retrieve", self._client.v1.transfers.retrieve, stripe_transfer_id
        )
        return _transfer(obj)

    def _pages(
        self, operation: str, func: Any, *args: Any, params: dict[str, Any], **options: Any
    ) -> Iterator[list[dict]]:
        """A list read a page of ``PAGE_SIZE`` at a time, each page one request."""
        after = None
        while True:
            page_params = {**params, "limit": PAGE_SIZE}
            if after is not None:
                page_params["starting_after"] = after
            page = self._call(operation, func, *args, params=page_params, **options)
            data = page.get("data") or []
            yield data  # an empty first page too: the caller counts every request
            if not page.get("has_more") or not data:
                return
            after = data[-1]["id"]

    def transfers_created_between(self, *, start: int, end: int) -> Iterator[list[StripeTransfer]]:
        """Every transfer Stripe created in ``[start, end)``, newest first.

        ``start`` and ``end`` are Unix seconds. A page of 100 at a time (each with its amount
        reversed, the newest reversals embedded): how the checks read a day of transfers in a
        hundredth of the calls of one read each."""
        params = {"created": {"gte": start, "lt": end}}
        for page in self._pages("transfers.list", self._client.v1.transfers.list, params=params):
            yield [_transfer(obj) for obj in page]

    def transfers_reversed_between(self, *, start: int, end: int) -> Iterator[list[StripeTransfer]]:
        """The transfers that Stripe's ``transfer.reversed`` events of a time range carry.

        As the events of ``[start, end)`` carry them, newest event first, a page of 100 events at a
        time: how the checks read the day's reversals of transfers created on earlier days without a
        call each. Stripe keeps events for 30 days."""
        params = {"type": "transfer.reversed", "created": {"gte": start, "lt": end}}
        for page in self._pages("events.list", self._client.v1.events.list, params=params):
            yield [_transfer(event["data"]["object"]) for event in page]

    def list_reversals(self, stripe_transfer_id: str) -> list[StripeReversal]:
        return [
            _reversal(obj)
            for page in self._pages(
                "reversals.list",
                self._client.v1.transfers.reversals.list,
                stripe_transfer_id,
                params={},
            )
            for obj in page
        ]

    def find_transfers(
        self, *, transfer_group: str, account_id: str | None = None
    ) -> list[StripeTransfer]:
        """The transfers of ``transfer_group``, the platform's or a connected account's.

        With ``account_id``, those the account made (read as the account, ``Stripe-Account``):
        its debits."""
        options = {"options": {"stripe_account": account_id}} if account_id else {}
        return [
            _transfer(obj)
            for page in self._pages(
                "transfers.list",
                self._client.v1.transfers.list,
                params={"transfer_group": transfer_group},
                **options,
            )
            for obj in page
        ]

    def create_refund(
        self,
        *,
        payment_intent_id: str,
        amount: int,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> StripeRefund:
        obj = self._call(
            "refunds.create",
            self._client.v1.refunds.create,
            params={"payment_intent": payment_intent_id, "amount": amount, "metadata": metadata},
            options={"idempotency_key": idempotency_key},
        )
        return refund_from_stripe(obj)

    def charge_settlement(self, charge_id: str) -> StripeSettlement | None:
        """Read what a charge settled as on the platform's balance.

        The charge's balance transaction: what the buyer's payment settled as, in which
        currency and at which rate. ``None`` while Stripe has not created it yet."""
        return self._settlement("charges.retrieve", self._client.v1.charges.retrieve, charge_id)

    def refund_settlement(self, refund_id: str) -> StripeSettlement | None:
        """The refund's own balance transaction (its rate may differ from the charge's)."""
        return self._settlement("refunds.retrieve", self._client.v1.refunds.retrieve, refund_id)

    def _settlement(self, operation: str, retrieve: Any, object_id: str):
        obj = self._call(operation, retrieve, object_id, params={"expand": ["balance_transaction"]})
        txn = obj.get("balance_transaction")
        return settlement_from_stripe(txn) if isinstance(txn, dict) else None

    def payout_balance_page(
        self,
        *,
        account_id: str,
        payout_id: str,
        starting_after: str | None = None,
        limit: int = 100,
    ) -> StripeBalancePage:
        """One page of a connected account's payout: its balance transactions.

        Read as that account (``Stripe-Account``), newest first, each line's source expanded (the
        payment names the transfer behind it, a payment refund its payment). One call."""
        params: dict[str, Any] = {
            "payout": payout_id,
            "limit": limit,
            "expand": ["data.source"],
        }
        if starting_after:
            params["starting_after"] = starting_after

        def one_page(**kwargs: Any) -> _OnePage:
            return _OnePage(self._client.v1.balance_transactions.list(**kwargs))

        page = self._call(
            "balance_transactions.list",
            one_page,
            params=params,
            options={"stripe_account": account_id},
        )
        return StripeBalancePage(
            lines=tuple(_account_balance_line(obj) for obj in page["data"]),
            has_more=page["has_more"],
        )

    def refund_cash(self, refund_id: str) -> int:
        """What the refund moved on the platform's balance in all.

        Minus what its balance transaction took, plus what a failure gave back (its failure balance
        transaction)."""
        obj = self._call(
            "refunds.retrieve",
            self._client.v1.refunds.retrieve,
            refund_id,
            params={"expand": ["balance_transaction"]},
        )
        txns = [obj.get("balance_transaction")]
        # Present only once the refund failed (and not expandable before): read on its own.
        failure = obj.get("failure_balance_transaction")
        if isinstance(failure, str) and failure:
            txns.append(
                self._call(
                    "balance_transactions.retrieve",
                    self._client.v1.balance_transactions.retrieve,
                    failure,
                )
            )
        return sum(int(txn.get("net", txn["amount"])) for txn in txns if isinstance(txn, dict))

    def list_disputes(self, *, charge_id: str) -> list[StripeDispute]:
        return [
            dispute_from_stripe(obj)
            for page in self._pages(
                "disputes.list", self._client.v1.disputes.list, params={"charge": charge_id}
            )
            for obj in page
        ]

    def list_refunds(self, *, charge_id: str) -> list[StripeRefund]:
        return [
            refund_from_stripe(obj)
            for page in self._pages(
                "refunds.list", self._client.v1.refunds.list, params={"charge": charge_id}
            )
            for obj in page
        ]


def build_client() -> stripe.StripeClient:
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": settings.STRIPE_API_BASE},
        max_network_retries=settings.PAYOUTS.stripe.max_network_retries,
        http_client=stripe.RequestsClient(timeout=settings.PAYOUTS.stripe.timeout.total_seconds()),
    )


@lru_cache(maxsize=8)
def _cached_gateway(
    key: str,
    api_base: str,
    retries: int,
    timeout: float,
    budgets: RateBudgets | None,
    redis_url: str,
    share: Share,
) -> StripeGateway:
    # One budget per Stripe account: the namespace carries a digest of the key, never the key.
    namespace = f"payouts:stripe:{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    limiter = StripeRateLimiter(redis_url, budgets, namespace=namespace) if budgets else None
    return StripeGateway(build_client(), limiter, share=share)


def get_gateway(*, for_checks: bool = False) -> StripeGateway:
    """The process's Stripe gateway.

    Thread-safe; rebuilt when the Stripe settings change. ``for_checks``: its requests count against
    the checks' smaller share of the budget."""
    return _cached_gateway(
        settings.STRIPE_SECRET_KEY,
        settings.STRIPE_API_BASE,
        settings.PAYOUTS.stripe.max_network_retries,
        settings.PAYOUTS.stripe.timeout.total_seconds(),
        settings.PAYOUTS.stripe.budgets,
        settings.STRIPE_RATE_LIMIT_REDIS_URL,
        Share.CHECKS if for_checks else Share.WORK,
    )
