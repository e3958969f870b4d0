from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0002_staff_refunds"),
        ("payouts", "0004_named_moves"),
    ]

    operations = [
        migrations.AddField(
            model_name="sellertransfer",
            name="key_first_sent_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        # Rows in flight have no record of when their key was first sent: their creation time is
        # earlier than any send, so old rows read Stripe first once (safe, one extra read).
        migrations.RunSQL(
            """
            UPDATE payouts_sellertransfer SET key_first_sent_at = created_at
            WHERE status IN ('pending', 'failed', 'reversal_pending')
            """,
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.AddIndex(
            model_name="sellertransfer",
            index=models.Index(
                condition=models.Q(("amount_reversed__gt", models.F("reversal_target"))),
                fields=["id"],
                name="idx_transfer_over_reversed",
            ),
        ),
    ]
