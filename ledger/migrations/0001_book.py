import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("marketplace", "0003_seller_account_changes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="CheckRun",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("started_at", models.DateTimeField(auto_now_add=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("transfers_checked", models.PositiveIntegerField(default=0)),
                ("breaks_found", models.PositiveIntegerField(default=0)),
            ],
        ),
        migrations.CreateModel(
            name="Account",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("platform_cash", "Platform Cash"),
                            ("fee_revenue", "Fee Revenue"),
                            ("buyer_refunds", "Buyer Refunds"),
                            ("disputes", "Disputes"),
                            ("bad_debt", "Bad Debt"),
                            ("seller_payable", "Seller Payable"),
                            ("seller_debt", "Seller Debt"),
                        ],
                        max_length=32,
                    ),
                ),
                (
                    "seller",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        to="marketplace.seller",
                    ),
                ),
            ],
            options={"permissions": [("write_off_debt", "Can write off a seller's debt")]},
        ),
        migrations.CreateModel(
            name="Break",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("unbalanced_entry", "Unbalanced Entry"),
                            ("seller_payable", "Seller Payable"),
                            ("seller_debt", "Seller Debt"),
                            ("transfer_book", "Transfer Book"),
                            ("transfer_stripe", "Transfer Stripe"),
                        ],
                        max_length=32,
                    ),
                ),
                ("transfer_id", models.BigIntegerField(blank=True, null=True)),
                ("currency", models.CharField(blank=True, default="", max_length=3)),
                ("detail", models.TextField()),
                (
                    "seller",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        to="marketplace.seller",
                    ),
                ),
                (
                    "run",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="breaks",
                        to="ledger.checkrun",
                    ),
                ),
            ],
        ),
        migrations.CreateModel(
            name="Entry",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("payment", "Payment"),
                            ("transfer", "Transfer"),
                            ("debt_netted", "Debt Netted"),
                            ("netting_released", "Netting Released"),
                            ("transfer_cancelled", "Transfer Cancelled"),
                            ("refund", "Refund"),
                            ("refund_share", "Refund Share"),
                            ("reversal", "Reversal"),
                            ("reversal_refused", "Reversal Refused"),
                            ("debt_written_off", "Debt Written Off"),
                        ],
                        max_length=32,
                    ),
                ),
                ("external_id", models.CharField(max_length=255)),
                ("posted_at", models.DateTimeField(auto_now_add=True)),
                ("transfer_id", models.BigIntegerField(blank=True, null=True)),
                ("stripe_id", models.CharField(blank=True, default="", max_length=255)),
                ("memo", models.TextField(blank=True, default="")),
                (
                    "order",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        to="marketplace.order",
                    ),
                ),
                (
                    "posted_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "seller",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        to="marketplace.seller",
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "entries",
            },
        ),
        migrations.CreateModel(
            name="Line",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("currency", models.CharField(max_length=3)),
                (
                    "amount",
                    models.BigIntegerField(
                        help_text="Minor units; debit positive, credit negative."
                    ),
                ),
                (
                    "account",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="lines",
                        to="ledger.account",
                    ),
                ),
                (
                    "entry",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="lines",
                        to="ledger.entry",
                    ),
                ),
            ],
        ),
        migrations.AddConstraint(
            model_name="account",
            constraint=models.UniqueConstraint(
                fields=("kind", "seller"), name="uniq_account_kind_seller", nulls_distinct=False
            ),
        ),
        migrations.AddConstraint(
            model_name="account",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    (
                        "kind__in",
                        [
                            "platform_cash",
                            "fee_revenue",
                            "buyer_refunds",
                            "disputes",
                            "bad_debt",
                            "seller_payable",
                            "seller_debt",
                        ],
                    )
                ),
                name="chk_account_kind",
            ),
        ),
        migrations.AddConstraint(
            model_name="account",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("kind__in", ("seller_payable", "seller_debt")), ("seller__isnull", False)
                    ),
                    models.Q(
                        models.Q(("kind__in", ("seller_payable", "seller_debt")), _negated=True),
                        ("seller__isnull", True),
                    ),
                    _connector="OR",
                ),
                name="chk_account_seller_iff_seller_kind",
            ),
        ),
        migrations.AddIndex(
            model_name="entry",
            index=models.Index(fields=["transfer_id"], name="idx_entry_transfer"),
        ),
        migrations.AddIndex(
            model_name="entry",
            index=models.Index(fields=["seller", "posted_at"], name="idx_entry_seller_posted"),
        ),
        migrations.AddConstraint(
            model_name="entry",
            constraint=models.UniqueConstraint(
                fields=("kind", "external_id"), name="uniq_entry_kind_source"
            ),
        ),
        migrations.AddConstraint(
            model_name="entry",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    (
                        "kind__in",
                        [
                            "payment",
                            "transfer",
                            "debt_netted",
                            "netting_released",
                            "transfer_cancelled",
                            "refund",
                            "refund_share",
                            "reversal",
                            "reversal_refused",
                            "debt_written_off",
                        ],
                    )
                ),
                name="chk_entry_kind",
            ),
        ),
        migrations.AddIndex(
            model_name="line",
            index=models.Index(fields=["account", "currency"], name="idx_line_account_currency"),
        ),
        migrations.AddConstraint(
            model_name="line",
            constraint=models.CheckConstraint(
                condition=models.Q(("amount", 0), _negated=True), name="chk_line_amount_not_zero"
            ),
        ),
        migrations.AddConstraint(
            model_name="line",
            constraint=models.CheckConstraint(
                condition=models.Q(("currency__regex", "^[a-z]{3}$")), name="chk_line_currency"
            ),
        ),
    ]
