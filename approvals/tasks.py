"""The approvals' Celery task: finish approved requests whose run was cut short, expire old ones."""

from celery import shared_task

from approvals import services


@shared_task
def approvals_sweep() -> dict[str, int]:
    return services.approvals_sweep()
