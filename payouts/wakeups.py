"""Work that a transaction makes due now is started right after it commits.

Services call these instead of importing the Celery tasks: the tasks import the services, so
the tasks module is looked up when a wake-up is sent, not when this module is loaded. Nothing
here is the only way work gets done: beat's sweep finds whatever a lost message left behind, and
the claim (``SKIP LOCKED`` and a lease) makes a wake-up and the sweep racing for a row harmless.
"""

from importlib import import_module

from django.db import transaction


def _tasks():
    return import_module("payouts.tasks")


def send_transfers_after_commit(*, order_id: int) -> None:
    """Pay the order's due seller transfers once the current transaction commits."""
    transaction.on_commit(lambda: _tasks().send_transfers.delay(order_id=order_id))


def sync_charge_refunds_after_commit(*, charge_id: str) -> None:
    """Fetch the charge's refunds from Stripe (outside the request) once the transaction
    commits."""
    transaction.on_commit(lambda: _tasks().sync_charge_refunds.delay(charge_id=charge_id))
