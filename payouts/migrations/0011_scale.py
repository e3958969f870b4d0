"""Scale: counts for /metrics kept by triggers, and the indexes the admin lists, the incremental
ledger_check and the inbox retention read (docs/scale.md).

Not atomic, so that each index is built CONCURRENTLY: on a table of millions of rows a plain
CREATE INDEX would hold payouts and webhook intake for the whole build. The counters' triggers
and their first counts are one statement (a DO block), so they are atomic on their own: it locks
the two counted tables against writes (SHARE ROW EXCLUSIVE) until the first counts are taken,
and nothing written in between is missed or counted twice.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

# A "rows" counter row says n transfers left ``from_status`` for ``status`` ('' for none: inserted
# or deleted), so a status's rows are what entered it less what left it, and a change of status
# appends one row.
FUNCTIONS = [
    # Rows inserted into payouts_sellertransfer, per status (one row per statement and status:
    # a bulk insert of a thousand rows appends one counter row).
    """
    CREATE FUNCTION payouts_count_transfers_added() RETURNS trigger AS $$
    BEGIN
        INSERT INTO payouts_transfercount (kind, from_status, status, n)
        SELECT 'rows', '', status, count(*) FROM added GROUP BY status;
        RETURN NULL;
    END;
    $$ LANGUAGE plpgsql
    """,
    """
    CREATE FUNCTION payouts_count_transfers_removed() RETURNS trigger AS $$
    BEGIN
        INSERT INTO payouts_transfercount (kind, from_status, status, n)
        SELECT 'rows', status, '', count(*) FROM removed GROUP BY status;
        RETURN NULL;
    END;
    $$ LANGUAGE plpgsql
    """,
    # A row's status changed: it left one status for another.
    """
    CREATE FUNCTION payouts_count_transfer_status_change() RETURNS trigger AS $$
    BEGIN
        INSERT INTO payouts_transfercount (kind, from_status, status, n)
        VALUES ('rows', OLD.status, NEW.status, 1);
        RETURN NULL;
    END;
    $$ LANGUAGE plpgsql
    """,
    # Audit events inserted, per (from, to) and hour (UTC): the transitions made.
    """
    CREATE FUNCTION payouts_count_transitions() RETURNS trigger AS $$
    BEGIN
        INSERT INTO payouts_transfercount (kind, from_status, status, hour, n)
        SELECT 'moves', from_status, to_status, date_trunc('hour', created_at, 'UTC'), count(*)
        FROM added GROUP BY 2, 3, 4;
        RETURN NULL;
    END;
    $$ LANGUAGE plpgsql
    """,
    # A TRUNCATE (a test database flush, a benchmark reset) empties what it counted too.
    """
    CREATE FUNCTION payouts_forget_counts() RETURNS trigger AS $$
    BEGIN
        DELETE FROM payouts_transfercount WHERE kind = TG_ARGV[0];
        RETURN NULL;
    END;
    $$ LANGUAGE plpgsql
    """,
]

TRIGGERS_AND_FIRST_COUNTS = """
DO $$
BEGIN
    LOCK TABLE payouts_sellertransfer, payouts_sellertransferevent IN SHARE ROW EXCLUSIVE MODE;

    CREATE TRIGGER payouts_sellertransfer_count_added
        AFTER INSERT ON payouts_sellertransfer REFERENCING NEW TABLE AS added
        FOR EACH STATEMENT EXECUTE FUNCTION payouts_count_transfers_added();
    CREATE TRIGGER payouts_sellertransfer_count_removed
        AFTER DELETE ON payouts_sellertransfer REFERENCING OLD TABLE AS removed
        FOR EACH STATEMENT EXECUTE FUNCTION payouts_count_transfers_removed();
    -- Row level with a column list: claims and leases, which never set status, queue nothing.
    CREATE TRIGGER payouts_sellertransfer_count_status
        AFTER UPDATE OF status ON payouts_sellertransfer
        FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
        EXECUTE FUNCTION payouts_count_transfer_status_change();
    CREATE TRIGGER payouts_sellertransfer_count_truncated
        AFTER TRUNCATE ON payouts_sellertransfer
        FOR EACH STATEMENT EXECUTE FUNCTION payouts_forget_counts('rows');
    CREATE TRIGGER payouts_sellertransferevent_count_added
        AFTER INSERT ON payouts_sellertransferevent REFERENCING NEW TABLE AS added
        FOR EACH STATEMENT EXECUTE FUNCTION payouts_count_transitions();
    CREATE TRIGGER payouts_sellertransferevent_count_truncated
        AFTER TRUNCATE ON payouts_sellertransferevent
        FOR EACH STATEMENT EXECUTE FUNCTION payouts_forget_counts('moves');

    DELETE FROM payouts_transfercount;
    INSERT INTO payouts_transfercount (kind, from_status, status, n)
    SELECT 'rows', '', status, count(*) FROM payouts_sellertransfer GROUP BY status;
    -- The last eight days' moves by hour (the console's charts), older ones by edge only.
    INSERT INTO payouts_transfercount (kind, from_status, status, hour, n)
    SELECT 'moves', from_status, to_status,
           CASE WHEN created_at >= now() - interval '8 days'
                THEN date_trunc('hour', created_at, 'UTC') END,
           count(*)
    FROM payouts_sellertransferevent GROUP BY 2, 3, 4;
END;
$$
"""

# The counter table churns (rows appended, folded every minute): vacuum it by dead rows, not by a
# share of its few live ones.
COUNTER_TABLE_VACUUM = """
ALTER TABLE payouts_transfercount SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000
)
"""

DROP_TRIGGERS = [
    "DROP TRIGGER payouts_sellertransferevent_count_truncated ON payouts_sellertransferevent",
    "DROP TRIGGER payouts_sellertransferevent_count_added ON payouts_sellertransferevent",
    "DROP TRIGGER payouts_sellertransfer_count_truncated ON payouts_sellertransfer",
    "DROP TRIGGER payouts_sellertransfer_count_status ON payouts_sellertransfer",
    "DROP TRIGGER payouts_sellertransfer_count_removed ON payouts_sellertransfer",
    "DROP TRIGGER payouts_sellertransfer_count_added ON payouts_sellertransfer",
]
DROP_FUNCTIONS = [
    "DROP FUNCTION payouts_forget_counts()",
    "DROP FUNCTION payouts_count_transitions()",
    "DROP FUNCTION payouts_count_transfer_status_change()",
    "DROP FUNCTION payouts_count_transfers_removed()",
    "DROP FUNCTION payouts_count_transfers_added()",
]


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("payouts", "0010_disputes_and_giving_back")]

    operations = [
        migrations.CreateModel(
            name="TransferCount",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kind",
                    models.CharField(choices=[("rows", "Rows"), ("moves", "Moves")], max_length=8),
                ),
                ("from_status", models.CharField(blank=True, default="", max_length=32)),
                ("status", models.CharField(max_length=32)),
                ("hour", models.DateTimeField(blank=True, null=True)),
                ("n", models.BigIntegerField()),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("kind__in", ["rows", "moves"])),
                        name="chk_transfercount_kind",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            ("kind", "moves"), ("hour__isnull", True), _connector="OR"
                        ),
                        name="chk_transfercount_hour_of_moves",
                    ),
                ],
            },
        ),
        AddIndexConcurrently(
            model_name="sellertransfer",
            index=models.Index(
                condition=models.Q(
                    (
                        "status__in",
                        [
                            "completed",
                            "partially_reversed",
                            "reversed",
                            "reversal_refused",
                            "permanently_failed",
                        ],
                    )
                ),
                fields=["status", "id"],
                name="idx_transfer_status_id",
            ),
        ),
        AddIndexConcurrently(
            model_name="sellertransfer",
            index=models.Index(fields=["currency", "id"], name="idx_transfer_currency_id"),
        ),
        AddIndexConcurrently(
            model_name="sellertransfer",
            index=models.Index(
                condition=models.Q(
                    (
                        "status__in",
                        ["pending", "failed", "held", "reversal_pending", "reversal_refused"],
                    ),
                    models.Q(
                        ("status", "permanently_failed"),
                        models.Q(("end_reason", "order_refunded"), _negated=True),
                    ),
                    _connector="OR",
                ),
                fields=["id"],
                name="idx_transfer_attention",
            ),
        ),
        AddIndexConcurrently(
            model_name="sellertransfer",
            index=models.Index(fields=["updated_at"], name="idx_transfer_updated_at"),
        ),
        AddIndexConcurrently(
            model_name="webhookevent",
            index=models.Index(fields=["received_at"], name="idx_webhook_received_at"),
        ),
        AddIndexConcurrently(
            model_name="webhookevent",
            index=models.Index(
                condition=models.Q(("outcome__in", ["received", "failed"])),
                fields=["id"],
                name="idx_webhook_open",
            ),
        ),
        AddIndexConcurrently(
            model_name="webhookevent",
            index=models.Index(fields=["type", "id"], name="idx_webhook_type_id"),
        ),
        migrations.RunSQL(
            [*FUNCTIONS, TRIGGERS_AND_FIRST_COUNTS, COUNTER_TABLE_VACUUM],
            [*DROP_TRIGGERS, *DROP_FUNCTIONS],
        ),
    ]
