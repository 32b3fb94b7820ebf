package sse

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine is left running after
// them: a stream, session writer or heartbeat that outlives its handler.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
