"""Celery tasks: one line each, calling one service and returning its small summary."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings

from payouts.services.reconciliation import transfers_compare_with_stripe
from payouts.services.refunds import refunds_sync_for_charge
from payouts.services.reversals import reversals_process_due
from payouts.services.transfers import transfers_send_due


@shared_task
def process_reversals() -> dict[str, int]:
    return reversals_process_due()


@shared_task
def retry_failed_transfers() -> dict[str, int]:
    if not settings.PAYOUTS.transfer_retry.enabled:
        return {"disabled": 1}
    return transfers_send_due()


@shared_task
def send_transfers(order_id: int) -> dict[str, int]:
    return transfers_send_due(order_id=order_id)


@shared_task
def sync_charge_refunds(charge_id: str) -> dict[str, int]:
    return {"scheduled_reversals": refunds_sync_for_charge(charge_id=charge_id)}


@shared_task
def reconcile_transfers() -> dict[str, int]:
    differences = transfers_compare_with_stripe(repair=True, since=timedelta(days=30))
    return {"differences": len(differences), "repaired": sum(d.repaired for d in differences)}
