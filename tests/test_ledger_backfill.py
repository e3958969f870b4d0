"""The migration that opens the book posts the money that moved before it existed, so the first
``ledger_check`` after the upgrade is clean."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from ledger.models import Entry, EntryKind
from payouts.services.ledger_check import ledger_check

BEFORE = [("payouts", "0007_seller_debt"), ("ledger", "0002_book_rules_in_the_database")]


def migrate(targets=None):
    """Migrate to ``targets`` (default: the latest migrations, where the rest of the suite
    expects the database); returns the models as they were there."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    targets = targets or executor.loader.graph.leaf_nodes()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def history_before_the_book(apps) -> dict:
    """One order of two sellers, paid, one seller paid and reversed in part after a refund, the
    other cancelled when the rest was refunded; written with the models as they were."""
    Seller = apps.get_model("marketplace", "Seller")
    Order = apps.get_model("marketplace", "Order")
    Item = apps.get_model("marketplace", "OrderItem")
    Refund = apps.get_model("marketplace", "Refund")
    Transfer = apps.get_model("payouts", "SellerTransfer")
    a, b = (Seller.objects.create(name=n, email=f"{n}@example.com") for n in ("a", "b"))
    order = Order.objects.create(buyer_email="x@example.com", status="refunded")
    Item.objects.create(order=order, seller=a, description="a", amount=1000)
    Item.objects.create(order=order, seller=b, description="b", amount=3000)
    Refund.objects.create(
        order=order, stripe_refund_id="re_old", amount=4000, currency="usd", status="succeeded"
    )
    paid = Transfer.objects.create(
        order=order, seller=a, amount=900, platform_fee=100, currency="usd", status="reversed",
        stripe_transfer_id="tr_old", amount_reversed=900, reversal_target=900,
    )  # fmt: skip
    cancelled = Transfer.objects.create(
        order=order, seller=b, amount=2700, platform_fee=300, currency="usd",
        status="permanently_failed", end_reason="order_refunded",
    )  # fmt: skip
    return {"order": order.pk, "paid": paid.pk, "cancelled": cancelled.pk}


@pytest.mark.django_db(transaction=True)  # migrations run outside a test transaction
@pytest.mark.slow  # migrates the test database back and forth
def test_the_book_is_opened_with_every_movement_before_it_and_checks_clean():
    history = history_before_the_book(migrate(BEFORE))

    migrate()

    kinds = sorted(Entry.objects.values_list("kind", flat=True))
    assert kinds == sorted(
        [
            EntryKind.PAYMENT,
            EntryKind.REFUND,
            EntryKind.TRANSFER,
            EntryKind.REFUND_SHARE,
            EntryKind.REVERSAL,
            EntryKind.TRANSFER_CANCELLED,
        ]
    )
    assert Entry.objects.get(kind=EntryKind.TRANSFER).transfer_id == history["paid"]
    assert ledger_check(stripe=False)[1] == []
