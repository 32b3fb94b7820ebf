package postgres

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// tableName is what the table option accepts: a lower-case SQL identifier,
// optionally qualified by a schema, so that it needs no quoting anywhere
// (the triggers name it in strings and in function names).
var tableName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,47}(\.[a-z_][a-z0-9_]{0,47})?$`)

// CheckTable reports whether table can name the outbox table: lower-case
// letters, digits and underscores, not starting with a digit, at most 48
// bytes, with an optional "schema." before it.
func CheckTable(table string) error {
	if !tableName.MatchString(table) {
		return fmt.Errorf("postgres consumer: table %q must be a lower-case name of letters, digits and _ (at most 48 bytes), optionally schema.name", table)
	}
	return nil
}

// CheckDSN reports whether dsn is a PostgreSQL connection string the
// consumer can use (a postgres:// URL or key=value pairs). It does not
// connect.
func CheckDSN(dsn string) error {
	if _, err := pgxpool.ParseConfig(dsn); err != nil {
		return fmt.Errorf("postgres consumer: %w", err)
	}
	return nil
}

// Schema returns the SQL that creates the outbox table named table (see
// CheckTable) with its two triggers: one keeps each channel's ids in
// commit order, the other wakes the consumers with NOTIFY. docs/backend.md
// shows it for the default table.
func Schema(table string) string {
	fn := strings.ReplaceAll(table, ".", "_")
	return strings.NewReplacer("{{table}}", table, "{{func}}", fn).Replace(`CREATE TABLE {{table}} (
    id              bigserial PRIMARY KEY,
    channel         text NOT NULL,
    data            jsonb NOT NULL,
    idempotency_key text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Per-channel order: a row takes its id while its transaction holds a
-- lock on the channel, kept until commit, so a channel's ids are in
-- commit order and a consumer never sees a later id before an earlier one.
CREATE FUNCTION {{func}}_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('{{table}}:' || NEW.channel, 0));
    NEW.id := nextval(pg_get_serial_sequence('{{table}}', 'id'));
    RETURN NEW;
END $$;
CREATE TRIGGER {{func}}_order BEFORE INSERT ON {{table}}
    FOR EACH ROW EXECUTE FUNCTION {{func}}_order();

-- Wakes the consumers as soon as the inserting transaction commits.
CREATE FUNCTION {{func}}_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{{table}}', '');
    RETURN NULL;
END $$;
CREATE TRIGGER {{func}}_notify AFTER INSERT ON {{table}}
    FOR EACH STATEMENT EXECUTE FUNCTION {{func}}_notify();
`)
}
