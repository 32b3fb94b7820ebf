package turn_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run when a test leaves a goroutine behind: every
// server is closed, and Close waits for every relay socket.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
