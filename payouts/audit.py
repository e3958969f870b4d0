"""The audit export: every staff action and every money move, in time order, as one stream.

Each source is read through its own server-side cursor (``.iterator(chunk_size=…)``), already
sorted by time in the database, and ``heapq.merge`` interleaves them holding one row of each
plus one chunk per cursor: the memory it takes does not grow with the range, however many
million rows it holds. The sources:

- ``transfer_event``: each seller transfer transition (worker, webhook or staff; the reason and
  error in its detail), with the transfer's amount and Stripe ids;
- ``ledger_entry``: each entry of the book, with its lines (who posted it, and its memo: a
  write-off's reason);
- ``approval``: each approval request made, approved, rejected, executed, failed or expired;
- ``account_change``: each change of a seller's connected account (where their money goes);
- ``staff_refund``: each refund staff started here (its Stripe refund id);
- ``reserve_resend``: each reserve release staff sent again after it gave up (the last re-send
  of each: who, when, why).

Run inside one ``REPEATABLE READ`` read-only transaction (when the caller has none open), so
every source is read from the same snapshot: a move committed mid-export is in all of them or
in none.
"""

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.postgres.expressions import ArraySubquery
from django.db import connection, transaction
from django.db.models import F, OuterRef
from django.db.models.functions import JSONObject

from approvals.models import ApprovalRequest, ApprovalStatus
from ledger.models import Entry, Line
from marketplace.models import Refund, SellerAccountChange
from payouts.models import ReserveRelease, SellerTransferEvent

# Rows fetched per round trip of each cursor: bounds the memory of the export.
CHUNK = 2000


@dataclass(frozen=True, slots=True)
class AuditRecord:
    at: datetime
    source: str
    # The row's id in its source: the order of records at the same instant.
    ref: int
    action: str
    actor: str = ""
    reason: str = ""
    amount: int | None = None
    currency: str = ""
    order_id: int | None = None
    seller_id: int | None = None
    transfer_id: int | None = None
    stripe_ids: tuple[str, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)


COLUMNS = [
    "at",
    "source",
    "ref",
    "action",
    "actor",
    "reason",
    "amount",
    "currency",
    "order_id",
    "seller_id",
    "transfer_id",
    "stripe_ids",
    "detail",
]


def audit_records(*, start: datetime | None, end: datetime | None) -> Iterator[AuditRecord]:
    """Every audited record with ``start <= at < end`` (either open), in time order."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        sources = [
            _transfer_events(start, end),
            _ledger_entries(start, end),
            *_approvals(start, end),
            _account_changes(start, end),
            _staff_refunds(start, end),
            _reserve_resends(start, end),
        ]
        yield from heapq.merge(*sources, key=lambda record: (record.at, record.source, record.ref))


def _within(queryset, field_name: str, start, end):
    if start is not None:
        queryset = queryset.filter(**{f"{field_name}__gte": start})
    if end is not None:
        queryset = queryset.filter(**{f"{field_name}__lt": end})
    return queryset.order_by(field_name, "pk")


def _transfer_events(start, end) -> Iterator[AuditRecord]:
    rows = _within(SellerTransferEvent.objects.all(), "created_at", start, end).values_list(
        "pk",
        "created_at",
        "from_status",
        "to_status",
        "caused_by",
        "user__username",
        "detail",
        "transfer_id",
        "transfer__order_id",
        "transfer__seller_id",
        "transfer__amount",
        "transfer__currency",
        "transfer__stripe_transfer_id",
        "transfer__stripe_reversal_id",
    )
    for (
        pk,
        at,
        from_status,
        to_status,
        caused_by,
        username,
        detail,
        transfer_id,
        order_id,
        seller_id,
        amount,
        currency,
        stripe_transfer_id,
        stripe_reversal_id,
    ) in rows.iterator(chunk_size=CHUNK):
        detail = detail or {}
        yield AuditRecord(
            at=at,
            source="transfer_event",
            ref=pk,
            action=f"transfer {from_status} -> {to_status}",
            actor=username or caused_by,
            reason=str(detail.get("reason") or detail.get("error") or ""),
            amount=amount,
            currency=currency,
            order_id=order_id,
            seller_id=seller_id,
            transfer_id=transfer_id,
            stripe_ids=tuple(i for i in (stripe_transfer_id, stripe_reversal_id) if i),
            detail={"caused_by": caused_by, **detail},
        )


def _ledger_entries(start, end) -> Iterator[AuditRecord]:
    lines = Line.objects.filter(entry=OuterRef("pk")).order_by("pk")
    lines = lines.values(
        json=JSONObject(
            account=F("account__kind"),
            seller=F("account__seller_id"),
            currency=F("currency"),
            amount=F("amount"),
        )
    )
    rows = (
        _within(Entry.objects.all(), "posted_at", start, end)
        .annotate(entry_lines=ArraySubquery(lines))
        .values_list(
            "pk",
            "posted_at",
            "kind",
            "posted_by__username",
            "memo",
            "order_id",
            "seller_id",
            "transfer_id",
            "stripe_id",
            "external_id",
            "entry_lines",
        )
    )
    for pk, at, kind, username, memo, order_id, seller_id, transfer_id, stripe_id, external_id, (
        entry_lines
    ) in rows.iterator(chunk_size=CHUNK):
        debits = [line for line in entry_lines if line["amount"] > 0]
        yield AuditRecord(
            at=at,
            source="ledger_entry",
            ref=pk,
            action=kind,
            actor=username or "",
            reason=memo,
            amount=sum(line["amount"] for line in debits),
            currency=debits[0]["currency"] if debits else "",
            order_id=order_id,
            seller_id=seller_id,
            transfer_id=transfer_id,
            stripe_ids=(stripe_id,) if stripe_id else (),
            detail={"external_id": external_id, "lines": entry_lines},
        )


_APPROVAL_FIELDS = (
    "pk",
    "kind",
    "params",
    "amount",
    "currency",
    "reason",
    "requested_by__username",
    "status",
    "decided_by__username",
    "decision_reason",
    "result",
    "error",
)


def _approvals(start, end) -> list[Iterator[AuditRecord]]:
    """The audit streams of approval requests, one per step.

    Each stream in its own time order: asked, decided, and how it ended (executed, failed,
    expired)."""
    requests = ApprovalRequest.objects.all()
    A = ApprovalStatus
    steps = [
        ("requested", requests, "created_at"),
        ("decided", requests.filter(decided_at__isnull=False), "decided_at"),
        ("executed", requests.filter(status=A.EXECUTED), "executed_at"),
        ("failed", requests.filter(status=A.FAILED), "updated_at"),
        ("expired", requests.filter(status=A.EXPIRED), "expires_at"),
    ]
    return [
        _approval_step(_within(rows, at_field, start, end), at_field, step)
        for step, rows, at_field in steps
    ]


def _approval_step(queryset, at_field: str, step: str) -> Iterator[AuditRecord]:
    rows = queryset.values_list(at_field, *_APPROVAL_FIELDS)
    for row in rows.iterator(chunk_size=CHUNK):
        at, pk, kind, params, amount, currency, reason, asker, status, decider, why = row[:11]
        result, error = row[11:]
        if step == "requested":
            name, actor, said = step, asker, reason
        elif step == "decided":
            rejected = status == ApprovalStatus.REJECTED
            name, actor, said = ("rejected" if rejected else "approved"), decider or "", why
        else:
            name, actor, said = step, "", error
        yield AuditRecord(
            at=at,
            source="approval",
            ref=pk,
            action=f"approval {kind} {name}",
            actor=actor,
            reason=said,
            amount=amount,
            currency=currency,
            order_id=params.get("order_id"),
            seller_id=params.get("seller_id"),
            transfer_id=params.get("transfer_id"),
            stripe_ids=tuple(v for k, v in result.items() if k.startswith("stripe_") and v),
            detail={
                "requested_by": asker,
                "decided_by": decider,
                "status": status,
                "params": params,
                "result": result,
                "error": error,
            },
        )


def _account_changes(start, end) -> Iterator[AuditRecord]:
    rows = _within(SellerAccountChange.objects.all(), "changed_at", start, end).values_list(
        "pk", "changed_at", "seller_id", "old_account", "new_account", "changed_by__username"
    )
    for pk, at, seller_id, old, new, username in rows.iterator(chunk_size=CHUNK):
        yield AuditRecord(
            at=at,
            source="account_change",
            ref=pk,
            action="seller account changed",
            actor=username or "",
            seller_id=seller_id,
            stripe_ids=tuple(i for i in (old, new) if i),
            detail={"old_account": old, "new_account": new},
        )


def _staff_refunds(start, end) -> Iterator[AuditRecord]:
    # Staff refunds are the ones with our idempotency key (Stripe's own carry none of ours).
    staff = Refund.objects.exclude(stripe_idempotency_key="")
    rows = _within(staff, "created_at", start, end).values_list(
        "pk", "created_at", "order_id", "amount", "currency", "status", "stripe_refund_id"
    )
    for pk, at, order_id, amount, currency, status, stripe_refund_id in rows.iterator(
        chunk_size=CHUNK
    ):
        yield AuditRecord(
            at=at,
            source="staff_refund",
            ref=pk,
            action="staff refund",
            amount=amount,
            currency=currency,
            order_id=order_id,
            stripe_ids=(stripe_refund_id,) if stripe_refund_id else (),
            detail={"status": status},
        )


def _reserve_resends(start, end) -> Iterator[AuditRecord]:
    resent = ReserveRelease.objects.filter(resent_at__isnull=False)
    rows = _within(resent, "resent_at", start, end).values_list(
        "pk",
        "resent_at",
        "resent_by__username",
        "resend_reason",
        "amount",
        "currency",
        "seller_id",
        "state",
        "stripe_transfer_id",
    )
    for pk, at, user, reason, amount, currency, seller_id, state, transfer_id in rows.iterator(
        chunk_size=CHUNK
    ):
        yield AuditRecord(
            at=at,
            source="reserve_resend",
            ref=pk,
            action="reserve release sent again",
            actor=user or "",
            reason=reason,
            amount=amount,
            currency=currency,
            seller_id=seller_id,
            stripe_ids=(transfer_id,) if transfer_id else (),
            detail={"state": state},
        )
