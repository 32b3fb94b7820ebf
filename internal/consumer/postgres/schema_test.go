package postgres_test

import (
	"os"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/consumer/postgres"
)

func TestCheckTable(t *testing.T) {
	for name, ok := range map[string]bool{
		"switchboard_outbox": true, "app.outbox": true, "_x1": true, strings.Repeat("a", 48): true,
		"": false, "Outbox": false, "1outbox": false, "a.b.c": false, "out-box": false, `x"; DROP TABLE y; --`: false,
		strings.Repeat("a", 49): false, "a.": false, ".a": false,
	} {
		if err := postgres.CheckTable(name); (err == nil) != ok {
			t.Errorf("CheckTable(%q) = %v, want ok %v", name, err, ok)
		}
	}
}

// TestDocsShowSchema keeps the DDL in docs/backend.md the package's own.
func TestDocsShowSchema(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/backend.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), postgres.Schema("switchboard_outbox")) {
		t.Error(`docs/backend.md does not show postgres.Schema("switchboard_outbox") as it is`)
	}
}

// FuzzCheckTable checks that an accepted table name can stand unquoted in
// the consumer's SQL: lower-case letters, digits, '_' and at most one '.'.
func FuzzCheckTable(f *testing.F) {
	f.Add("switchboard_outbox")
	f.Add("app.outbox")
	f.Add(`x"; --`)
	f.Fuzz(func(t *testing.T, name string) {
		if postgres.CheckTable(name) != nil {
			return
		}
		if strings.Count(name, ".") > 1 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789_.") != "" {
			t.Fatalf("accepted %q", name)
		}
	})
}
