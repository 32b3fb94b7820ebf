package hub

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/broker/memory"
	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// countingWriter is a DirectWriter that counts its two kinds of writes.
type countingWriter struct {
	mu            sync.Mutex
	direct, queue int
}

func (w *countingWriter) Name() string                    { return "counting" }
func (w *countingWriter) Close(protocol.Disconnect) error { return nil }
func (w *countingWriter) CanWriteDirect() bool            { return true }
func (w *countingWriter) TryWriteMessages([]Message) (bool, error) {
	w.mu.Lock()
	w.direct++
	w.mu.Unlock()
	return false, nil
}
func (w *countingWriter) WriteMessages([]Message) error {
	w.mu.Lock()
	w.queue++
	w.mu.Unlock()
	return nil
}

// TestBusySwitch: direct writes stop once directMaxRate messages/s was
// seen busyIntervals checks in a row, and resume under half of it; while
// they are stopped, a message for an idle connection goes to a writer
// goroutine.
func TestBusySwitch(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	h := New(Config{Metrics: m}, memory.New(memory.Options{}), nil)
	check := h.busySwitch()
	w := &countingWriter{}
	s := h.NewSession(w, SessionInfo{})
	for i, st := range []struct {
		sent float64 // messages sent during the interval
		busy bool
	}{
		{100, false},  // 1,000/s
		{2000, false}, // 20,000/s: one burst is not busy
		{2000, false},
		{2000, true},  // three checks in a row
		{1500, true},  // 15,000/s: on until under half
		{900, false},  // 9,000/s
		{1200, false}, // 12,000/s: off until the full rate again
		{2000, false},
		{1500, false}, // not three in a row
		{2000, false},
	} {
		m.MessagesSent.Add(st.sent)
		check()
		if h.busy.Load() != st.busy {
			t.Fatalf("step %d: busy %v, want %v", i, h.busy.Load(), st.busy)
		}
		if want := map[bool]float64{false: 1, true: 0}[st.busy]; metrics.Value(m.DirectWritesActive) != want {
			t.Fatalf("step %d: direct_writes_active %v, want %v", i, metrics.Value(m.DirectWritesActive), want)
		}
		s.out.mu.Lock()
		s.out.lastWrite = 0 // idle: only the node's rate decides
		s.out.mu.Unlock()
		if direct := pushOne(s, w); direct == st.busy {
			t.Fatalf("step %d (busy %v): direct write %v", i, st.busy, direct)
		}
	}
}

// TestDirectOnlyWhenIdle: a connection written to less than directIdle ago
// is a stream, whose next message goes to its writer goroutine; after
// directIdle without a write it is written directly again.
func TestDirectOnlyWhenIdle(t *testing.T) {
	clock := clockwork.NewFakeClock()
	h := New(Config{Metrics: metrics.New(prometheus.NewRegistry()), Clock: clock}, memory.New(memory.Options{}), nil)
	w := &countingWriter{}
	s := h.NewSession(w, SessionInfo{})
	for i, tc := range []struct {
		after  time.Duration // since the previous write
		direct bool
	}{
		{time.Second, true}, // never written
		{10 * time.Millisecond, false},
		{directIdle, true},
		{directIdle / 2, false},
	} {
		clock.Advance(tc.after)
		if direct := pushOne(s, w); direct != tc.direct {
			t.Fatalf("step %d (%v after the last write): direct %v, want %v", i, tc.after, direct, tc.direct)
		}
	}
}

// pushOne queues a message on s, whose transport is w, and reports whether
// it was written directly; it returns once the writer is done.
func pushOne(s *Session, w *countingWriter) (direct bool) {
	w.mu.Lock()
	d0, q0 := w.direct, w.queue
	w.mu.Unlock()
	s.out.push(Message{Data: []byte(`{}`), At: 1})
	for {
		w.mu.Lock()
		d, q := w.direct-d0, w.queue-q0
		w.mu.Unlock()
		if d+q == 1 {
			direct = d == 1
			break
		}
		runtime.Gosched()
	}
	s.out.mu.Lock()
	for s.out.writing {
		s.out.mu.Unlock()
		runtime.Gosched()
		s.out.mu.Lock()
	}
	s.out.mu.Unlock()
	return direct
}
