"""Celery tasks: one line each, calling one service and returning its small summary."""

from celery import shared_task
from django.conf import settings

from approvals.services import approvals_sweep
from console.health import heartbeat_stamp
from payouts.conf import DAILY_CHECK_WINDOW, WEEKLY_CHECK_WINDOW
from payouts.services.bank_payouts import payout_reconcile, payouts_reconcile_unread
from payouts.services.counters import transfer_counts_compact
from payouts.services.holds import holds_release_due
from payouts.services.ledger_check import ledger_check_daily, ledger_check_weekly
from payouts.services.reconciliation import reconciliation_run
from payouts.services.refunds import refunds_sync_for_charge, staff_refunds_settle
from payouts.services.retention import webhook_events_expire
from payouts.services.reversals import reversals_drain, reversals_process_due
from payouts.services.transfers import transfers_send_due
from payouts.services.webhooks import webhook_events_process_stranded


@shared_task
def reversals_process_due() -> dict[str, int]:
    return reversals_process_due()


@shared_task
def reversals_drain() -> dict[str, int]:
    return reversals_drain()


@shared_task
def transfers_send_due() -> dict[str, int]:
    if not settings.PAYOUTS.transfer_retry.enabled:
        return {"disabled": 1}
    return transfers_send_due()


@shared_task
def order_transfers_send(order_id: int) -> dict[str, int]:
    return transfers_send_due(order_id=order_id)


@shared_task
def refunds_sync_for_charge(charge_id: str) -> dict[str, int]:
    return {"scheduled_reversals": refunds_sync_for_charge(charge_id=charge_id)}


@shared_task
def reconciliation_run_daily() -> dict[str, int]:
    return reconciliation_run(since=DAILY_CHECK_WINDOW)


@shared_task
def reconciliation_run_weekly() -> dict[str, int]:
    # Every refunded order's shares (the database only); at Stripe, the last week.
    return reconciliation_run(since=None, at_stripe_since=WEEKLY_CHECK_WINDOW)


@shared_task
def staff_refunds_settle() -> dict[str, int]:
    return staff_refunds_settle()


@shared_task
def webhook_events_process_stranded() -> dict[str, int]:
    return webhook_events_process_stranded()


@shared_task
def ledger_check_daily() -> dict[str, int]:
    return ledger_check_daily()


@shared_task
def holds_release_due() -> dict[str, int]:
    return holds_release_due()


@shared_task
def ledger_check_weekly() -> dict[str, int]:
    return ledger_check_weekly()


@shared_task
def transfer_counts_compact() -> dict[str, int]:
    return transfer_counts_compact()


@shared_task
def webhook_events_expire() -> dict[str, int]:
    return webhook_events_expire()


@shared_task
def heartbeat() -> dict[str, int]:
    return heartbeat_stamp()


@shared_task
def payout_reconcile(payout_id: int) -> dict[str, int | str]:
    return payout_reconcile(payout_id=payout_id).summary()


@shared_task
def payouts_reconcile_unread() -> dict[str, int]:
    return payouts_reconcile_unread()


@shared_task
def approvals_sweep() -> dict[str, int]:
    return approvals_sweep()
