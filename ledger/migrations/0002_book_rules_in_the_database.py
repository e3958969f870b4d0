from django.db import migrations

# The book's rules, enforced by PostgreSQL itself, not only by the posting code:
# - an entry's lines sum to zero in each currency, and an entry has at least two lines: checked
#   when the transaction commits (deferred constraint triggers), so the lines of one entry can
#   be inserted one by one;
# - entries and lines are never updated or deleted (TRUNCATE, used by test database flushes,
#   is a table-level statement and is not affected).
FORWARD = """
CREATE FUNCTION ledger_check_entry_balanced() RETURNS trigger AS $$
DECLARE
    entry bigint;
    bad record;
BEGIN
    IF TG_TABLE_NAME = 'ledger_entry' THEN
        entry := NEW.id;
    ELSE
        entry := NEW.entry_id;
    END IF;
    SELECT currency, sum(amount) AS total INTO bad FROM ledger_line
        WHERE entry_id = entry GROUP BY currency HAVING sum(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger entry % does not balance: % % left over',
            entry, bad.total, bad.currency;
    END IF;
    IF (SELECT count(*) FROM ledger_line WHERE entry_id = entry) < 2 THEN
        RAISE EXCEPTION 'ledger entry % has fewer than two lines', entry;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER ledger_line_balanced
    AFTER INSERT ON ledger_line DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_entry_balanced();
CREATE CONSTRAINT TRIGGER ledger_entry_has_lines
    AFTER INSERT ON ledger_entry DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_entry_balanced();

CREATE FUNCTION ledger_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER ledger_entry_append_only BEFORE UPDATE OR DELETE ON ledger_entry
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_line_append_only BEFORE UPDATE OR DELETE ON ledger_line
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
"""

BACKWARD = """
DROP TRIGGER ledger_line_append_only ON ledger_line;
DROP TRIGGER ledger_entry_append_only ON ledger_entry;
DROP FUNCTION ledger_refuse_change();
DROP TRIGGER ledger_entry_has_lines ON ledger_entry;
DROP TRIGGER ledger_line_balanced ON ledger_line;
DROP FUNCTION ledger_check_entry_balanced();
"""


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_book")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
