package whip_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run when a test leaves a goroutine behind: every
// session's watcher, every track reader and every packetizer ends when
// the server closes.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// pion's mDNS and ICE keep short-lived timers past Close.
		goleak.IgnoreTopFunction("time.Sleep"),
	)
}
