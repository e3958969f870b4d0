"""The console's one Celery task: beat's heartbeat, which /healthz reads."""

from celery import shared_task

from console import health


@shared_task
def heartbeat_stamp() -> dict[str, int]:
    return health.heartbeat_stamp()
