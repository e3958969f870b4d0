"""The audit export: every staff action and money move in a time range, merged in time order,
as CSV or JSON lines; a malformed or reversed range is a 400 naming the parameter."""

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from approvals.models import ApprovalRequest
from ledger.models import EntryKind
from marketplace.services import seller_account_set
from payouts.audit import COLUMNS
from tests.builders import make_event, paid_order, post_event, refund_at_stripe, staff_with

pytestmark = pytest.mark.django_db

URL = "/api/admin/audit/"


@pytest.fixture
def auditor(db):
    return staff_with("export_audit", username="auditor")


@pytest.fixture
def history(client, sandbox, stripe_client, django_capture_on_commit_callbacks):
    """A seller paid, paid out, refunded in full and so in debt; a write-off of part of the debt
    asked by one person and approved by another; the seller's account changed by staff."""
    order, [row] = paid_order(stripe_client, [2000], webhook=client)
    sandbox.simulate_payout(row.seller.stripe_account_id, 1800, "usd")
    event = make_event("refund.created", refund_at_stripe(stripe_client, order))
    with django_capture_on_commit_callbacks(execute=True):
        assert post_event(client, event).status_code == 200
    maker = staff_with("write_off_debt", username="maker")
    checker = staff_with("approve_approvalrequest", username="checker")
    client.force_login(maker)
    asked = client.post(
        f"/api/admin/sellers/{row.seller_id}/debt/write-off/",
        {"currency": "usd", "amount": 700, "reason": "goodwill"},
        content_type="application/json",
    )
    request_id = asked.json()["approval_request"]["id"]
    client.force_login(checker)
    approved = client.post(
        f"/api/admin/approvals/{request_id}/approve/", {}, content_type="application/json"
    )
    assert approved.status_code == 200
    seller_account_set(seller=row.seller, stripe_account_id="acct_new", user=maker)
    row.refresh_from_db()
    return {"row": row, "request_id": request_id}


def export(client, user, **query):
    client.force_login(user)
    response = client.get(URL, query)
    assert response.status_code == 200, response.content
    assert response.streaming
    return b"".join(response.streaming_content).decode()


def test_jsonl_holds_every_move_and_staff_action_in_time_order(client, history, auditor):
    records = [json.loads(line) for line in export(client, auditor, format="jsonl").splitlines()]

    times = [record["at"] for record in records]
    assert times == sorted(times)
    row = history["row"]
    actions = [(r["source"], r["action"]) for r in records]
    assert ("transfer_event", "transfer pending -> completed") in actions
    assert ("transfer_event", "transfer completed -> reversal_pending") in actions
    assert ("ledger_entry", EntryKind.PAYMENT) in actions
    assert ("account_change", "seller account changed") in actions
    paid = next(r for r in records if r["action"] == "transfer pending -> completed")
    assert (paid["amount"], paid["currency"]) == (1800, "usd")
    assert row.stripe_transfer_id in paid["stripe_ids"]
    # The four-eyes story, in its order: asked, approved, executed; and the entry it posted.
    story = [(r["action"], r["actor"], r["reason"]) for r in records if r["source"] == "approval"]
    assert story == [
        ("approval write_off requested", "maker", "goodwill"),
        ("approval write_off approved", "checker", ""),
        ("approval write_off executed", "", ""),
    ]
    request_id = history["request_id"]
    written_off = next(r for r in records if r["action"] == EntryKind.DEBT_WRITTEN_OFF)
    assert (written_off["actor"], written_off["reason"], written_off["amount"]) == (
        "maker",
        f"goodwill (approved by checker, approval request {request_id})",
        700,
    )
    assert {(line["account"], line["amount"]) for line in written_off["detail"]["lines"]} == {
        ("bad_debt", 700),
        ("seller_debt", -700),
    }


def test_csv_has_the_same_records_under_a_header(client, history, auditor):
    as_csv = list(csv.reader(io.StringIO(export(client, auditor, format="csv"))))
    as_jsonl = export(client, auditor, format="jsonl").splitlines()

    assert as_csv[0] == COLUMNS
    assert len(as_csv) - 1 == len(as_jsonl) > 10
    change = next(line for line in as_csv if line[1] == "account_change")
    assert change[COLUMNS.index("actor")] == "maker"
    assert change[COLUMNS.index("stripe_ids")].endswith("acct_new")


def test_the_range_keeps_from_and_leaves_out_to(client, history, auditor):
    today = datetime.now(UTC).date()
    request = ApprovalRequest.objects.get(pk=history["request_id"])
    ApprovalRequest.objects.filter(pk=request.pk).update(
        created_at=request.created_at - timedelta(days=3)
    )
    three_days_ago = (today - timedelta(days=3)).isoformat()

    only_then = export(client, auditor, format="jsonl", to=three_days_ago)
    from_today = export(client, auditor, format="jsonl", **{"from": today.isoformat()})

    [asked] = [json.loads(line) for line in only_then.splitlines()]
    assert asked["action"] == "approval write_off requested"
    assert "approval write_off requested" not in from_today
    assert "approval write_off approved" in from_today
    assert (
        export(client, auditor, format="jsonl", **{"from": (today + timedelta(1)).isoformat()})
        == ""
    )


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"from": "2026-13-01"}, "`from`"),
        ({"to": "yesterday"}, "`to`"),
        ({"from": "2026-03-02", "to": "2026-03-01"}, "`to`"),
        ({"from": "2026-03-02T10:00:00Z", "to": "2026-03-02T10:00:00Z"}, "`to`"),
        ({"format": "xml"}, "`format`"),
    ],
)
def test_a_malformed_or_reversed_range_answers_400_naming_the_parameter(
    client, auditor, query, named
):
    client.force_login(auditor)
    response = client.get(URL, query)

    assert response.status_code == 400
    assert named in response.json()["detail"]


def test_the_export_needs_its_permission(client):
    client.force_login(staff_with("view_sellertransfer"))

    assert client.get(URL).status_code == 403
