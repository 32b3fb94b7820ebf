package hub_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run when a test leaves a goroutine behind: every hub
// is shut down, and a session's writer exits once its queue is empty.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
