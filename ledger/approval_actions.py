"""The book's staff money action as the approvals app runs it: writing off a seller's debt."""

from collections.abc import Mapping
from typing import Any

from approvals.registry import Action, Ask, Measured, register
from config.errors import NotFound
from ledger.models import AccountKind
from ledger.selectors import account_balance, seller_debt_claimed
from ledger.services import debt_write_off, write_off_check
from marketplace.models import Seller


class UnknownSeller(NotFound):
    code = "unknown_seller"


def _write_off_measure(params: Mapping[str, Any]) -> Measured:
    seller_id, currency, amount = params["seller_id"], params["currency"], params["amount"]
    if not Seller.objects.filter(pk=seller_id).exists():
        raise UnknownSeller(f"No seller {seller_id}.")
    debt = account_balance(kind=AccountKind.SELLER_DEBT, seller_id=seller_id, currency=currency)
    # Refused when asked, not only when approved: nobody approves what cannot run.
    free = debt - seller_debt_claimed(seller_id=seller_id, currency=currency)
    write_off_check(seller_id=seller_id, currency=currency, amount=amount, free=free)
    return Measured(
        amount, currency, {"seller_id": seller_id, "currency": currency, "amount": amount}
    )


def _write_off_prepare(ask: Ask) -> dict:
    reason = ask.reason
    if ask.request_id is not None:
        reason = (
            f"{reason} (approved by {ask.approved_by.get_username()}, "
            f"approval request {ask.request_id})"
        )
    left = debt_write_off(
        seller_id=ask.params["seller_id"],
        currency=ask.params["currency"],
        amount=ask.params["amount"],
        reason=reason,
        user=ask.user,
    )
    return {"debt_left": left}


def register_actions() -> None:
    register(
        Action(
            kind="write_off",
            label="Debt write-off",
            measure=_write_off_measure,
            subject=lambda params: f"seller {params['seller_id']}",
            prepare=_write_off_prepare,
            reason_required=True,
        )
    )
