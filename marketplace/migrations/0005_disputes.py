import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0004_seller_account_status"),
    ]

    operations = [
        migrations.CreateModel(
            name="Dispute",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "stripe_dispute_id",
                    models.CharField(help_text="dp_…", max_length=255, unique=True),
                ),
                ("amount", models.BigIntegerField(help_text="Disputed amount, minor units.")),
                ("currency", models.CharField(max_length=3)),
                ("fee", models.BigIntegerField(default=0)),
                ("reason", models.CharField(blank=True, default="", max_length=64)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("warning_needs_response", "Warning Needs Response"),
                            ("warning_under_review", "Warning Under Review"),
                            ("warning_closed", "Warning Closed"),
                            ("needs_response", "Needs Response"),
                            ("under_review", "Under Review"),
                            ("won", "Won"),
                            ("lost", "Lost"),
                        ],
                        max_length=32,
                    ),
                ),
                ("evidence_due_by", models.DateTimeField(blank=True, null=True)),
                ("funds_withdrawn", models.BooleanField(default=False)),
                ("funds_reinstated", models.BooleanField(default=False)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "order",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="disputes",
                        to="marketplace.order",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            (
                                "status__in",
                                [
                                    "warning_needs_response",
                                    "warning_under_review",
                                    "warning_closed",
                                    "needs_response",
                                    "under_review",
                                    "won",
                                    "lost",
                                ],
                            )
                        ),
                        name="chk_dispute_status",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("amount__gt", 0)), name="chk_dispute_amount"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("fee__gte", 0)), name="chk_dispute_fee"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("currency__regex", "^[a-z]{3}$")),
                        name="chk_dispute_currency",
                    ),
                ],
            },
        ),
    ]
