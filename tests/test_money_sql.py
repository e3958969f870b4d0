"""The SQL kept for scale computes what ``payouts.transfer.money`` computes, row for row.

``ledger_check``'s set-based queries, the console's figures and the over-reversal alert read
millions of rows, so their arithmetic stays in SQL (``payouts/models.py``,
``payouts/services/ledger_check.py``). Here the rows of many drawn facts (seeded: the same on
every run) are read through both, and must agree.
"""

import random

import pytest
from django.db import connection

from payouts.models import (
    GIVEN_BACK_AGAINST_DEBT,
    LEFT_AFTER_SHARES,
    OVER_REVERSED,
    TO_TAKE_BACK,
    UNSENT,
    SellerTransfer,
)
from payouts.services.ledger_check import _ROW_PAYABLE, _SENT
from payouts.transfer import money
from payouts.transfer.transitions import PAID_STATUSES, EndReason, TransferStatus
from tests.factories import PaidOrderFactory, SellerFactory, SellerTransferFactory

pytestmark = pytest.mark.django_db

UNPAID = [TransferStatus.PENDING, TransferStatus.FAILED, TransferStatus.HELD]
PAID = [
    TransferStatus.COMPLETED,
    TransferStatus.REVERSAL_PENDING,
    TransferStatus.PARTIALLY_REVERSED,
    TransferStatus.REVERSED,
    TransferStatus.REVERSAL_REFUSED,
]


def _draw(rng: random.Random) -> dict:
    """One row's fields, within the table's check constraints."""
    amount = rng.choice([1, 7, 100, 901, 5000])
    netted = rng.choice([0, 0, rng.randint(0, amount)])
    refund = rng.choice([0, rng.randint(0, amount), amount])
    dispute = rng.choice([0, rng.randint(0, amount - refund)])
    fields = dict(amount=amount, amount_netted=netted, reversal_target=refund)
    fields.update(dispute_target=dispute)
    if rng.random() < 0.4:
        status = rng.choice(UNPAID + [TransferStatus.PERMANENTLY_FAILED])
        if status == TransferStatus.PERMANENTLY_FAILED:
            fields["end_reason"] = rng.choice(
                [EndReason.ORDER_REFUNDED, EndReason.RETRIES_EXHAUSTED]
            )
        return {**fields, "status": status, "amount_owed": rng.choice([0, 0, amount // 2])}
    withheld = rng.choice([0, rng.randint(0, amount - netted)])
    reversed_ = rng.choice([0, rng.randint(0, amount - netted - withheld)])
    owed = rng.choice([0, rng.randint(0, amount)])
    returned = rng.choice([0, rng.randint(0, withheld + reversed_ + owed)])
    return {
        **fields,
        "status": rng.choice(PAID),
        "stripe_transfer_id": rng.choice(["", f"tr_sql{rng.randrange(10**9)}"]),
        "amount_withheld": withheld,
        "amount_reversed": reversed_,
        "amount_owed": owed,
        "amount_returned": returned,
        "amount_to_give_back": rng.choice([0, max(withheld + reversed_ + owed - returned, 0)]),
    }


@pytest.fixture
def rows() -> list[SellerTransfer]:
    rng = random.Random(23)
    seller = SellerFactory()
    made = []
    for _ in range(80):
        fields = _draw(rng)
        if fields["status"] == TransferStatus.REVERSAL_PENDING:
            fields["next_retry_at"] = "2026-01-01T00:00:00Z"
        made.append(SellerTransferFactory(order=PaidOrderFactory(), seller=seller, **fields))
    return made


def _by_id(queryset, **annotations) -> dict[int, dict]:
    return {r["id"]: r for r in queryset.annotate(**annotations).values("id", *annotations)}


def test_the_book_s_row_arithmetic_agrees_with_the_money_module(rows):
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT t.id, {_ROW_PAYABLE.format(sent=_SENT)}, t.amount_owed - t.amount_netted, "
            f"{_SENT} + t.amount_returned FROM payouts_sellertransfer t",
            {"paid": list(PAID_STATUSES)},
        )
        in_sql = {pk: tuple(figures) for pk, *figures in cursor.fetchall()}
    for row in rows:
        f = row.facts
        cancelled = row.end_reason == EndReason.ORDER_REFUNDED
        expected = (
            money.row_payable(f, cancelled=cancelled),
            money.debt_left(f),
            money.sent_if_paid(f) + f.returned,
        )
        assert in_sql[row.pk] == expected, f


def test_the_console_s_figures_agree_with_the_money_module(rows):
    read = _by_id(
        SellerTransfer.objects.all(),
        unsent=UNSENT,
        left=LEFT_AFTER_SHARES,
        to_take=TO_TAKE_BACK,
        against_debt=GIVEN_BACK_AGAINST_DEBT,
    )
    for row in rows:
        f, got = row.facts, read[row.pk]
        if not f.paid:
            assert got["unsent"] == money.to_send(f) == money.balances(f).to_send
            assert (got["left"] < 0) == (money.owed_at_send(f) > 0)
        else:
            assert got["to_take"] == money.balances(f).to_take_back
        assert got["against_debt"] == money.given_back_against_debt(f)


def test_the_over_reversal_alert_agrees_with_the_money_module(rows):
    flagged = set(SellerTransfer.objects.filter(OVER_REVERSED).values_list("pk", flat=True))
    assert flagged == {row.pk for row in rows if money.over_reversed(row.facts)}
    assert flagged, "the drawn rows include over-reversed ones"
