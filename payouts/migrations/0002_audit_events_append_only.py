from django.db import migrations

# The audit trail is evidence: refuse UPDATE and DELETE at the database, not only in Python.
# (TRUNCATE, used by test database flushes, is a table-level statement and is not affected.)
FORWARD = """
CREATE FUNCTION payouts_refuse_audit_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'payouts_sellertransferevent is append-only (% refused)', TG_OP;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER payouts_sellertransferevent_append_only
    BEFORE UPDATE OR DELETE ON payouts_sellertransferevent
    FOR EACH ROW EXECUTE FUNCTION payouts_refuse_audit_change();
"""

BACKWARD = """
DROP TRIGGER payouts_sellertransferevent_append_only ON payouts_sellertransferevent;
DROP FUNCTION payouts_refuse_audit_change();
"""


class Migration(migrations.Migration):
    dependencies = [("payouts", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
