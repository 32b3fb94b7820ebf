package websocket

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// testPool is a worker pool on a fake clock whose batches block until
// released, so that a test decides when workers are busy.
type testPool struct {
	*workerPool
	clk     *clockwork.FakeClock
	served  chan *conn    // each batch reports its conn here, then waits
	release chan struct{} // ends one batch
}

func newTestPool(t *testing.T, base int) *testPool {
	t.Helper()
	clk := clockwork.NewFakeClock()
	wp := newWorkerPool(clk)
	wp.base = base
	tp := &testPool{workerPool: &wp, clk: clk, served: make(chan *conn), release: make(chan struct{})}
	wp.serve = func(c *conn, _ []byte) {
		tp.served <- c
		<-tp.release
	}
	t.Cleanup(func() {
		close(wp.quit) // parked workers leave
		waitFor(t, "the workers to leave", func() bool { return tp.running() == 0 })
	})
	return tp
}

func (tp *testPool) running() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.n
}

func (tp *testPool) queued() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return len(tp.queue)
}

// next returns the conn of the next batch that starts.
func (tp *testPool) next(t *testing.T) *conn {
	t.Helper()
	select {
	case c := <-tp.served:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no batch started")
		return nil
	}
}

// TestWorkerPoolStall drives the stall detection with a fake clock: an
// extra worker starts only when the queue has not moved for workerStall.
func TestWorkerPoolStall(t *testing.T) {
	tp := newTestPool(t, 1)
	c1, c2, c3 := &conn{}, &conn{}, &conn{}
	tp.submit(c1)
	if c := tp.next(t); c != c1 {
		t.Fatal("the first batch is not c1's")
	}
	tp.submit(c2)
	tp.submit(c3)
	if n, q := tp.running(), tp.queued(); n != 1 || q != 2 {
		t.Fatalf("%d workers and %d queued, want 1 and 2", n, q)
	}
	// Almost a stall; then the worker takes c2, so the queue moved.
	tp.clk.Advance(workerStall - time.Nanosecond)
	tp.release <- struct{}{}
	if c := tp.next(t); c != c2 {
		t.Fatal("the second batch is not c2's")
	}
	// The check at workerStall finds the queue moved a moment ago: no extra
	// worker. It re-arms itself: the clock then has two waiters, the
	// worker's idle timer and the check.
	tp.clk.Advance(time.Nanosecond)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := tp.clk.BlockUntilContext(ctx, 2); err != nil {
		t.Fatalf("the stall check did not re-arm: %v", err)
	}
	if n, q := tp.running(), tp.queued(); n != 1 || q != 1 {
		t.Fatalf("%d workers and %d queued after a moving queue, want 1 and 1", n, q)
	}
	// Now the queue stands still for workerStall: one more worker, which
	// takes c3 while the first is still blocked.
	tp.clk.Advance(workerStall)
	if c := tp.next(t); c != c3 {
		t.Fatal("the third batch is not c3's")
	}
	if n, q := tp.running(), tp.queued(); n != 2 || q != 0 {
		t.Fatalf("%d workers and %d queued after a stall, want 2 and 0", n, q)
	}
	tp.release <- struct{}{}
	tp.release <- struct{}{}
}

// TestWorkerPoolIdle: a worker without work leaves after workerIdle on the
// pool's clock, and a new one starts for the next connection.
func TestWorkerPoolIdle(t *testing.T) {
	tp := newTestPool(t, 2)
	c1 := &conn{}
	tp.submit(c1)
	tp.next(t)
	tp.release <- struct{}{}
	// The worker parks, then its idle timer (reset as it parks) fires.
	deadline := time.Now().Add(10 * time.Second)
	for tp.running() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the idle worker did not leave")
		}
		tp.clk.Advance(workerIdle)
		time.Sleep(time.Millisecond)
	}
	tp.submit(c1)
	if c := tp.next(t); c != c1 || tp.running() != 1 {
		t.Fatalf("after the idle worker left: %d workers", tp.running())
	}
	tp.release <- struct{}{}
}
