package protocol_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// TestErrorsAreDocumented keeps docs/protocol.md's error table in step with
// the code: every client-visible code has its row.
func TestErrorsAreDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range protocol.Errors {
		if !strings.Contains(string(doc), fmt.Sprintf("| %d | %s |", e.Code, e.Message)) {
			t.Errorf("docs/protocol.md has no error table row %q", fmt.Sprintf("| %d | %s |", e.Code, e.Message))
		}
	}
}
