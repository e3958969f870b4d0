"""Disputes: opened and moved through their lifecycle by the control API, read through the API.

A chargeback opens as ``needs_response`` with its funds withdrawn at once (one
balance transaction: minus the disputed amount in the settlement currency, plus
the dispute fee), emitting ``charge.dispute.created`` and
``charge.dispute.funds_withdrawn``. An inquiry opens as ``warning_needs_response``
and moves no money until it escalates to ``needs_response``.

Lifecycle (``POST /_sandbox/disputes/{id}/advance {"status": …}``)::

    warning_needs_response -> warning_under_review | warning_closed | needs_response
    warning_under_review   -> warning_closed | needs_response
    needs_response         -> under_review | won | lost
    under_review           -> won | lost

``won`` reinstates the funds and returns the fee (``charge.dispute.funds_reinstated``
then ``charge.dispute.closed``); ``lost`` and ``warning_closed`` only close it.
Other steps emit ``charge.dispute.updated`` with ``previous_attributes``.

While a chargeback is open, and after it is lost, refunding the charge is refused
the way Stripe refuses it (400, code ``charge_disputed``). Inquiries leave the
charge refundable (``is_charge_refundable: true``).
"""

from __future__ import annotations

import copy
from typing import Any

from .common import changed_attributes, new_id, now, snapshot_fields
from .errors import ControlError, invalid_request

DISPUTE_REASONS = (
    "bank_cannot_process",
    "check_returned",
    "credit_not_processed",
    "customer_initiated",
    "debit_not_authorized",
    "duplicate",
    "fraudulent",
    "general",
    "incorrect_account_details",
    "insufficient_funds",
    "noncompliant",
    "product_not_received",
    "product_unacceptable",
    "subscription_canceled",
    "unrecognized",
)
NEXT_STATUSES = {
    "warning_needs_response": ("warning_under_review", "warning_closed", "needs_response"),
    "warning_under_review": ("warning_closed", "needs_response"),
    "needs_response": ("under_review", "won", "lost"),
    "under_review": ("won", "lost"),
}
CLOSED_STATUSES = ("won", "lost", "warning_closed")
# A charge in one of these can't be refunded: it has been (or is being) charged back.
REFUND_BLOCKING_STATUSES = ("needs_response", "under_review", "lost")
RESPONSE_WINDOW_SECONDS = 7 * 24 * 3600
EVIDENCE_FIELDS = (
    "access_activity_log",
    "billing_address",
    "cancellation_policy",
    "cancellation_policy_disclosure",
    "cancellation_rebuttal",
    "customer_communication",
    "customer_email_address",
    "customer_name",
    "customer_purchase_ip",
    "customer_signature",
    "duplicate_charge_documentation",
    "duplicate_charge_explanation",
    "duplicate_charge_id",
    "product_description",
    "receipt",
    "refund_policy",
    "refund_policy_disclosure",
    "refund_refusal_explanation",
    "service_date",
    "service_documentation",
    "shipping_address",
    "shipping_carrier",
    "shipping_date",
    "shipping_documentation",
    "shipping_tracking_number",
    "uncategorized_file",
    "uncategorized_text",
)


def _new_dispute(charge: dict[str, Any], amount: int, reason: str, due_by, inquiry, metadata):
    created = now()
    return {
        "id": new_id("dp"),
        "object": "dispute",
        "amount": amount,
        "balance_transactions": [],
        "charge": charge["id"],
        "created": created,
        "currency": charge["currency"],
        "evidence": dict.fromkeys(EVIDENCE_FIELDS),
        "evidence_details": {
            "due_by": due_by if due_by is not None else created + RESPONSE_WINDOW_SECONDS,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": inquiry,
        "livemode": False,
        "metadata": metadata,
        "network_reason_code": None,
        "payment_intent": charge["payment_intent"],
        "payment_method_details": {
            "card": {
                "brand": "visa",
                "case_type": "inquiry" if inquiry else "chargeback",
                "network_reason_code": None,
            },
            "type": "card",
        },
        "reason": reason,
        "status": "warning_needs_response" if inquiry else "needs_response",
    }


class DisputesMixin:
    """Disputes; mixed into ``Store``."""

    def open_dispute(self, charge_id: str, spec: dict[str, Any], ctx) -> dict[str, Any]:
        """``spec``: amount (default: the charge's), reason, due_by, inquiry, metadata."""
        charge = self._get(self.charges, "charge", charge_id, param="charge", status=400)
        if any(d["charge"] == charge_id for d in self.disputes.values()):
            raise ControlError(f"charge {charge_id} already has a dispute (Stripe allows one)", 409)
        amount = spec.get("amount") or charge["amount"]
        if amount > charge["amount"]:
            raise ControlError(f"amount {amount} is more than the charge's {charge['amount']}")
        reason = spec.get("reason") or "fraudulent"
        if reason not in DISPUTE_REASONS:
            raise ControlError(f"reason must be one of {', '.join(DISPUTE_REASONS)}")
        inquiry = bool(spec.get("inquiry"))
        dispute = _new_dispute(
            charge, amount, reason, spec.get("due_by"), inquiry, dict(spec.get("metadata") or {})
        )
        self.disputes[dispute["id"]] = dispute
        charge["disputed"] = True
        if not inquiry:
            self._withdraw(dispute)
        self.emit("charge.dispute.created", dispute, ctx)
        if not inquiry:
            self.emit("charge.dispute.funds_withdrawn", dispute, ctx)
        return copy.deepcopy(dispute)

    def advance_dispute(self, dispute_id: str, status: Any, ctx) -> dict[str, Any]:
        dispute = self._get(self.disputes, "dispute", dispute_id)
        allowed = NEXT_STATUSES.get(dispute["status"], ())
        if status not in allowed:
            options = ", ".join(allowed) or "nothing: it is closed"
            raise ControlError(
                f"dispute {dispute_id} is {dispute['status']}; it can move to {options} "
                f"(not {status!r})",
                409,
            )
        before = snapshot_fields(dispute, ("status", "evidence_details", "is_charge_refundable"))
        dispute["status"] = status
        if status in ("under_review", "warning_under_review"):
            details = dispute["evidence_details"]
            details["has_evidence"] = True
            details["submission_count"] += 1
        elif status == "needs_response":
            self._withdraw(dispute)
            dispute["payment_method_details"]["card"]["case_type"] = "chargeback"
        elif status == "won":
            self._reinstate(dispute)
        self._announce_dispute_step(dispute, changed_attributes(before, dispute), ctx)
        return copy.deepcopy(dispute)

    def _announce_dispute_step(self, dispute: dict[str, Any], previous: dict[str, Any], ctx):
        status = dispute["status"]
        if status == "won":
            self.emit("charge.dispute.funds_reinstated", dispute, ctx)
        if status in CLOSED_STATUSES:
            self.emit("charge.dispute.closed", dispute, ctx)
            return
        self.emit("charge.dispute.updated", dispute, ctx, previous=previous)
        if status == "needs_response":
            self.emit("charge.dispute.funds_withdrawn", dispute, ctx)

    def _withdraw(self, dispute: dict[str, Any]) -> None:
        amount, currency, rate = self._to_settlement(dispute["amount"], dispute["currency"])
        txn = self._txn(
            "dispute",
            dispute["id"],
            -amount,
            currency,
            rate=rate,
            fee=self.settlement["dispute_fee"],
            fee_label="Dispute fee",
            description=f"Chargeback withdrawal for {dispute['charge']}",
        )
        dispute["balance_transactions"].append(copy.deepcopy(txn))
        dispute["is_charge_refundable"] = False

    def _reinstate(self, dispute: dict[str, Any]) -> None:
        withdrawn = dispute["balance_transactions"][0]
        amount, currency, rate = self._to_settlement(dispute["amount"], dispute["currency"])
        txn = self._txn(
            "dispute_reversal",
            dispute["id"],
            amount,
            currency,
            rate=rate,
            fee=-withdrawn["fee"],
            fee_label="Dispute fee",
            description=f"Chargeback reversal for {dispute['charge']}",
        )
        dispute["balance_transactions"].append(copy.deepcopy(txn))

    def _check_refundable(self, charge: dict[str, Any]) -> None:
        for dispute in self.disputes.values():
            if dispute["charge"] == charge["id"] and dispute["status"] in REFUND_BLOCKING_STATUSES:
                raise invalid_request(
                    f"Charge {charge['id']} has been charged back; cannot issue a refund.",
                    code="charge_disputed",
                )

    def retrieve_dispute(self, params, args: tuple[str, ...], ctx) -> dict[str, Any]:
        dispute = copy.deepcopy(self._get(self.disputes, "dispute", args[0]))
        return self.expand(dispute, params.string_list("expand"))

    def list_disputes(self, params, args: tuple[str, ...], ctx) -> dict[str, Any]:
        charge_id = params.string("charge")
        intent_id = params.string("payment_intent")
        items = [
            d
            for d in self.disputes.values()
            if (charge_id is None or d["charge"] == charge_id)
            and (intent_id is None or d["payment_intent"] == intent_id)
        ]
        return self._page(items, params, "/v1/disputes", "dispute", copy.deepcopy)
