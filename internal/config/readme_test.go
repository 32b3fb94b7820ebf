package config_test

import (
	"os"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/config"
)

// TestREADMEListsEveryKey keeps the README's configuration table in step
// with the code.
func TestREADMEListsEveryKey(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range config.Keys {
		if !strings.Contains(string(readme), "| `"+k.Name+"` |") {
			t.Errorf("README.md has no row for configuration key %q", k.Name)
		}
	}
}
