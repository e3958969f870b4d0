"""Reads off the primary (``DATABASE_REPLICA_URL``, ``config/db_router.py``): the reads marked
for the replica go there; a worker's claim, a row lock, a read inside a transaction, a login
and every write never do."""

import pytest
from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config.db_router import REPLICA, ReplicaRouter, reads_alias, replica_reads
from console.metrics import metrics_exposition
from payouts.models import SellerTransfer
from payouts.transfer.locks import claim_due
from payouts.transfer.transitions import TransferStatus
from tests.factories import SellerTransferFactory


def test_without_a_replica_every_read_stays_on_the_primary():
    with replica_reads() as alias:
        assert alias == reads_alias() == DEFAULT_DB_ALIAS
        assert ReplicaRouter().db_for_read(SellerTransfer) == DEFAULT_DB_ALIAS


@pytest.fixture(scope="module")
def replica():
    """A replica alias for the test database itself: the same rows through another connection,
    so the assertions are about where each query went. Module-wide, so that it exists before
    the test's database access is set up and the test may name it."""
    connections.settings[REPLICA] = dict(connections.settings[DEFAULT_DB_ALIAS])
    try:
        yield connections[REPLICA]
    finally:
        connections[REPLICA].close()
        del connections[REPLICA]
        del connections.settings[REPLICA]


# Real transactions: the replica's connection must see the rows committed on the primary's.
@pytest.mark.django_db(transaction=True, databases=[DEFAULT_DB_ALIAS, REPLICA])
def test_marked_reads_go_to_the_replica_and_claims_and_writes_never_do(replica):
    router = ReplicaRouter()
    due = SellerTransferFactory(reversal_due=True, next_retry_at=timezone.now())

    with replica_reads() as alias, CaptureQueriesContext(replica) as on_replica:
        assert alias == REPLICA
        assert router.db_for_read(SellerTransfer) == REPLICA
        assert router.db_for_write(SellerTransfer) == DEFAULT_DB_ALIAS
        assert router.db_for_read(get_user_model()) == DEFAULT_DB_ALIAS  # logins, sessions
        assert SellerTransfer.objects.select_for_update().db == DEFAULT_DB_ALIAS
        metrics_exposition()
        scraped = len(on_replica.captured_queries)
        claimed = claim_due(statuses=[TransferStatus.REVERSAL_PENDING], now=timezone.now(), limit=5)
        SellerTransferFactory(completed=True)
        with transaction.atomic():  # a service reading in order to write: its reads stay too
            assert router.db_for_read(SellerTransfer) == DEFAULT_DB_ALIAS
            SellerTransfer.objects.get(pk=due.pk)
        after = len(on_replica.captured_queries)

    assert scraped > 0  # the scrape read from the replica
    assert after == scraped  # the claim, the write and the read to write did not
    assert [row.pk for row in claimed] == [due.pk]
    assert router.db_for_read(SellerTransfer) == DEFAULT_DB_ALIAS  # outside the block
