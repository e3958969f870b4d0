"""Post the book's entries for the money that moved before the book existed.

For each paid order: the payment; for each of its seller transfers: the transfer sent, the
refund share charged, the reversal, the cancellation; for each succeeded refund: the refund. The
external ids are the ones the live postings use, so nothing is posted twice later.
"""

from django.db import migrations

PAID = ("completed", "reversal_pending", "partially_reversed", "reversed")


class Book:
    def __init__(self, apps):
        self.Account = apps.get_model("ledger", "Account")
        self.Entry = apps.get_model("ledger", "Entry")
        self.Line = apps.get_model("ledger", "Line")
        self.accounts = {}

    def account(self, kind, seller_id=None):
        key = (kind, seller_id)
        if key not in self.accounts:
            self.accounts[key] = self.Account.objects.get_or_create(kind=kind, seller_id=seller_id)[
                0
            ].pk
        return self.accounts[key]

    def post(self, kind, external_id, currency, legs, **fields):
        legs = [(kind_, amount, seller) for kind_, amount, seller in legs if amount]
        if not legs or self.Entry.objects.filter(kind=kind, external_id=external_id).exists():
            return
        assert sum(amount for _, amount, _ in legs) == 0, (kind, external_id, legs)
        entry = self.Entry.objects.create(kind=kind, external_id=external_id, **fields)
        self.Line.objects.bulk_create(
            self.Line(
                entry=entry,
                account_id=self.account(kind_, seller),
                currency=currency,
                amount=amount,
            )
            for kind_, amount, seller in legs
        )


def post_transfer(book, row):
    ref = {"order_id": row.order_id, "seller_id": row.seller_id, "transfer_id": row.pk}
    seller, currency = row.seller_id, row.currency

    def post(kind, level, legs, **extra):
        book.post(kind, f"transfer:{row.pk}:{level}", currency, legs, **ref, **extra)

    if row.stripe_transfer_id or row.status in PAID:
        legs = [("seller_payable", row.amount, seller), ("platform_cash", -row.amount, None)]
        post("transfer", "sent", legs, stripe_id=row.stripe_transfer_id)
    target, reversed_ = row.reversal_target, row.amount_reversed
    post(
        "refund_share",
        f"target:{target}",
        [("seller_payable", target, seller), ("buyer_refunds", -target, None)],
    )
    post(
        "reversal",
        f"reversed:{reversed_}",
        [("platform_cash", reversed_, None), ("seller_payable", -reversed_, seller)],
        stripe_id=row.stripe_reversal_id,
    )
    if row.end_reason == "order_refunded":
        legs = [("seller_payable", row.amount, seller), ("buyer_refunds", -row.amount, None)]
        post("transfer_cancelled", "cancelled", legs)


def post_order(book, order, rows):
    total = sum(item.amount for item in order.items.all())
    legs = [
        ("platform_cash", total, None),
        ("fee_revenue", -(total - sum(r.amount for r in rows)), None),
    ]
    legs += [("seller_payable", -row.amount, row.seller_id) for row in rows]
    book.post(
        "payment", f"order:{order.pk}", order.currency, legs,
        order_id=order.pk, stripe_id=order.stripe_charge_id,
    )  # fmt: skip
    for refund in order.refunds.filter(status="succeeded").exclude(stripe_refund_id=""):
        legs = [("buyer_refunds", refund.amount, None), ("platform_cash", -refund.amount, None)]
        book.post(
            "refund", refund.stripe_refund_id, refund.currency, legs,
            order_id=order.pk, stripe_id=refund.stripe_refund_id,
        )  # fmt: skip


def post_existing(apps, schema_editor):
    Order = apps.get_model("marketplace", "Order")
    SellerTransfer = apps.get_model("payouts", "SellerTransfer")
    book = Book(apps)
    for order in Order.objects.exclude(status="pending").order_by("pk").iterator():
        rows = list(SellerTransfer.objects.filter(order=order).order_by("pk"))
        post_order(book, order, rows)
        for row in rows:
            post_transfer(book, row)


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0002_book_rules_in_the_database"),
        ("marketplace", "0003_seller_account_changes"),
        ("payouts", "0007_seller_debt"),
    ]

    operations = [migrations.RunPython(post_existing, migrations.RunPython.noop)]
