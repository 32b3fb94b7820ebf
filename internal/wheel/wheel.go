// Package wheel runs one periodic task for each member of a large set
// without a timer per member: members are spread over buckets and one
// goroutine visits one bucket per tick, so a full turn of the wheel takes
// one interval and the work is even over time. The WebSocket keepalive
// (pings, idle timeouts) and the SSE heartbeat are wheels.
//
// The wheel reads time from a clockwork.Clock, so tests advance a fake clock
// instead of sleeping.
package wheel

import (
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// BucketWidth is the time between two buckets' visits when the interval
// allows it: a wheel has one bucket per BucketWidth of its interval, at
// most MaxBuckets and at least one. Short ticks keep each visit short: a
// bucket's visits run back to back on one goroutine (a WebSocket ping is a
// socket write), and on a one-core node a long run of them delays every
// request that arrives meanwhile. With 10,000 connections pinged every
// 25 s, a bucket holds 10 of them, not the 400 a bucket per second held.
const BucketWidth = 25 * time.Millisecond

// MaxBuckets bounds the buckets of a wheel.
const MaxBuckets = 2400

// Slot is a member's place in a wheel. The member owns it (a field of the
// member, one per wheel) and passes it to Add and Remove; the zero value is
// a member never added. Its fields are guarded by the wheel's lock.
type Slot struct {
	bucket  int
	added   bool
	removed bool
}

// Wheel visits each of its members once per interval. Create it with New
// and end it with Stop.
type Wheel[T comparable] struct {
	clock clockwork.Clock
	tick  time.Duration
	visit func(now time.Time, m T)

	mu      sync.Mutex // guards buckets, next and every member's Slot
	buckets []map[T]struct{}
	next    int // bucket for the next added member

	quit     chan struct{}
	stopOnce sync.Once
	done     chan struct{} // closed when the goroutine has returned
}

// New starts a wheel that calls visit for every member once per interval,
// which must be positive, from its own goroutine and never under the
// wheel's lock (visit may call Remove). A nil clock is the real clock. The
// wheel has one bucket per BucketWidth of interval (between 1 and
// MaxBuckets) and visits one bucket per interval/buckets.
//
// Should the goroutine fall behind (visits slower than the tick, a stopped
// process, a fake clock advanced by several ticks at once), it visits the
// buckets it missed when it wakes, at most one turn's worth, so no member
// skips a visit because of a late tick.
func New[T comparable](clock clockwork.Clock, interval time.Duration, visit func(now time.Time, m T)) *Wheel[T] {
	if interval <= 0 {
		panic("wheel: non-positive interval")
	}
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	n := max(1, min(int(interval/BucketWidth), MaxBuckets))
	w := &Wheel[T]{
		clock:   clock,
		tick:    interval / time.Duration(n),
		visit:   visit,
		buckets: make([]map[T]struct{}, n),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	for i := range w.buckets {
		w.buckets[i] = make(map[T]struct{})
	}
	// The first tick is scheduled here, not in the goroutine, so that a
	// fake clock advanced right after New already moves the wheel.
	next := clock.Now().Add(w.tick)
	timer := clock.NewTimer(w.tick)
	go w.run(timer, next)
	return w
}

// Add puts m on the wheel, using s (m's own slot) to record where. It
// reports whether m was added: a member already on the wheel, or removed
// before (even if it was never added), is not, so a Remove that runs before
// the Add it races with still wins.
func (w *Wheel[T]) Add(m T, s *Slot) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s.added || s.removed {
		return false
	}
	s.added, s.bucket = true, w.next
	w.buckets[w.next][m] = struct{}{}
	w.next = (w.next + 1) % len(w.buckets)
	return true
}

// Remove takes m off the wheel for good: a later Add of m with the same
// slot does nothing. It may be called for a member never added, and more
// than once.
func (w *Wheel[T]) Remove(m T, s *Slot) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s.added && !s.removed {
		delete(w.buckets[s.bucket], m)
	}
	s.removed = true
}

// Len returns the number of members on the wheel.
func (w *Wheel[T]) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, b := range w.buckets {
		n += len(b)
	}
	return n
}

// Stop ends the wheel's goroutine and waits for it; no visit runs after
// Stop returns. It is idempotent.
func (w *Wheel[T]) Stop() {
	w.stopOnce.Do(func() { close(w.quit) })
	<-w.done
}

// run visits the buckets whose tick has come, each time the timer fires.
// next is the time of the next tick.
func (w *Wheel[T]) run(timer clockwork.Timer, next time.Time) {
	defer close(w.done)
	defer timer.Stop()
	var batch []T
	cursor := 0 // the next bucket to visit
	for {
		select {
		case <-w.quit:
			return
		case <-timer.Chan():
		}
		now := w.clock.Now()
		due := 0
		for !next.After(now) && due < len(w.buckets) {
			due++
			next = next.Add(w.tick)
		}
		if !next.After(now) {
			// More than a turn behind: every bucket is visited now; the
			// ticks resume from here rather than catching up further.
			next = now.Add(w.tick)
		}
		for range due {
			w.mu.Lock()
			for m := range w.buckets[cursor] {
				batch = append(batch, m)
			}
			w.mu.Unlock()
			cursor = (cursor + 1) % len(w.buckets)
			for _, m := range batch {
				w.visit(now, m)
			}
			clear(batch)
			batch = batch[:0]
		}
		timer.Reset(w.clock.Until(next))
	}
}
