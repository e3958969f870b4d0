"""Work that a transaction makes due is started when it is due, not at beat's next tick.

- A refund schedules reversals: one **drain** of the reversal worker starts right after commit.
  Wake-ups coalesce: a burst of refunds sends one drain (and at most one more while it runs),
  not one task per refund fighting for rows, because a drain takes every due row.
- A payment creates transfers: one task per order pays that order's sellers.
- A failed attempt due again in a few seconds wakes the worker at that moment (a countdown task,
  one per second of due time at most); longer backoffs are left to the sweep.

Services call these instead of importing the Celery tasks: the tasks import the services, so
tasks are sent by name from Celery's registry, and this module never imports them.

Nothing here is the only way work gets done: beat's sweep finds whatever a lost message left
behind, and the claim (``SKIP LOCKED`` and a lease) makes a wake-up and the sweep racing for a
row harmless. So a broker (or Redis) that cannot be reached costs a warning and some latency,
never an error to the caller: its transaction has committed, and answering Stripe 500 now would
only make it redeliver an event that is already stored.
"""

import logging
from datetime import datetime, timedelta
from functools import lru_cache

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnreachable

from config.celery import app as celery_app

logger = logging.getLogger(__name__)

_NAMESPACE = "payouts:wake"
# How long a wake-up's coalescing mark lives if its task is lost: new wake-ups for the same work
# are absorbed by it until then (the sweep covers the gap).
_MARK_SECONDS = 60
# Backoffs longer than this are left to beat's sweep rather than to a countdown task, which a
# Redis broker holds in the worker's memory until it is due.
COUNTDOWN_LIMIT = timedelta(minutes=15)


@lru_cache(maxsize=2)
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


def _first_mark(name: str) -> bool:
    """True for the first wake-up of ``name`` while its mark lives (the others coalesce)."""
    client = _redis(settings.CELERY_BROKER_URL)
    return bool(client.set(f"{_NAMESPACE}:{name}", 1, nx=True, ex=_MARK_SECONDS))


def clear_mark(name: str) -> None:
    """Clear the wake-up mark as a drain starts.

    A drain starts: wake-ups from now on need a new drain (the running one may have passed
    their rows already)."""
    try:
        _redis(settings.CELERY_BROKER_URL).delete(f"{_NAMESPACE}:{name}")
    except redis.RedisError as error:
        logger.warning("could not clear a wake-up mark", extra={"mark": name, "error": str(error)})


def _send(task_name: str, *, mark: str | None = None, eta: datetime | None = None, **kwargs):
    # Asked of the Celery app, which always has an answer: ``CELERY_TASK_ALWAYS_EAGER`` is a
    # Django setting only the tests define, and reading it crashed every failed attempt
    # elsewhere.
    if eta is not None and celery_app.conf.task_always_eager:
        # An eager Celery (the tests) would run a countdown at once, ahead of its time, inside
        # the attempt that failed: the sweep is the countdown there.
        return
    try:
        if mark is not None and not _first_mark(mark):
            return
        # By name, from Celery's registry: the services that wake workers never import the
        # tasks that run them (which import the services).
        celery_app.tasks[f"payouts.tasks.{task_name}"].apply_async(kwargs=kwargs, eta=eta)
    except (BrokerUnreachable, redis.RedisError) as error:
        logger.warning(
            "could not wake a worker; beat's sweep will pick the work up",
            extra={"task": task_name, "error": str(error), **kwargs},
        )


def _after_commit(task_name: str, **options) -> None:
    transaction.on_commit(lambda: _send(task_name, **options))


def reversals_due_after_commit() -> None:
    """Reversals became due now: drain them once the transaction commits."""
    _after_commit("reversals_drain", mark="reversals")


def reversals_due_at(when: datetime) -> None:
    """A reversal is due again at ``when`` (after a failed attempt): wake a drain then."""
    if when - timezone.now() <= COUNTDOWN_LIMIT:
        second = int(when.timestamp())
        _after_commit("reversals_drain", mark=f"reversals:{second}", eta=when)


def transfers_due_at(when: datetime) -> None:
    """A seller transfer is due again at ``when``: wake the transfer sender then."""
    if when - timezone.now() <= COUNTDOWN_LIMIT:
        second = int(when.timestamp())
        _after_commit("transfers_send_due", mark=f"transfers:{second}", eta=when)


def debits_due_at(when: datetime) -> None:
    """A seller's debt may be debited from their account at ``when``: wake the debit worker.

    Now (a policy that allows debits, a debt already old enough) or later (a debt just booked,
    a debit retried after an error); a time past the countdown limit is left to the sweep."""
    if when - timezone.now() <= COUNTDOWN_LIMIT:
        second = int(when.timestamp())
        _after_commit("debts_debit_due", mark=f"debits:{second}", eta=when)


def send_transfers_after_commit(*, order_id: int) -> None:
    """Pay the order's due seller transfers once the current transaction commits."""
    _after_commit("order_transfers_send", order_id=order_id)


def sync_charge_refunds_after_commit(*, charge_id: str) -> None:
    """Sync the charge's refunds from Stripe once the transaction commits.

    Fetch the charge's refunds from Stripe (outside the request) once the transaction
    commits."""
    _after_commit("refunds_sync_for_charge", charge_id=charge_id)


def payout_paid_after_commit(*, payout_id: int) -> None:
    """A seller's bank payout was paid: read what it carried at Stripe once this commits."""
    _after_commit("payout_reconcile", payout_id=payout_id)
