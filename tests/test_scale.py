"""A year of a big marketplace: what keeps each request's cost flat as the tables grow
(docs/scale.md). The counters behind /metrics always equal a recount, whoever wrote the rows;
a scrape counts no big table; the inbox forgets only processed events past their retention;
ledger_check can look at only what changed. (The replica: test_scale_replica.py.)"""

import threading
from dataclasses import dataclass, replace
from datetime import UTC, timedelta
from io import StringIO
from pathlib import Path

import environ
import psycopg
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Count, F
from django.db.models.functions import TruncHour
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from console.dashboard import moves_by_hour
from console.display import CappedCountPaginator
from console.metrics import metrics_exposition
from ledger.models import BreakKind, CheckRun
from payouts import selectors, tasks
from payouts.conf import load_payouts_config
from payouts.models import (
    SellerTransfer,
    SellerTransferEvent,
    TransferCount,
    TransferCountKind,
    WebhookEvent,
    WebhookOutcome,
)
from payouts.services.counters import (
    _FOLD,
    HOURLY_FOR,
    transfer_counts_compact,
    transfer_counts_rebuild,
)
from payouts.services.ledger_check import ledger_check
from payouts.services.retention import webhook_events_expire
from payouts.transfer.transitions import TransferStatus
from tests.builders import (
    DISPUTE_EVENTS,
    STRIPE_500,
    event_at,
    make_event,
    paid_order,
    post_event,
    refund_at_stripe,
    start_django,
)
from tests.factories import (
    PaidOrderFactory,
    RefundFactory,
    SellerFactory,
    SellerTransferEventFactory,
    SellerTransferFactory,
    WebhookEventFactory,
)

ROOT = Path(__file__).resolve().parent.parent


def counters_match_a_recount() -> None:
    assert selectors.transfer_counts_by_status() == selectors.transfer_counts_by_status_recount()
    assert selectors.transition_counts() == selectors.transition_counts_recount()


def refund(client, stripe_client, order, amount, capture) -> None:
    event = make_event("refund.created", refund_at_stripe(stripe_client, order, amount))
    with capture(execute=True):
        assert post_event(client, event).status_code == 200


# --- The counters behind /metrics -------------------------------------------------------------


@pytest.mark.django_db
def test_the_counters_equal_a_recount_after_every_flow(
    client, sandbox, stripe_client, deliver, settings, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    # Paid, then refunded in part and reversed.
    order, _ = paid_order(stripe_client, [1000, 2000, 3333], webhook=client)
    refund(client, stripe_client, order, 1000, capture)
    counters_match_a_recount()
    # A reversal the seller's balance refuses (debt), then netted from their next order.
    order, [row] = paid_order(stripe_client, [2000], webhook=client)
    sandbox.simulate_payout(row.seller.stripe_account_id, 1800, "usd")
    refund(client, stripe_client, order, None, capture)
    paid_order(stripe_client, [3000], webhook=client, sellers=[row.seller])
    # A chargeback recovered, then given back when won.
    order, _ = paid_order(stripe_client, [1000, 2000], webhook=client)
    dispute = sandbox.open_dispute(order.stripe_charge_id)
    deliver(*DISPUTE_EVENTS)
    sandbox.advance_dispute(dispute["id"], "won")
    deliver(*DISPUTE_EVENTS)
    counters_match_a_recount()
    # A send that fails, then a held order refunded in full before it is released.
    sandbox.script("transfers.create", [STRIPE_500])
    paid_order(stripe_client, [1500], webhook=client)
    settings.PAYOUTS = replace(settings.PAYOUTS, transfer_hold=timedelta(days=7))
    order, _ = paid_order(stripe_client, [1000, 2000], webhook=client)
    refund(client, stripe_client, order, None, capture)

    counts = selectors.transfer_counts_by_status()
    for status in (
        TransferStatus.COMPLETED,
        TransferStatus.PARTIALLY_REVERSED,
        TransferStatus.REVERSAL_REFUSED,
        TransferStatus.FAILED,
    ):
        assert counts[status] > 0, counts
    assert counts[TransferStatus.PERMANENTLY_FAILED] >= 2
    counters_match_a_recount()
    transfer_counts_compact()
    counters_match_a_recount()


@pytest.mark.django_db
def test_the_counters_follow_rows_written_by_bulk_inserts_raw_sql_and_deletes():
    order = PaidOrderFactory()
    SellerTransfer.objects.bulk_create(
        SellerTransfer(order=order, seller=SellerFactory(), amount=900, currency="usd")
        for _ in range(2)
    )
    rows = SellerTransferFactory.create_batch(3, completed=True)
    SellerTransferEventFactory.create_batch(2, transfer=rows[0])
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE payouts_sellertransfer SET status = 'permanently_failed' WHERE id = %s",
            [rows[1].pk],
        )
        cursor.execute("DELETE FROM payouts_sellertransfer WHERE id = %s", [rows[2].pk])

    counts = selectors.transfer_counts_by_status()

    assert (
        counts[TransferStatus.PENDING],
        counts[TransferStatus.COMPLETED],
        counts[TransferStatus.PERMANENTLY_FAILED],
    ) == (2, 1, 1)
    assert selectors.transition_counts()[(TransferStatus.PENDING, TransferStatus.COMPLETED)] == 2
    counters_match_a_recount()


@pytest.mark.django_db
def test_a_move_to_the_same_status_adds_no_counter_row():
    row = SellerTransferFactory(reversal_due=True)
    before = TransferCount.objects.count()

    SellerTransfer.objects.filter(pk=row.pk).update(
        status=TransferStatus.REVERSAL_PENDING, retry_count=1
    )

    assert TransferCount.objects.count() == before


@pytest.mark.django_db
def test_folding_leaves_one_row_per_count_and_changes_no_count():
    for status in (TransferStatus.PENDING, TransferStatus.COMPLETED, TransferStatus.FAILED):
        SellerTransferFactory.create_batch(2, status=status)
    SellerTransfer.objects.filter(status=TransferStatus.FAILED).update(
        status=TransferStatus.PERMANENTLY_FAILED
    )
    before = (selectors.transfer_counts_by_status(), selectors.transition_counts())

    folded = transfer_counts_compact()

    # Inserted pending, completed and failed; failed → permanently_failed.
    assert folded["rows_after"] == TransferCount.objects.count() == 4
    assert folded["rows_before"] > folded["rows_after"]
    assert (selectors.transfer_counts_by_status(), selectors.transition_counts()) == before


def moves_in_hours(since) -> dict:
    return {
        (hour, edge): n
        for hour, edges in moves_by_hour(since=since).items()
        for edge, n in edges.items()
    }


def moves_in_hours_recount(since) -> dict:
    hours = (
        SellerTransferEvent.objects.filter(created_at__gte=since)
        .annotate(hour=TruncHour("created_at", tzinfo=UTC))
        .values_list("hour", "from_status", "to_status")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {(hour, (from_status, to_status)): n for hour, from_status, to_status, n in hours}


@pytest.mark.django_db
def test_moves_are_kept_per_hour_for_eight_days_then_by_edge_and_no_count_changes():
    now = timezone.now()
    row = SellerTransferFactory(completed=True)
    hour = now.replace(minute=30)
    for age in (timedelta(0), timedelta(hours=5), timedelta(days=6), timedelta(days=9)):
        event_at(row, TransferStatus.PENDING, TransferStatus.COMPLETED, hour - age)
    event_at(
        row, TransferStatus.PENDING, TransferStatus.COMPLETED, hour - timedelta(hours=5, minutes=1)
    )
    week = now - timedelta(days=7)
    before = selectors.transition_counts()
    assert moves_in_hours(week) == moves_in_hours_recount(week)
    assert len(moves_in_hours(week)) == 3  # two events in one hour

    transfer_counts_compact()

    assert moves_in_hours(week) == moves_in_hours_recount(week)
    assert selectors.transition_counts() == before
    # The event nine days old is still counted, by edge only; the others keep their hour.
    hourly = TransferCount.objects.filter(kind=TransferCountKind.MOVES, hour__isnull=False)
    assert sum(hourly.values_list("n", flat=True)) == 4
    assert TransferCount.objects.get(kind=TransferCountKind.MOVES, hour__isnull=True).n == 1
    assert transfer_counts_rebuild() and moves_in_hours(week) == moves_in_hours_recount(week)


@pytest.mark.django_db
def test_a_rebuild_counts_rows_written_with_the_triggers_off():
    SellerTransferFactory.create_batch(2, completed=True)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")  # a bulk load's setting
        cursor.execute("UPDATE payouts_sellertransfer SET status = 'reversed'")
        cursor.execute("SET LOCAL session_replication_role = origin")
    assert selectors.transfer_counts_by_status()[TransferStatus.REVERSED] == 0

    transfer_counts_rebuild()

    counters_match_a_recount()
    assert selectors.transfer_counts_by_status()[TransferStatus.REVERSED] == 2


@pytest.mark.django_db(transaction=True)  # a fold committing on another connection
def test_a_rebuild_that_starts_while_a_fold_is_open_counts_every_row_once():
    SellerTransferFactory.create_batch(3)
    settings = connection.settings_dict
    fold = psycopg.connect(
        host=settings["HOST"], port=settings["PORT"], user=settings["USER"], dbname=settings["NAME"]
    )
    fold.execute(_FOLD, {"hourly_for": HOURLY_FOR})  # folded, not committed yet
    rebuilt = threading.Thread(target=lambda: (transfer_counts_rebuild(), connection.close()))
    rebuilt.start()
    rebuilt.join(timeout=1)  # waiting on the fold
    fold.commit()
    fold.close()
    rebuilt.join(timeout=30)

    assert not rebuilt.is_alive()
    counters_match_a_recount()


@pytest.mark.slow  # threads with their own connections, committing
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_and_folds_never_wait_on_each_other_nor_lose_a_count():
    SellerTransferFactory.create_batch(40, status=TransferStatus.PENDING)
    ids = list(SellerTransfer.objects.values_list("pk", flat=True))
    errors: list[BaseException] = []
    stop = threading.Event()

    def move(chunk: list[int]) -> None:
        try:
            for pk in chunk:  # each row through three statuses, one transaction per move
                for status in (
                    TransferStatus.FAILED,
                    TransferStatus.PENDING,
                    TransferStatus.COMPLETED,
                ):
                    with transaction.atomic():
                        SellerTransfer.objects.filter(pk=pk).update(status=status)
                        SellerTransferEvent.objects.create(
                            transfer_id=pk, from_status="", to_status=status, caused_by="test"
                        )
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)
        finally:
            connection.close()

    def fold() -> None:
        try:
            while not stop.is_set():
                transfer_counts_compact()
        except BaseException as error:  # noqa: BLE001
            errors.append(error)
        finally:
            connection.close()

    folder = threading.Thread(target=fold)
    folder.start()
    movers = [threading.Thread(target=move, args=(ids[i::4],)) for i in range(4)]
    for thread in movers:
        thread.start()
    for thread in movers:
        thread.join(timeout=120)
    stop.set()
    folder.join(timeout=60)

    assert errors == []
    assert selectors.transfer_counts_by_status()[TransferStatus.COMPLETED] == 40
    counters_match_a_recount()


@pytest.mark.django_db
def test_a_scrape_reads_the_counters_and_never_counts_the_transfer_or_audit_tables():
    SellerTransferFactory.create_batch(2, completed=True)
    SellerTransferEventFactory()

    with CaptureQueriesContext(connection) as queries:
        body, _ = metrics_exposition()

    statements = [q["sql"] for q in queries.captured_queries]
    assert not [sql for sql in statements if "payouts_sellertransferevent" in sql]
    on_transfers = [sql for sql in statements if 'FROM "payouts_sellertransfer"' in sql]
    # Only the due rows and the over-reversed alert, each on its partial index's condition.
    assert on_transfers and all("WHERE" in sql for sql in on_transfers), on_transfers
    assert b'payouts_transfers{status="completed"} 2.0' in body


# --- Webhook inbox retention ------------------------------------------------------------------


def inbox_event(age: timedelta, outcome: str, *, processed_age: timedelta | None = None):
    now = timezone.now()
    event = WebhookEventFactory(outcome=outcome)
    processed_at = None if outcome == WebhookOutcome.RECEIVED else now - (processed_age or age)
    WebhookEvent.objects.filter(pk=event.pk).update(
        received_at=now - age, processed_at=processed_at
    )
    return event.pk


@pytest.mark.django_db
def test_retention_deletes_only_processed_events_older_than_the_window(settings):
    settings.PAYOUTS = replace(settings.PAYOUTS, webhook_retention=timedelta(days=90))
    old, young = timedelta(days=91), timedelta(days=89)
    expired = [
        inbox_event(old, WebhookOutcome.PROCESSED),
        inbox_event(old, WebhookOutcome.IGNORED),
    ]
    kept = [
        inbox_event(old, WebhookOutcome.RECEIVED),  # never processed: the sweep's
        inbox_event(old, WebhookOutcome.FAILED),  # a person must replay it
        inbox_event(young, WebhookOutcome.PROCESSED),  # inside the window
        inbox_event(old, WebhookOutcome.PROCESSED, processed_age=timedelta(days=1)),  # replayed
    ]

    assert webhook_events_expire() == {"deleted": 2, "batches": 1}

    assert set(WebhookEvent.objects.values_list("pk", flat=True)) == set(kept)
    assert not WebhookEvent.objects.filter(pk__in=expired).exists()


@pytest.mark.django_db
def test_retention_deletes_in_batches_until_none_is_left(settings):
    settings.PAYOUTS = replace(settings.PAYOUTS, webhook_retention=timedelta(days=7))
    for _ in range(5):
        inbox_event(timedelta(days=8), WebhookOutcome.IGNORED)

    done = webhook_events_expire(batch=2, pause=timedelta(0))

    assert done == {"deleted": 5, "batches": 3}
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
def test_an_event_delivered_again_inside_the_window_is_still_a_duplicate(
    client, sandbox, stripe_client, settings
):
    order, _ = paid_order(stripe_client, [1000], mark_paid=False)
    intent = stripe_client.v1.payment_intents.retrieve(order.stripe_payment_intent_id).to_dict()
    event = make_event("payment_intent.succeeded", intent)
    assert post_event(client, event).status_code == 200
    stored = WebhookEvent.objects.get(stripe_event_id=event["id"])

    # The shortest retention there is, and Stripe's retry comes a day before it ends.
    settings.PAYOUTS = replace(settings.PAYOUTS, webhook_retention=timedelta(days=7))
    webhook_events_expire(now=timezone.now() + timedelta(days=6))
    assert post_event(client, event).status_code == 200

    again = WebhookEvent.objects.get(stripe_event_id=event["id"])
    assert (again.pk, again.attempts, again.processed_at) == (
        stored.pk,
        stored.attempts,
        stored.processed_at,
    )


@pytest.mark.parametrize("value", ["6d", "3d", "1h"])
def test_a_webhook_retention_under_a_week_is_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("WEBHOOK_RETENTION", value)

    with pytest.raises(ImproperlyConfigured, match="WEBHOOK_RETENTION.*shorter than the minimum"):
        load_payouts_config(environ.Env())


@pytest.mark.slow  # starts manage.py in a process
def test_start_up_stops_on_a_webhook_retention_under_a_week():
    done = start_django("config.settings.local", WEBHOOK_RETENTION="2d")

    assert done.returncode != 0
    assert "WEBHOOK_RETENTION: 2d is shorter than the minimum" in done.stderr


def test_the_webhook_retention_defaults_to_90_days(monkeypatch):
    monkeypatch.delenv("WEBHOOK_RETENTION", raising=False)
    assert load_payouts_config(environ.Env()).webhook_retention == timedelta(days=90)
    monkeypatch.setenv("WEBHOOK_RETENTION", "7d")
    assert load_payouts_config(environ.Env()).webhook_retention == timedelta(days=7)


# --- ledger_check: what changed since the last clean run --------------------------------------


@dataclass(frozen=True)
class Reads:
    pages: int
    single: int

    def __sub__(self, other: "Reads") -> "Reads":
        return Reads(self.pages - other.pages, self.single - other.single)


def stripe_reads(sandbox) -> Reads:
    """The transfer pages listed and the single transfers read at the sandbox so far."""
    return Reads(len(sandbox.calls("transfers.list")), len(sandbox.calls("transfers.retrieve")))


def age_everything() -> None:
    """As if the earlier check runs were a day old, and the rows had not changed for two (more
    than the hour an incremental run looks back before the last clean one)."""
    SellerTransfer.objects.update(updated_at=F("updated_at") - timedelta(days=2))
    CheckRun.objects.update(started_at=F("started_at") - timedelta(days=1))


@pytest.fixture
def checked_yesterday(client, sandbox, stripe_client, django_capture_on_commit_callbacks):
    """Two orders paid (one refunded in part), checked clean, all of it a day ago."""
    first, _ = paid_order(stripe_client, [1000, 2000], webhook=client)
    refund(client, stripe_client, first, 1000, django_capture_on_commit_callbacks)
    second, _ = paid_order(stripe_client, [3000], webhook=client)
    run, breaks = ledger_check()
    assert breaks == []
    age_everything()
    return first, second


@pytest.mark.django_db
def test_with_no_clean_run_an_incremental_check_is_a_full_one(client, sandbox, stripe_client):
    paid_order(stripe_client, [1000, 2000], webhook=client)

    run, breaks = ledger_check(incremental=True)

    assert (breaks, run.transfers_checked) == ([], 2)


@pytest.mark.django_db
def test_an_incremental_check_reads_only_the_transfers_changed_since_the_last_clean_run(
    client, sandbox, stripe_client, checked_yesterday, django_capture_on_commit_callbacks
):
    first, _ = checked_yesterday
    refund(client, stripe_client, first, None, django_capture_on_commit_callbacks)
    paid_order(stripe_client, [1500], webhook=client)
    read_before = stripe_reads(sandbox)

    run, breaks = ledger_check(incremental=True)

    assert breaks == []
    assert run.transfers_checked == 3  # the first order's two, and the new one
    # All three from one page of transfers listed by creation time, none read on its own.
    assert stripe_reads(sandbox) - read_before == Reads(pages=1, single=0)


@pytest.mark.django_db
def test_an_incremental_check_finds_a_changed_row_that_disagrees_with_its_order_in_the_book(
    sandbox, checked_yesterday
):
    _, second = checked_yesterday
    row = second.transfers.get()
    SellerTransfer.objects.filter(pk=row.pk).update(reversal_target=500, updated_at=timezone.now())

    _, breaks = ledger_check(incremental=True, stripe=False)

    assert {(b.kind, b.transfer_id) for b in breaks} == {(BreakKind.SELLER_PAYABLE, row.pk)}
    assert f"order {second.pk}" in breaks[0].detail
    # Until it is fixed, every incremental run looks back to the last clean one and finds it.
    assert ledger_check(incremental=True, stripe=False)[1] == breaks


@pytest.mark.django_db
def test_a_row_changed_behind_updated_at_is_left_to_the_full_run(sandbox, checked_yesterday):
    _, second = checked_yesterday
    row = second.transfers.get()
    SellerTransfer.objects.filter(pk=row.pk).update(amount=F("amount") - 100)  # raw: no stamp

    assert ledger_check(incremental=True, stripe=False)[1] == []
    assert row.pk in {b.transfer_id for b in ledger_check(stripe=False)[1]}


@pytest.mark.django_db
def test_the_incremental_seller_check_agrees_with_the_full_one_through_debt_and_netting(
    client, sandbox, stripe_client, checked_yesterday, django_capture_on_commit_callbacks
):
    order, [row] = paid_order(stripe_client, [2000], webhook=client)
    sandbox.simulate_payout(row.seller.stripe_account_id, 1800, "usd")
    refund(client, stripe_client, order, None, django_capture_on_commit_callbacks)
    paid_order(stripe_client, [1000], webhook=client, sellers=[row.seller])

    assert ledger_check(incremental=True)[1] == []
    assert ledger_check()[1] == []


@pytest.mark.django_db
def test_the_weekly_check_reads_every_row_of_the_book_and_only_the_last_week_at_stripe(
    client, sandbox, stripe_client
):
    old, _ = paid_order(stripe_client, [1000, 2000], webhook=client)
    paid_order(stripe_client, [3000], webhook=client)
    ten_days_ago = timezone.now() - timedelta(days=10)
    SellerTransfer.objects.filter(order=old).update(updated_at=ten_days_ago)
    changed = old.transfers.first()
    SellerTransfer.objects.filter(pk=changed.pk).update(amount=F("amount") - 100)
    read_before = stripe_reads(sandbox)

    summary = tasks.ledger_check_weekly()

    assert summary["transfers"] == 3  # every row checked against the book ...
    # ... at Stripe one page of the week's transfers, and the week's one order's transfer group
    # once, for its cash (the old order's rows changed ten days ago, outside the week)
    assert stripe_reads(sandbox) - read_before == Reads(pages=2, single=0)
    breaks = CheckRun.objects.get(pk=summary["run"]).breaks.all()
    assert changed.pk in {b.transfer_id for b in breaks}
    assert BreakKind.TRANSFER_STRIPE not in {b.kind for b in breaks}


@pytest.mark.django_db
def test_the_daily_check_reads_stripe_for_the_last_day_only_even_after_days_of_breaks(
    client, sandbox, stripe_client, checked_yesterday
):
    _, second = checked_yesterday
    CheckRun.objects.update(started_at=F("started_at") - timedelta(days=20))
    row = second.transfers.get()
    three_days_ago = timezone.now() - timedelta(days=3)
    SellerTransfer.objects.filter(pk=row.pk).update(reversal_target=500, updated_at=three_days_ago)
    paid_order(stripe_client, [1500], webhook=client)
    read_before = stripe_reads(sandbox)

    summary = tasks.ledger_check_daily()

    assert stripe_reads(sandbox) - read_before == Reads(pages=1, single=0)
    breaks = CheckRun.objects.get(pk=summary["run"]).breaks.all()
    assert row.pk in {b.transfer_id for b in breaks}  # still checked against the book


@pytest.mark.django_db
def test_the_command_runs_the_incremental_check_and_says_so(sandbox, checked_yesterday):
    out = StringIO()

    call_command("ledger_check", "--incremental", "--no-stripe", stdout=out)

    assert "(incremental): 0 transfers, 0 break(s)" in out.getvalue()


def test_beat_runs_the_incremental_check_daily_and_the_full_one_weekly(settings):
    entries = settings.CELERY_BEAT_SCHEDULE.values()
    schedule = {entry["task"]: entry["schedule"] for entry in entries}

    assert schedule["payouts.tasks.ledger_check_daily"] == 24 * 60 * 60
    assert schedule["payouts.tasks.ledger_check_weekly"] == 7 * 24 * 60 * 60
    assert schedule["payouts.tasks.reconciliation_run_daily"] == 24 * 60 * 60
    assert schedule["payouts.tasks.reconciliation_run_weekly"] == 7 * 24 * 60 * 60
    assert schedule["payouts.tasks.webhook_events_expire"] == 24 * 60 * 60
    assert schedule["payouts.tasks.transfer_counts_compact"] == 60
    assert {"ledger_check_daily", "ledger_check_weekly", "webhook_events_expire"} <= set(dir(tasks))


# --- What the admin lists read ----------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_reads_for_filters_and_pages_name_each_value_once_and_count_no_further():
    SellerTransferFactory.create_batch(3, currency="usd", order__currency="usd")
    SellerTransferFactory(currency="eur", order__currency="eur")
    for event_type in ("charge.succeeded", "customer.created", "charge.succeeded"):
        WebhookEventFactory(type=event_type)

    assert selectors.transfer_currencies() == ["eur", "usd"]
    assert selectors.webhook_event_types() == ["charge.succeeded", "customer.created"]
    transfers = SellerTransfer.objects.order_by("-id")
    capped = CappedCountPaginator(transfers, per_page=1)
    capped.CAP = 2
    assert capped.count == 2
    capped = CappedCountPaginator(transfers.filter(currency="eur"), per_page=1)
    capped.CAP = 2
    assert capped.count == 1


@pytest.mark.django_db
def test_the_transfer_search_finds_each_kind_of_id_exactly_and_sellers_by_part_of_a_name(
    admin_client,
):
    one = SellerTransferFactory(
        completed=True, stripe_reversal_id="trr_one", seller__name="Ana's Ceramics"
    )
    two = SellerTransferFactory(completed=True)
    RefundFactory(order=two.order, stripe_refund_id="re_two")
    terms = {
        one.stripe_transfer_id: {one},
        "trr_one": {one},
        one.order.stripe_charge_id: {one},
        two.order.stripe_payment_intent_id: {two},
        "re_two": {two},
        two.seller.stripe_account_id: {two},
        str(two.pk): {two},
        str(one.order_id): {one},
        "ceramics": {one},
        " " + two.seller.email.upper() + " ": {two},
        "tr_none": set(),
        "9" * 30: set(),  # not an id (past a bigint): a name, matching no seller
    }
    for term, expected in terms.items():
        assert set(SellerTransfer.objects.filter(selectors.transfer_search(term))) == expected

        response = admin_client.get("/admin/payouts/sellertransfer/", {"q": term})
        assert response.status_code == 200
        assert {row.pk for row in response.context["cl"].result_list} == {t.pk for t in expected}


@pytest.mark.django_db
def test_needs_attention_still_finds_exactly_the_rows_it_did():
    now = timezone.now()
    failed = SellerTransferFactory(status=TransferStatus.PERMANENTLY_FAILED)
    stale = SellerTransferFactory(reversal_due=True)
    SellerTransfer.objects.filter(pk=stale.pk).update(updated_at=now - timedelta(hours=1))
    SellerTransferFactory(reversal_due=True)  # moving: not stale yet
    SellerTransferFactory(completed=True)

    found = selectors.transfers_needing_attention(now=now)

    assert set(found.values_list("pk", flat=True)) == {failed.pk, stale.pk}


# --- The migration on a database that already holds rows --------------------------------------


def migrate(targets=None):
    """Migrate to ``targets`` (default: the latest, where the rest of the suite expects the
    database); returns the models as they were there."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    targets = targets or executor.loader.graph.leaf_nodes()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)  # migrations run outside a test transaction
@pytest.mark.slow  # migrates the test database back and forth
def test_the_migration_counts_the_rows_already_there():
    apps = migrate([("payouts", "0010_disputes_and_giving_back")])
    seller = apps.get_model("marketplace", "Seller").objects.create(name="a", email="a@x.com")
    Order = apps.get_model("marketplace", "Order")
    Transfer = apps.get_model("payouts", "SellerTransfer")
    Event = apps.get_model("payouts", "SellerTransferEvent")
    for status in (TransferStatus.COMPLETED, TransferStatus.COMPLETED, TransferStatus.PENDING):
        order = Order.objects.create(buyer_email="b@x.com", status="paid")
        row = Transfer.objects.create(
            order=order, seller=seller, amount=900, currency="usd", status=status
        )
        Event.objects.create(
            transfer=row, from_status=TransferStatus.PENDING, to_status=status, caused_by="t"
        )

    migrate()

    counters_match_a_recount()
    assert selectors.transfer_counts_by_status()[TransferStatus.COMPLETED] == 2
    assert selectors.transition_counts()[(TransferStatus.PENDING, TransferStatus.PENDING)] == 1


@pytest.mark.django_db
def test_the_needs_attention_page_reads_its_partial_index_not_every_transfer():
    """Every reason's condition must imply idx_transfer_attention's: if one does not, the
    admin's newest-first page reads every transfer ever made (14 s at 10 million)."""
    order = PaidOrderFactory()
    sellers = SellerFactory.create_batch(300)
    SellerTransfer.objects.bulk_create(
        SellerTransfer(
            order=order, seller=seller, amount=900, currency="usd", status=TransferStatus.COMPLETED
        )
        for seller in sellers
    )
    SellerTransferFactory(status=TransferStatus.PERMANENTLY_FAILED)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE payouts_sellertransfer")
        # Only an index that alone covers every reason can serve the page now.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")

    page = selectors.transfers_needing_attention(now=timezone.now()).order_by("-id")[:100]

    assert "idx_transfer_attention" in page.explain()
