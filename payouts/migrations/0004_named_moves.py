from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0002_staff_refunds"),
        ("payouts", "0003_partial_reversals"),
    ]

    operations = [
        migrations.RenameField(
            model_name="sellertransfer",
            old_name="needs_reconcile",
            new_name="read_stripe_first",
        ),
        migrations.AddField(
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
                default="",
                max_length=32,
            ),
        ),
        # Rows that ended before the reason was recorded: read it from the message they kept.
        migrations.RunSQL(
            """
            UPDATE payouts_sellertransfer SET end_reason = CASE
                WHEN error_message LIKE 'order fully refunded before the seller was paid%'
                    THEN 'order_refunded'
                WHEN error_message LIKE 'transfer not found at Stripe%' THEN 'transfer_missing'
                WHEN error_message LIKE 'no stripe_transfer_id%' THEN 'no_stripe_transfer'
                ELSE 'retries_exhausted' END
            WHERE status = 'permanently_failed'
            """,
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.AddConstraint(
            model_name="sellertransfer",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("end_reason", ""),
                    (
                        "end_reason__in",
                        [
                            "retries_exhausted",
                            "transfer_missing",
                            "no_stripe_transfer",
                            "order_refunded",
                        ],
                    ),
                    _connector="OR",
                ),
                name="chk_transfer_end_reason",
            ),
        ),
    ]
