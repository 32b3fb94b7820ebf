package websocket

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine is left running after
// them: a reader, writer, worker, event loop or keepalive that outlives its
// connection or handler.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
