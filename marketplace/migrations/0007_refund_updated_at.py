from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    # Built CONCURRENTLY: refunds keep being recorded while it builds.
    atomic = False

    dependencies = [
        ("marketplace", "0006_settlement"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="refund",
            index=models.Index(fields=["updated_at"], name="idx_refund_updated_at"),
        ),
    ]
