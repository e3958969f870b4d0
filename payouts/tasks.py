"""Celery tasks: one line each, calling one service and returning its small summary.

A task has the name of the service it runs (``payouts.tasks.reversals_drain`` runs
``services.reversals.reversals_drain``), so a queue, a beat entry and a log line name the code
they ran. Services are imported as modules here, since the task takes the function's name.
"""

from celery import shared_task
from django.conf import settings

from payouts.conf import DAILY_CHECK_WINDOW, WEEKLY_CHECK_WINDOW
from payouts.services import (
    bank_payouts,
    counters,
    debits,
    holds,
    ledger_check,
    reconciliation,
    refunds,
    reserves,
    retention,
    reversals,
    transfers,
    webhooks,
)


@shared_task
def reversals_process_due() -> dict[str, int]:
    return reversals.reversals_process_due()


@shared_task
def reversals_drain() -> dict[str, int]:
    return reversals.reversals_drain()


@shared_task
def transfers_send_due() -> dict[str, int]:
    if not settings.PAYOUTS.transfer_retry.enabled:
        return {"disabled": 1}
    return transfers.transfers_send_due()


@shared_task
def order_transfers_send(order_id: int) -> dict[str, int]:
    return transfers.transfers_send_due(order_id=order_id)


@shared_task
def refunds_sync_for_charge(charge_id: str) -> dict[str, int]:
    return {"scheduled_reversals": refunds.refunds_sync_for_charge(charge_id=charge_id)}


@shared_task
def reconciliation_run_daily() -> dict[str, int]:
    return reconciliation.reconciliation_run(since=DAILY_CHECK_WINDOW)


@shared_task
def reconciliation_run_weekly() -> dict[str, int]:
    # Every refunded order's shares (the database only); at Stripe, the last week.
    return reconciliation.reconciliation_run(since=None, at_stripe_since=WEEKLY_CHECK_WINDOW)


@shared_task
def staff_refunds_settle() -> dict[str, int]:
    return refunds.staff_refunds_settle()


@shared_task
def webhook_events_process_stranded() -> dict[str, int]:
    return webhooks.webhook_events_process_stranded()


@shared_task
def ledger_check_daily() -> dict[str, int]:
    return ledger_check.ledger_check_daily()


@shared_task
def ledger_check_weekly() -> dict[str, int]:
    return ledger_check.ledger_check_weekly()


@shared_task
def holds_release_due() -> dict[str, int]:
    return holds.holds_release_due()


@shared_task
def transfer_counts_compact() -> dict[str, int]:
    return counters.transfer_counts_compact()


@shared_task
def webhook_events_expire() -> dict[str, int]:
    return retention.webhook_events_expire()


@shared_task
def payout_reconcile(payout_id: int) -> dict[str, int | str]:
    return bank_payouts.payout_reconcile(payout_id=payout_id).summary()


@shared_task
def payouts_reconcile_unread() -> dict[str, int]:
    return bank_payouts.payouts_reconcile_unread()


@shared_task
def debts_debit_due() -> dict[str, int]:
    return debits.debts_debit_due()


@shared_task
def reserves_release_due() -> dict[str, int]:
    return reserves.reserves_release_due()
