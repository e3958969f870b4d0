import django.db.models.expressions
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0003_seller_account_changes"),
        ("payouts", "0006_inbox_sweep_and_replay_permission"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="sellertransfer",
            name="chk_transfer_amount_reversed_range",
        ),
        migrations.RemoveConstraint(
            model_name="sellertransfer",
            name="chk_transfer_status",
        ),
        migrations.AddField(
            model_name="sellertransfer",
            name="amount_netted",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="sellertransfer",
            name="amount_owed",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AlterField(
            model_name="sellertransfer",
            name="end_reason",
            field=models.CharField(
                blank=True,
                choices=[
                    ("retries_exhausted", "Retries Exhausted"),
                    ("transfer_missing", "Transfer Missing"),
                    ("no_stripe_transfer", "No Stripe Transfer"),
                    ("order_refunded", "Order Refunded"),
                ],
                db_default="",
                default="",
                max_length=32,
            ),
        ),
        migrations.AlterField(
            model_name="sellertransfer",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "Pending"),
                    ("completed", "Completed"),
                    ("failed", "Failed"),
                    ("permanently_failed", "Permanently Failed"),
                    ("reversal_pending", "Reversal Pending"),
                    ("partially_reversed", "Partially Reversed"),
                    ("reversed", "Reversed"),
                    ("reversal_refused", "Reversal Refused"),
                ],
                default="pending",
                max_length=32,
            ),
        ),
        migrations.AddConstraint(
            model_name="sellertransfer",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    (
                        "status__in",
                        [
                            "pending",
                            "completed",
                            "failed",
                            "permanently_failed",
                            "reversal_pending",
                            "partially_reversed",
                            "reversed",
                            "reversal_refused",
                        ],
                    )
                ),
                name="chk_transfer_status",
            ),
        ),
        migrations.AddConstraint(
            model_name="sellertransfer",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("amount_netted__gte", 0), ("amount_netted__lte", models.F("amount"))
                ),
                name="chk_transfer_amount_netted_range",
            ),
        ),
        migrations.AddConstraint(
            model_name="sellertransfer",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("amount_reversed__gte", 0),
                    (
                        "amount_reversed__lte",
                        django.db.models.expressions.CombinedExpression(
                            models.F("amount"), "-", models.F("amount_netted")
                        ),
                    ),
                ),
                name="chk_transfer_amount_reversed_range",
            ),
        ),
        migrations.AddConstraint(
            model_name="sellertransfer",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("amount_owed__gte", 0), ("amount_owed__lte", models.F("amount"))
                ),
                name="chk_transfer_amount_owed_range",
            ),
        ),
    ]
