import django.db.models.expressions
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0004_seller_account_status"),
        ("payouts", "0008_post_existing_money_to_the_book"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="sellertransfer",
            options={
                "permissions": [
                    ("retry_sellertransfer", "Can retry a failed seller transfer"),
                    ("release_sellertransfer", "Can release an order's held seller transfers"),
                ]
            },
        ),
        migrations.RemoveConstraint(
            model_name="sellertransfer",
            name="chk_transfer_status",
        ),
        migrations.RemoveConstraint(
            model_name="sellertransfer",
            name="chk_transfer_amount_reversed_range",
        ),
        migrations.AddField(
            model_name="sellertransfer",
            name="amount_withheld",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="sellertransfer",
            name="held_reason",
            field=models.CharField(
                blank=True,
                choices=[
                    ("awaiting_release", "Awaiting Release"),
                    ("account_restricted", "Account Restricted"),
                    ("account_deauthorized", "Account Deauthorized"),
                ],
                db_default="",
                default="",
                max_length=32,
            ),
        ),
        migrations.AddField(
            model_name="webhookevent",
            name="account",
            field=models.CharField(blank=True, db_default="", default="", max_length=255),
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
                    ("held", "Held"),
                ],
                default="pending",
                max_length=32,
            ),
        ),
        migrations.AddIndex(
            model_name="sellertransfer",
            index=models.Index(
                condition=models.Q(("status", "held")),
                fields=["next_retry_at", "id"],
                name="idx_transfer_held_release",
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
                            "held",
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
                    ("amount_reversed__gte", 0),
                    (
                        "amount_reversed__lte",
                        django.db.models.expressions.CombinedExpression(
                            django.db.models.expressions.CombinedExpression(
                                models.F("amount"), "-", models.F("amount_netted")
                            ),
                            "-",
                            models.F("amount_withheld"),
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
                    ("amount_withheld__gte", 0),
                    (
                        "amount_withheld__lte",
                        django.db.models.expressions.CombinedExpression(
                            models.F("amount"), "-", models.F("amount_netted")
                        ),
                    ),
                ),
                name="chk_transfer_amount_withheld_range",
            ),
        ),
        migrations.AddConstraint(
            model_name="sellertransfer",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("held_reason", ""),
                    (
                        "held_reason__in",
                        ["awaiting_release", "account_restricted", "account_deauthorized"],
                    ),
                    _connector="OR",
                ),
                name="chk_transfer_held_reason",
            ),
        ),
    ]
