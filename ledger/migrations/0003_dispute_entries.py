from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0002_book_rules_in_the_database"),
        ("marketplace", "0005_disputes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="entry",
            name="chk_entry_kind",
        ),
        migrations.AlterField(
            model_name="entry",
            name="kind",
            field=models.CharField(
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
                    ("dispute_funds", "Dispute Funds"),
                    ("dispute_share", "Dispute Share"),
                    ("debt_cancelled", "Debt Cancelled"),
                ],
                max_length=32,
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
                            "dispute_funds",
                            "dispute_share",
                            "debt_cancelled",
                        ],
                    )
                ),
                name="chk_entry_kind",
            ),
        ),
    ]
