from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # Built CONCURRENTLY: on tables of millions of rows a plain CREATE INDEX would block every
    # payment and reversal for as long as it takes. That cannot run in a transaction.
    atomic = False

    dependencies = [
        ("payouts", "0012_requeue_permission"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="sellertransfer",
            index=models.Index(
                condition=models.Q(("status__in", ["reversal_refused", "permanently_failed"])),
                fields=["status", "updated_at"],
                name="idx_transfer_ended",
            ),
        ),
    ]
