// Package testenv starts the real backend servers that Switchboard's tests
// run against (redis-server, nats-server), each on a free loopback port with
// its data in a temporary directory, and stops them when the test ends.
//
// It is imported only by tests. A test whose server binary is not installed
// is skipped on a developer's machine but fails when the CI environment
// variable is set, so that CI never passes by running nothing.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Binary returns the path of the named server binary. When it is not on PATH
// the test is skipped, or failed when the CI environment variable is set.
func Binary(tb testing.TB, name string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") != "" {
		tb.Fatalf("testenv: %s is required in CI: %v", name, err)
	}
	tb.Skipf("testenv: %s not installed: %v", name, err)
	return ""
}
