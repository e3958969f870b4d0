import django.db.models.expressions
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0005_disputes"),
        ("payouts", "0009_hold_and_connected_accounts"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="sellertransfer",
            name="idx_transfer_over_reversed",
        ),
        migrations.AddField(
            model_name="sellertransfer",
            name="amount_returned",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="sellertransfer",
            name="amount_to_give_back",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="sellertransfer",
            name="dispute_target",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="sellertransfer",
            name="stripe_return_id",
            field=models.CharField(blank=True, db_default="", default="", max_length=255),
        ),
        migrations.AddIndex(
            model_name="sellertransfer",
            index=models.Index(
                condition=models.Q(
                    (
                        "amount_reversed__gt",
                        django.db.models.expressions.CombinedExpression(
                            django.db.models.expressions.CombinedExpression(
                                django.db.models.expressions.CombinedExpression(
                                    django.db.models.expressions.CombinedExpression(
                                        django.db.models.expressions.CombinedExpression(
                                            models.F("reversal_target"),
                                            "+",
                                            models.F("dispute_target"),
                                        ),
                                        "+",
                                        models.F("amount_to_give_back"),
                                    ),
                                    "+",
                                    models.F("amount_returned"),
                                ),
                                "-",
                                models.F("amount_withheld"),
                            ),
                            "-",
                            models.F("amount_owed"),
                        ),
                    )
                ),
                fields=["id"],
                name="idx_transfer_over_reversed",
            ),
        ),
        migrations.AddConstraint(
            model_name="sellertransfer",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("dispute_target__gte", 0),
                    (
                        "dispute_target__lte",
                        django.db.models.expressions.CombinedExpression(
                            models.F("amount"), "-", models.F("reversal_target")
                        ),
                    ),
                ),
                name="chk_transfer_dispute_target_range",
            ),
        ),
        migrations.AddConstraint(
            model_name="sellertransfer",
            constraint=models.CheckConstraint(
                condition=models.Q(("amount_returned__gte", 0), ("amount_to_give_back__gte", 0)),
                name="chk_transfer_amounts_given_back",
            ),
        ),
    ]
