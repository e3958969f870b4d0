"""The console's lists export what they show, and the staff API reads the same rows: a CSV of
any filtered list (exactly the rows the filters select, every page of them), and the read-only
transfer list and "needs attention" for teams building their own alerts."""

import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

import ledger.services
from payouts.models import SellerTransfer, WebhookOutcome
from payouts.selectors import UNPAID_AFTER
from payouts.transfer.moves import book_ref
from payouts.transfer.transitions import EndReason, TransferStatus
from tests.factories import (
    SellerFactory,
    SellerTransferFactory,
    UserFactory,
    WebhookEventFactory,
)

pytestmark = pytest.mark.django_db
TRANSFERS = reverse("admin:payouts_sellertransfer_changelist")


@pytest.fixture
def staff(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def exported(response) -> list[dict]:
    assert response.status_code == 200, response
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_a_filtered_list_exports_exactly_the_rows_its_filters_select_every_page(staff):
    failed = [
        SellerTransferFactory(status=TransferStatus.FAILED, next_retry_at=timezone.now())
        for _ in range(3)
    ]
    SellerTransferFactory(completed=True)
    SellerTransferFactory(status=TransferStatus.PENDING)

    rows = exported(staff.get(f"{TRANSFERS}export.csv", {"status__exact": "failed"}))

    assert sorted(int(row["ID"]) for row in rows) == sorted(row.pk for row in failed)
    assert {row["status"] for row in rows} == {"failed"}
    assert rows[0]["amount"].endswith(" USD")  # as the list shows it


def test_the_export_covers_every_page_not_only_the_first(staff):
    made = SellerTransferFactory.create_batch(
        105, status=TransferStatus.FAILED, next_retry_at=timezone.now()
    )

    rows = exported(staff.get(f"{TRANSFERS}export.csv", {"status__exact": "failed"}))

    assert len(rows) == len(made) == 105


def test_the_list_links_its_export_with_its_filters(staff):
    page = staff.get(TRANSFERS, {"status__exact": "failed"}).content.decode()

    assert 'href="export.csv?status__exact=failed"' in page


def test_needs_attention_exports_through_the_transfer_lists_attention_filter(staff):
    stuck = SellerTransferFactory(
        status=TransferStatus.PERMANENTLY_FAILED, end_reason=EndReason.TRANSFER_MISSING
    )
    SellerTransferFactory(completed=True)

    rows = exported(staff.get(f"{TRANSFERS}export.csv", {"attention": "any"}))
    page = staff.get(reverse("admin:needs_attention")).content.decode()

    assert [int(row["ID"]) for row in rows] == [stuck.pk]
    assert "Permanently failed for a final reason" in rows[0]["reason"]
    assert f"{TRANSFERS}export.csv?attention=any" in page


def test_a_date_filter_selects_the_rows_made_that_day(staff):
    today = SellerTransferFactory()
    old = SellerTransferFactory()
    SellerTransfer.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    # What the filter's "Today" link sends: the day's bounds, with their time zone.
    since = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)

    response = staff.get(
        TRANSFERS,
        {"created_at__gte": str(since), "created_at__lt": str(since + timedelta(days=1))},
    )

    assert {row.pk for row in response.context["cl"].result_list} == {today.pk}


def test_sellers_show_balance_and_debt_and_filter_those_in_debt(staff):
    owing, clear = SellerFactory(name="Owes"), SellerFactory(name="Clear")
    row = SellerTransferFactory(seller=owing, status=TransferStatus.REVERSAL_REFUSED)
    ledger.services.post_refund_share(book_ref(row, "scenario"), previous_target=0, target=1800)
    ledger.services.post_reversal_refused(
        book_ref(row, "scenario"), previous_owed=0, owed_total=1800
    )
    sellers = reverse("admin:marketplace_seller_changelist")

    in_debt = staff.get(sellers, {"debt": "yes"})
    all_rows = staff.get(sellers).content.decode()

    assert {seller.pk for seller in in_debt.context["cl"].result_list} == {owing.pk}
    assert clear.pk not in {seller.pk for seller in in_debt.context["cl"].result_list}
    assert "column-debt_money" in all_rows and "18.00 USD" in all_rows


# --- The staff API ---------------------------------------------------------------------------


def test_the_transfer_api_filters_by_status_seller_order_and_attention(staff):
    seller = SellerFactory()
    mine = SellerTransferFactory(
        seller=seller, status=TransferStatus.FAILED, next_retry_at=timezone.now()
    )
    SellerTransfer.objects.filter(pk=mine.pk).update(created_at=timezone.now() - UNPAID_AFTER * 2)
    other = SellerTransferFactory(status=TransferStatus.FAILED, next_retry_at=timezone.now())
    SellerTransferFactory(completed=True)
    url = reverse("transfer-list")

    def ids(**params):
        response = staff.get(url, params)
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert ids(status="failed") == [other.pk, mine.pk]
    assert ids(seller=seller.pk) == [mine.pk]
    assert ids(order=other.order_id) == [other.pk]
    assert ids(attention="unpaid_failed") == [mine.pk]
    assert ids(attention="any") == [other.pk, mine.pk]
    [row] = staff.get(url, {"seller": seller.pk}).json()["results"]
    assert row["attention"] == "unpaid_failed"


def test_the_transfer_api_pages_newest_first(staff):
    made = SellerTransferFactory.create_batch(5)
    url = reverse("transfer-list")

    first = staff.get(url, {"limit": 2}).json()
    second = staff.get(url, {"limit": 2, "before": first["next_before"]}).json()

    newest = sorted((row.pk for row in made), reverse=True)
    assert [row["id"] for row in first["results"] + second["results"]] == newest[:4]


@pytest.mark.parametrize(
    "params", [{"status": "lost"}, {"attention": "whatever"}, {"seller": "x"}, {"limit": "-1"}]
)
def test_bad_filters_answer_400_saying_what_is_allowed(staff, params):
    response = staff.get(reverse("transfer-list"), params)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert "must be" in response.json()["detail"]


def test_the_read_api_needs_the_view_permission(client):
    user = UserFactory(is_staff=True)
    client.force_login(user)

    assert client.get(reverse("transfer-list")).status_code == 403
    assert client.get(reverse("needs-attention")).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_sellertransfer"))
    assert client.get(reverse("needs-attention")).status_code == 200


def test_the_needs_attention_api_says_what_the_page_says(staff):
    failing = SellerTransferFactory(status=TransferStatus.FAILED, next_retry_at=timezone.now())
    WebhookEventFactory(outcome=WebhookOutcome.FAILED, error="no order 42")

    body = staff.get(reverse("needs-attention")).json()

    assert body["counts"]["failing_now"] == 1
    [group] = [group for group in body["groups"] if group["reason"] == "failing_now"]
    assert [row["id"] for row in group["transfers"]] == [failing.pk]
    assert group["advice"]
    assert body["failed_webhook_events"]["count"] == 1
    assert body["failed_webhook_events"]["events"][0]["error"] == "no order 42"


def test_needs_attention_exports_all_of_it_not_only_ten_rows_per_reason(staff):
    failing = SellerTransferFactory.create_batch(
        12, status=TransferStatus.FAILED, next_retry_at=timezone.now()
    )
    owing = SellerFactory(name="Owes")
    refused = SellerTransferFactory(seller=owing, status=TransferStatus.REVERSAL_REFUSED)
    ledger.services.post_refund_share(book_ref(refused, "scenario"), previous_target=0, target=1800)
    ledger.services.post_reversal_refused(
        book_ref(refused, "scenario"), previous_owed=0, owed_total=1800
    )
    event = WebhookEventFactory(outcome=WebhookOutcome.FAILED, error="no order 42")
    SellerTransferFactory(completed=True)

    rows = exported(staff.get(reverse("admin:needs_attention_csv")))

    by_section: dict[str, list[dict]] = {}
    for row in rows:
        by_section.setdefault(row["section"], []).append(row)
    transfer_ids = {int(row["id"]) for row in by_section["transfer"]}
    assert transfer_ids == {row.pk for row in failing} | {refused.pk}
    [debt] = by_section["seller in debt"]
    assert (debt["seller"], debt["amount"]) == ("Owes", "18.00 USD")
    [failed] = by_section["Stripe event failed"]
    assert (failed["id"], failed["detail"]) == (event.stripe_event_id, "no order 42")
