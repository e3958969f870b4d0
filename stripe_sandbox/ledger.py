"""The ``GET /_sandbox/ledger`` view: where the money went, with consistency checks.

* ``transfers``: each transfer with its reversals (unchanged from before);
* ``charges``: each charge with its settlement (amount, fee, net in the settlement
  currency), what transfers drew from it, its refunds (every status, each with
  its settled amount and what a failure gave back) and its disputes;
* ``disputes``: each dispute with what was withdrawn, reinstated and charged in fees;
* ``accounts``: each connected account's available balance per currency, with the
  transfers, reversals, payouts and account debits that make it up;
* ``platform_balance``: the sum of the platform's balance transactions per currency;
* ``totals``: the old integer totals, plus per-currency totals of the new money.

``consistent`` is true when every entry's own check holds.
"""

from __future__ import annotations

from typing import Any


def _add(totals: dict[str, int], currency: str, amount: int) -> None:
    totals[currency] = totals.get(currency, 0) + amount


def _transfers(store) -> list[dict[str, Any]]:
    entries = []
    for transfer in store.transfers.values():
        ids = store.reversals_by_transfer[transfer["id"]]
        amounts = [store.reversals[i]["amount"] for i in ids]
        entries.append(
            {
                "id": transfer["id"],
                "amount": transfer["amount"],
                "amount_reversed": transfer["amount_reversed"],
                "currency": transfer["currency"],
                "destination": transfer["destination"],
                "source_transaction": transfer["source_transaction"],
                "transfer_group": transfer["transfer_group"],
                "reversed": transfer["reversed"],
                "reversal_count": len(amounts),
                "reversal_amounts": amounts,
                "consistent": sum(amounts) == transfer["amount_reversed"]
                and transfer["amount_reversed"] <= transfer["amount"],
            }
        )
    return entries


def _settlement(store, txn_id: str | None) -> dict[str, Any] | None:
    txn = store.balance_transactions.get(txn_id) if txn_id else None
    if txn is None:
        return None
    keys = ("id", "amount", "currency", "exchange_rate", "fee", "net")
    return {key: txn[key] for key in keys}


def _refund(store, refund: dict[str, Any]) -> dict[str, Any]:
    settled = _settlement(store, refund["balance_transaction"])
    restored = [
        t["amount"]
        for t in store.balance_transactions.values()
        if t["source"] == refund["id"] and t["type"] == "refund_failure"
    ]
    return {
        "id": refund["id"],
        "amount": refund["amount"],
        "status": refund["status"],
        "failure_reason": refund.get("failure_reason"),
        "settled_amount": settled["amount"] if settled else None,
        "restored_amount": sum(restored),
    }


def _charges(store) -> list[dict[str, Any]]:
    entries = []
    for charge in store.charges.values():
        refunds = [r for r in store.refunds.values() if r["charge"] == charge["id"]]
        live = sum(r["amount"] for r in refunds if r["status"] in ("pending", "succeeded"))
        settlement = _settlement(store, charge["balance_transaction"])
        sourced = [t for t in store.transfers.values() if t["source_transaction"] == charge["id"]]
        transferred = sum(t["amount"] for t in sourced)
        disputes = [d["id"] for d in store.disputes.values() if d["charge"] == charge["id"]]
        entries.append(
            {
                "id": charge["id"],
                "payment_intent": charge["payment_intent"],
                "amount": charge["amount"],
                "currency": charge["currency"],
                "amount_refunded": charge["amount_refunded"],
                "settlement": settlement,
                "transferred": transferred,
                "disputed": charge.get("disputed", False),
                "disputes": disputes,
                "refund_count": len(refunds),
                "refunds": [_refund(store, r) for r in refunds],
                "consistent": live == charge["amount_refunded"]
                and charge["amount_refunded"] <= charge["amount"]
                and (settlement is None or transferred <= settlement["net"]),
            }
        )
    return entries


def _disputes(store) -> list[dict[str, Any]]:
    entries = []
    for dispute in store.disputes.values():
        txns = dispute["balance_transactions"]
        withdrawn = -sum(t["amount"] for t in txns if t["amount"] < 0)
        reinstated = sum(t["amount"] for t in txns if t["amount"] > 0)
        won = dispute["status"] == "won"
        entries.append(
            {
                "id": dispute["id"],
                "charge": dispute["charge"],
                "status": dispute["status"],
                "amount": dispute["amount"],
                "currency": dispute["currency"],
                "settlement_currency": txns[0]["currency"] if txns else None,
                "withdrawn": withdrawn,
                "reinstated": reinstated,
                "fees": sum(t["fee"] for t in txns),
                "consistent": reinstated == (withdrawn if won else 0),
            }
        )
    return entries


def _accounts(store) -> list[dict[str, Any]]:
    entries = []
    for account_id, account in store.accounts.items():
        moved: dict[str, dict[str, int]] = {
            "transferred": {},
            "reversed": {},
            "paid_out": {},
            "debited": {},
        }
        for transfer in store.transfers.values():
            if transfer["destination"] == account_id:
                _add(moved["transferred"], transfer["currency"], transfer["amount"])
                _add(moved["reversed"], transfer["currency"], transfer["amount_reversed"])
        for payout in store.payouts.values():
            # A failed payout's money came back to the account.
            owned = store.txn_owner.get(payout["balance_transaction"]) == account_id
            if owned and payout["status"] != "failed":
                _add(moved["paid_out"], payout["currency"], payout["amount"])
        for debit in store.account_debits.values():
            if debit["source_account"] == account_id:
                _add(moved["debited"], debit["currency"], debit["amount"])
        balances = dict(store.balances.get(account_id, {}))
        reversed_, paid_out, debited = moved["reversed"], moved["paid_out"], moved["debited"]
        expected = {
            currency: amount
            - reversed_.get(currency, 0)
            - paid_out.get(currency, 0)
            - debited.get(currency, 0)
            for currency, amount in moved["transferred"].items()
        }
        entries.append(
            {
                "id": account_id,
                "balances": balances,
                **moved,
                "transfers_capability": account["capabilities"].get("transfers"),
                "deauthorized": account_id in store.deauthorized,
                "consistent": {c: a for c, a in balances.items() if a}
                == {c: a for c, a in expected.items() if a}
                and all(a >= 0 for a in balances.values()),
            }
        )
    return entries


def _money_totals(store, charges, disputes) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {
        name: {}
        for name in ("settled", "fees", "refunds_settled", "refunds_restored", "dispute_fees")
    }
    totals.update(disputes_withdrawn={}, disputes_reinstated={})
    for charge in charges:
        settlement = charge["settlement"]
        if settlement:
            _add(totals["settled"], settlement["currency"], settlement["amount"])
            _add(totals["fees"], settlement["currency"], settlement["fee"])
    for txn in store.balance_transactions.values():
        if txn["type"] == "refund":
            _add(totals["refunds_settled"], txn["currency"], -txn["amount"])
        elif txn["type"] == "refund_failure":
            _add(totals["refunds_restored"], txn["currency"], txn["amount"])
    for dispute in disputes:
        currency = dispute["settlement_currency"]
        if currency:
            _add(totals["disputes_withdrawn"], currency, dispute["withdrawn"])
            _add(totals["disputes_reinstated"], currency, dispute["reinstated"])
            _add(totals["dispute_fees"], currency, dispute["fees"])
    return totals


def build_ledger(store) -> dict[str, Any]:
    transfers, charges = _transfers(store), _charges(store)
    disputes, accounts = _disputes(store), _accounts(store)
    paid_out: dict[str, int] = {}
    for account in accounts:
        for currency, amount in account["paid_out"].items():
            _add(paid_out, currency, amount)
    return {
        "transfers": transfers,
        "charges": charges,
        "disputes": disputes,
        "accounts": accounts,
        "platform_balance": store.platform_balance(),
        "totals": {
            "transferred": sum(t["amount"] for t in transfers),
            "reversed": sum(t["amount_reversed"] for t in transfers),
            "refunded": sum(c["amount_refunded"] for c in charges),
            **_money_totals(store, charges, disputes),
            "paid_out": paid_out,
        },
        "consistent": all(
            entry["consistent"] for entry in (*transfers, *charges, *disputes, *accounts)
        ),
    }
