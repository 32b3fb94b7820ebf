package sfu

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run when a test leaves a goroutine behind: every
// room's loop, every participant's negotiation loop and every reader ends
// when the SFU closes.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// pion's vnet router and mDNS keep short-lived timers past Close.
		goleak.IgnoreTopFunction("time.Sleep"),
	)
}
