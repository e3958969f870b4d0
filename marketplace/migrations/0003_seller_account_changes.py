import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0002_staff_refunds"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="SellerAccountChange",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("old_account", models.CharField(blank=True, max_length=255)),
                ("new_account", models.CharField(blank=True, max_length=255)),
                ("changed_at", models.DateTimeField(auto_now_add=True)),
                (
                    "changed_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "seller",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="account_changes",
                        to="marketplace.seller",
                    ),
                ),
            ],
            options={
                "ordering": ["id"],
            },
        ),
        # Evidence of where a seller's money went: refuse UPDATE and DELETE at the database.
        migrations.RunSQL(
            """
        CREATE FUNCTION marketplace_refuse_account_change_edit() RETURNS trigger AS $$
        BEGIN
            RAISE EXCEPTION 'marketplace_selleraccountchange is append-only (% refused)', TG_OP;
        END;
        $$ LANGUAGE plpgsql;
        CREATE TRIGGER marketplace_selleraccountchange_append_only
            BEFORE UPDATE OR DELETE ON marketplace_selleraccountchange
            FOR EACH ROW EXECUTE FUNCTION marketplace_refuse_account_change_edit();
        """,
            """
        DROP TRIGGER marketplace_selleraccountchange_append_only
            ON marketplace_selleraccountchange;
        DROP FUNCTION marketplace_refuse_account_change_edit();
        """,
        ),
    ]
