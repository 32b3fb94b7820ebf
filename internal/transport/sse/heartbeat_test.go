package sse

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/switchboardhq/switchboard/internal/ssetest"
)

// TestHeartbeat advances a fake clock by one interval at a time; each time
// the open stream gets exactly one ": ping" comment before the next
// publication.
func TestHeartbeat(t *testing.T) {
	const interval = 10 * time.Second
	clk := clockwork.NewFakeClock()
	h, sh, srv := newTestHandler(t, Options{Clock: clk, PingInterval: interval})
	s := ssetest.Open(t, srv.Client(), srv.URL+"?channel=news", nil)
	s.Next() // retry hint
	if ev := s.NextData(); ev.Type != "connected" {
		t.Fatalf("want connected, got %+v", ev)
	}
	// The stream joins the heartbeat just after its connected event.
	waitFor(t, "the stream on the heartbeat", func() bool { return sh.hb.len() == 1 })
	for round := range 3 {
		clk.Advance(interval)
		ev := s.Next()
		if ev.HasData || len(ev.Comments) != 1 || ev.Comments[0] != "ping" {
			t.Fatalf("round %d: got %+v, want a ping comment", round, ev)
		}
		// Nothing else is queued before a publication made now.
		if _, err := h.Publish(t.Context(), "news", []byte(`1`), "test"); err != nil {
			t.Fatal(err)
		}
		if ev := s.Next(); !ev.HasData {
			t.Fatalf("round %d: got %+v, want the publication", round, ev)
		}
	}
	s.Close()
	waitFor(t, "the stream off the heartbeat", func() bool { return sh.hb.len() == 0 })
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
