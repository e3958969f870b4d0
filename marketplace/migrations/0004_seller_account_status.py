from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0003_seller_account_changes"),
    ]

    operations = [
        migrations.AddField(
            model_name="seller",
            name="account_status",
            field=models.CharField(
                choices=[
                    ("unknown", "Unknown"),
                    ("ready", "Ready"),
                    ("restricted", "Restricted"),
                    ("deauthorized", "Deauthorized"),
                ],
                db_default="unknown",
                default="unknown",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="seller",
            name="account_status_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="seller",
            name="account_status_reason",
            field=models.CharField(blank=True, db_default="", default="", max_length=255),
        ),
        migrations.AddConstraint(
            model_name="seller",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("account_status__in", ["unknown", "ready", "restricted", "deauthorized"])
                ),
                name="chk_seller_account_status",
            ),
        ),
    ]
