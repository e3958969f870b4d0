"""Reads that may be served by a read replica (``DATABASE_REPLICA_URL``), and only those.

Nothing goes to the replica unless the code asks for it: the reads inside ``replica_reads()``
(``/metrics``, the operator console's pages) of the domain apps' tables. Everything else stays
on the primary, whatever the caller does:

- every write (``db_for_write`` is always the primary), and every ``select_for_update``;
- any read made while a transaction is open on the primary: the workers' claims and every
  service that reads in order to write run inside one, and must see their own writes and hold
  their locks where they write;
- sessions, users and permissions: a login just written must be read back at once, and a
  replica lags by a little.

Without ``DATABASE_REPLICA_URL`` the router sends everything to the primary.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import DEFAULT_DB_ALIAS, connections

REPLICA = "replica"
# The apps whose rows the console and the metrics read; a replica's small lag is fine there.
REPLICA_APPS = frozenset({"payouts", "marketplace", "ledger"})

_replica_reads: ContextVar[bool] = ContextVar("replica_reads", default=False)


def replica_configured() -> bool:
    return REPLICA in connections.settings


def reads_alias() -> str:
    """The database alias a read marked for the replica goes to now.

    That is the replica inside ``replica_reads()`` when one is configured and no transaction is
    open on the primary, else the primary."""
    if not (_replica_reads.get() and replica_configured()):
        return DEFAULT_DB_ALIAS
    if connections[DEFAULT_DB_ALIAS].in_atomic_block:
        return DEFAULT_DB_ALIAS
    return REPLICA


@contextmanager
def replica_reads() -> Iterator[str]:
    """Send the reads inside the block to the replica when it may serve them.

    Marks the reads of the block as fit for the replica; yields the alias they go to (for a
    ``transaction.atomic(using=…)`` around them)."""
    token = _replica_reads.set(True)
    try:
        yield reads_alias()
    finally:
        _replica_reads.reset(token)


class ReplicaRouter:
    """Database router: marked reads to the replica, everything else to the primary.

    Listed in ``DATABASE_ROUTERS``: marked reads of the domain apps go to the replica, all else
    to the primary; migrations run only on the primary (the replica follows it)."""

    def db_for_read(self, model, **hints) -> str:
        if model._meta.app_label not in REPLICA_APPS:
            return DEFAULT_DB_ALIAS
        return reads_alias()

    def db_for_write(self, model, **hints) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints) -> bool:
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints) -> bool:
        return db == DEFAULT_DB_ALIAS
