"""The database itself refuses impossible money states, whatever code (or person with psql)
tries to write them."""

import pytest
from django.db import IntegrityError, connection, transaction

from tests.factories import (
    OrderFactory,
    RefundFactory,
    SellerFactory,
    SellerTransferFactory,
)

pytestmark = pytest.mark.django_db


def _raw(sql: str, params: list) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


def test_reversal_pending_without_next_retry_at_is_refused_through_raw_sql():
    transfer = SellerTransferFactory(completed=True)

    with pytest.raises(IntegrityError, match="chk_reversal_pending_has_next_retry_at"):
        _raw(
            "UPDATE payouts_sellertransfer SET status = 'reversal_pending', next_retry_at = NULL "
            "WHERE id = %s",
            [transfer.pk],
        )


def test_amount_reversed_above_amount_is_refused_through_raw_sql():
    transfer = SellerTransferFactory(completed=True, amount=900)

    with pytest.raises(IntegrityError, match="chk_transfer_amount_reversed_range"):
        _raw("UPDATE payouts_sellertransfer SET amount_reversed = 901 WHERE id = %s", [transfer.pk])


def test_negative_amount_reversed_is_refused():
    transfer = SellerTransferFactory(completed=True)

    with pytest.raises(IntegrityError, match="chk_transfer_amount_reversed_range"):
        _raw("UPDATE payouts_sellertransfer SET amount_reversed = -1 WHERE id = %s", [transfer.pk])


def test_an_unknown_status_is_refused():
    transfer = SellerTransferFactory()

    with pytest.raises(IntegrityError, match="chk_transfer_status"):
        _raw("UPDATE payouts_sellertransfer SET status = 'paid' WHERE id = %s", [transfer.pk])


def test_one_transfer_row_per_order_and_seller():
    transfer = SellerTransferFactory()

    with pytest.raises(IntegrityError, match="uniq_transfer_order_seller"), transaction.atomic():
        SellerTransferFactory(order=transfer.order, seller=transfer.seller)


def test_empty_stripe_transfer_ids_may_repeat():
    SellerTransferFactory(stripe_transfer_id="")
    SellerTransferFactory(stripe_transfer_id="")


@pytest.mark.parametrize(
    ("factory", "field", "value", "constraint"),
    [
        (
            SellerTransferFactory,
            "stripe_transfer_id",
            "tr_same",
            "uniq_transfer_stripe_transfer_id",
        ),
        (
            SellerTransferFactory,
            "stripe_reversal_id",
            "trr_same",
            "uniq_transfer_stripe_reversal_id",
        ),
        (RefundFactory, "stripe_refund_id", "re_same", "uniq_refund_stripe_refund_id"),
        (OrderFactory, "stripe_charge_id", "ch_same", "uniq_order_stripe_charge_id"),
        (SellerFactory, "stripe_account_id", "acct_same", "uniq_seller_stripe_account_id"),
    ],
)
def test_a_stripe_id_is_unique_when_set(factory, field, value, constraint):
    factory(**{field: value})

    with pytest.raises(IntegrityError, match=constraint), transaction.atomic():
        factory(**{field: value})


def test_currency_must_be_a_lowercase_iso_code():
    with pytest.raises(IntegrityError, match="chk_order_currency"), transaction.atomic():
        OrderFactory(currency="USD")


def test_the_worker_queries_have_partial_indexes():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'payouts_sellertransfer'"
        )
        indexes = dict(cursor.fetchall())

    due_reversal, due_send = indexes["idx_transfer_due_reversal"], indexes["idx_transfer_due_send"]
    assert "WHERE ((status)::text = 'reversal_pending'::text)" in due_reversal
    assert "'pending'::character varying" in due_send
    assert "'failed'::character varying" in due_send
