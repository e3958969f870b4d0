"""The guarded transition, ``SellerTransfer.objects.transition``: one conditional UPDATE plus one
audit row for an allowed move; nothing at all for a forbidden, stale or concurrent one."""

import threading
import time

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from payouts.models import SellerTransfer, SellerTransferEvent
from payouts.transfer.transitions import ConcurrentTransition, TransferStatus, TransitionNotAllowed
from tests.factories import SellerTransferFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_an_allowed_move_updates_the_row_writes_one_audit_event_and_refreshes_the_instance():
    transfer = SellerTransferFactory(status=TransferStatus.PENDING)
    user = UserFactory()

    SellerTransfer.objects.transition(
        transfer,
        TransferStatus.COMPLETED,
        caused_by="staff:alice",
        user=user,
        detail={"why": "test"},
        stripe_transfer_id="tr_123",
    )

    row = SellerTransfer.objects.get(pk=transfer.pk)
    assert (row.status, row.stripe_transfer_id) == (TransferStatus.COMPLETED, "tr_123")
    assert (transfer.status, transfer.stripe_transfer_id) == (TransferStatus.COMPLETED, "tr_123")
    event = SellerTransferEvent.objects.get(transfer=transfer)
    assert (event.from_status, event.to_status, event.caused_by) == (
        TransferStatus.PENDING,
        TransferStatus.COMPLETED,
        "staff:alice",
    )
    assert event.user == user
    assert event.detail == {"why": "test"}


def test_updated_at_moves_forward_even_though_update_skips_auto_now():
    transfer = SellerTransferFactory(status=TransferStatus.PENDING)
    before = SellerTransfer.objects.get(pk=transfer.pk).updated_at

    SellerTransfer.objects.transition(transfer, TransferStatus.FAILED, caused_by="test")

    assert transfer.updated_at > before


def test_a_forbidden_move_raises_before_touching_the_database(django_assert_num_queries):
    transfer = SellerTransferFactory(status=TransferStatus.PENDING)

    with django_assert_num_queries(0), pytest.raises(TransitionNotAllowed):
        SellerTransfer.objects.transition(transfer, TransferStatus.REVERSED, caused_by="test")

    assert SellerTransfer.objects.get(pk=transfer.pk).status == TransferStatus.PENDING
    assert not SellerTransferEvent.objects.exists()


def test_a_stale_instance_gets_concurrent_transition_and_writes_nothing():
    transfer = SellerTransferFactory(status=TransferStatus.PENDING)
    stale = SellerTransfer.objects.get(pk=transfer.pk)
    SellerTransfer.objects.transition(transfer, TransferStatus.COMPLETED, caused_by="first")

    with pytest.raises(ConcurrentTransition):
        SellerTransfer.objects.transition(stale, TransferStatus.FAILED, caused_by="second")

    assert SellerTransfer.objects.get(pk=transfer.pk).status == TransferStatus.COMPLETED
    assert SellerTransferEvent.objects.filter(transfer=transfer).count() == 1


def test_a_same_state_move_records_another_attempt():
    transfer = SellerTransferFactory(reversal_due=True, retry_count=0)
    later = timezone.now() + timezone.timedelta(minutes=1)

    SellerTransfer.objects.transition(
        transfer,
        TransferStatus.REVERSAL_PENDING,
        caused_by="worker",
        retry_count=1,
        next_retry_at=later,
    )

    assert (transfer.status, transfer.retry_count, transfer.next_retry_at) == (
        TransferStatus.REVERSAL_PENDING,
        1,
        later,
    )
    assert SellerTransferEvent.objects.filter(transfer=transfer).count() == 1


def test_status_cannot_be_smuggled_in_as_a_field():
    transfer = SellerTransferFactory(status=TransferStatus.PENDING)

    with pytest.raises(TypeError):
        SellerTransfer.objects.transition(
            transfer, TransferStatus.COMPLETED, caused_by="test", status=TransferStatus.REVERSED
        )


def test_audit_events_refuse_update_and_delete_at_the_database():
    transfer = SellerTransferFactory(status=TransferStatus.PENDING)
    SellerTransfer.objects.transition(transfer, TransferStatus.FAILED, caused_by="test")
    event = SellerTransferEvent.objects.get()

    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        SellerTransferEvent.objects.filter(pk=event.pk).update(caused_by="forged")
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        event.delete()


def _backend_pids_waiting_on_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)  # two threads, two connections, one row lock
def test_two_concurrent_transitions_of_one_row_exactly_one_wins():
    transfer = SellerTransferFactory(status=TransferStatus.PENDING)
    first_has_updated = threading.Event()
    release_first = threading.Event()
    outcomes: dict[str, object] = {}

    def first():
        try:
            mine = SellerTransfer.objects.get(pk=transfer.pk)
            # Hold the winning transaction open so the second really collides with it.
            with transaction.atomic():
                SellerTransfer.objects.transition(mine, TransferStatus.COMPLETED, caused_by="first")
                first_has_updated.set()
                release_first.wait(10)
            outcomes["first"] = "won"
        except Exception as exc:  # noqa: BLE001 - reported through outcomes
            outcomes["first"] = exc
        finally:
            connections.close_all()

    def second():
        try:
            mine = SellerTransfer.objects.get(pk=transfer.pk)  # reads `pending`, like the first
            first_has_updated.wait(10)
            SellerTransfer.objects.transition(mine, TransferStatus.FAILED, caused_by="second")
            outcomes["second"] = "won"
        except Exception as exc:  # noqa: BLE001 - reported through outcomes
            outcomes["second"] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    # Let the first commit only once the second is blocked on the row lock in Postgres.
    deadline = time.monotonic() + 10
    while _backend_pids_waiting_on_a_lock() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _backend_pids_waiting_on_a_lock() == 1
    release_first.set()
    for thread in threads:
        thread.join(10)

    assert outcomes["first"] == "won"
    assert isinstance(outcomes["second"], ConcurrentTransition)
    assert SellerTransfer.objects.get(pk=transfer.pk).status == TransferStatus.COMPLETED
    assert SellerTransferEvent.objects.filter(transfer=transfer).count() == 1
