from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("payouts", "0005_money_holes"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="webhookevent",
            options={"permissions": [("replay_webhookevent", "Can replay a stored Stripe event")]},
        ),
        migrations.AddIndex(
            model_name="webhookevent",
            index=models.Index(
                condition=models.Q(("outcome", "received")),
                fields=["received_at"],
                name="idx_webhook_unprocessed",
            ),
        ),
    ]
