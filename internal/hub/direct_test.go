package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// directRecorder is a hub.Transport that writes directly (hub.DirectWriter)
// and keeps the offsets of the publications it got. Every third direct
// write plays a full socket: the message is owed, and must come out first
// in the next WriteMessages.
type directRecorder struct {
	mu      sync.Mutex
	offsets []uint64
	owed    []hub.Message
	tries   int
	writing bool // a write is in progress: two at once is a hub bug
	bad     string
}

func (r *directRecorder) Name() string         { return "direct" }
func (r *directRecorder) CanWriteDirect() bool { return true }
func (r *directRecorder) Close(protocol.Disconnect) error {
	return nil
}

func (r *directRecorder) enter() {
	r.mu.Lock()
	if r.writing && r.bad == "" {
		r.bad = "two writes at once"
	}
	r.writing = true
	r.mu.Unlock()
}

func (r *directRecorder) leave() {
	r.mu.Lock()
	r.writing = false
	r.mu.Unlock()
}

func (r *directRecorder) TryWriteMessages(msgs []hub.Message) (bool, error) {
	r.enter()
	defer r.leave()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.owed) > 0 && r.bad == "" {
		r.bad = "a direct write while bytes were owed"
	}
	r.tries++
	if r.tries%3 == 0 {
		r.owed = append(r.owed, msgs...)
		return true, nil
	}
	r.recordLocked(msgs)
	return false, nil
}

func (r *directRecorder) WriteMessages(msgs []hub.Message) error {
	r.enter()
	defer r.leave()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recordLocked(r.owed)
	r.owed = nil
	r.recordLocked(msgs)
	return nil
}

func (r *directRecorder) recordLocked(msgs []hub.Message) {
	for _, m := range msgs {
		var v struct{ Offset uint64 }
		if err := json.Unmarshal(m.Data, &v); err != nil {
			panic(fmt.Sprintf("hub wrote invalid JSON %q", m.Data))
		}
		if v.Offset > 0 {
			r.offsets = append(r.offsets, v.Offset)
		}
	}
}

// TestDirectWritesKeepOrderAcrossAParallelFanOut: with enough subscribers
// for the fan-out to be shared among goroutines, writes made directly by
// the fan-out, writes the socket could not take at once, and writes left
// to the writer goroutine still give every subscriber every publication
// once and in order, from one writer at a time.
func TestDirectWritesKeepOrderAcrossAParallelFanOut(t *testing.T) {
	h := newHub(t, hub.Config{QueueMaxMessages: 100000, QueueMaxBytes: 64 << 20})
	const subs, publishers, each = 1100, 3, 40
	recs := make([]*directRecorder, subs)
	for i := range recs {
		recs[i] = &directRecorder{}
		s := h.NewSession(recs[i], hub.SessionInfo{})
		send(s, `{"command":"subscribe","channel":"wide"}`)
	}
	var wg sync.WaitGroup
	for range publishers {
		wg.Go(func() {
			for range each {
				if _, err := h.Publish(context.Background(), "wide", []byte(`1`), "api"); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for i, r := range recs {
		waitCond(t, "every publication", func() bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			return len(r.offsets) == publishers*each && !r.writing
		})
		r.mu.Lock()
		if r.bad != "" {
			t.Fatalf("subscriber %d: %s", i, r.bad)
		}
		for j, off := range r.offsets {
			if off != uint64(j+1) {
				t.Fatalf("subscriber %d: message %d has offset %d: out of order or lost", i, j, off)
			}
		}
		r.mu.Unlock()
	}
}

// waitCond polls cond until it holds, failing the test after 10 s.
func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
