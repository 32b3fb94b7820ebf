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
	"strings"
	"syscall"
	"testing"
	"time"
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
	tb.Skipf("testenv: SKIPPED: this test needs %s on PATH, and it is not there (%v); install it to run the test (with CI set, this fails instead)", name, err)
	return ""
}

// stopProcess sends sig to a started server and waits for it to exit
// (done is closed then), killing it when grace (if not zero) has passed.
// A nil cmd is a server that is not running.
func stopProcess(cmd *exec.Cmd, done chan struct{}, sig syscall.Signal, grace time.Duration) {
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	if grace > 0 {
		select {
		case <-done:
		case <-time.After(grace):
			_ = cmd.Process.Kill()
		}
	}
	<-done
}

// fileTail returns the end of a log file, for failure messages.
func fileTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}
