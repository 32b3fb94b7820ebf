package sse

import (
	"sync"
	"time"
)

// heartbeatFrame is the comment line sent to idle streams. Browsers ignore
// comments; proxies and load balancers see traffic and keep the connection.
var heartbeatFrame = []byte(": ping\n\n")

// heartbeat queues a comment on every stream once per interval. Streams are
// spread over buckets and one goroutine visits one bucket per tick, so the
// work is even over time and no stream needs a timer of its own. A stream
// whose peer is gone is noticed when a heartbeat cannot be written.
type heartbeat struct {
	mu      sync.Mutex // guards buckets and next
	buckets []map[*stream]struct{}
	next    int // bucket for the next added stream

	quit     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

// newHeartbeat starts the heartbeat goroutine; stop ends it.
func newHeartbeat(interval time.Duration) *heartbeat {
	n := max(1, min(int(interval/time.Second), 60))
	hb := &heartbeat{
		buckets: make([]map[*stream]struct{}, n),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	for i := range hb.buckets {
		hb.buckets[i] = make(map[*stream]struct{})
	}
	go hb.run(interval / time.Duration(n))
	return hb
}

// add registers st. It records the bucket in st.hbSlot, which is guarded by
// hb.mu.
func (hb *heartbeat) add(st *stream) {
	hb.mu.Lock()
	st.hbSlot = hb.next
	hb.buckets[hb.next][st] = struct{}{}
	hb.next = (hb.next + 1) % len(hb.buckets)
	hb.mu.Unlock()
}

// remove unregisters st; it is a no-op for a stream never added.
func (hb *heartbeat) remove(st *stream) {
	hb.mu.Lock()
	delete(hb.buckets[st.hbSlot], st)
	hb.mu.Unlock()
}

// len returns the number of registered streams.
func (hb *heartbeat) len() int {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	n := 0
	for _, b := range hb.buckets {
		n += len(b)
	}
	return n
}

// stop ends the goroutine and waits for it. It is idempotent.
func (hb *heartbeat) stop() {
	hb.stopOnce.Do(func() { close(hb.quit) })
	<-hb.done
}

func (hb *heartbeat) run(tick time.Duration) {
	defer close(hb.done)
	t := time.NewTicker(tick)
	defer t.Stop()
	var batch []*stream
	for i := 0; ; i = (i + 1) % len(hb.buckets) {
		select {
		case <-hb.quit:
			return
		case <-t.C:
		}
		hb.mu.Lock()
		batch = batch[:0]
		for st := range hb.buckets[i] {
			batch = append(batch, st)
		}
		hb.mu.Unlock()
		// Outside hb.mu: queueing takes the session's lock.
		for _, st := range batch {
			st.sess.EnqueueControl(heartbeatFrame)
		}
		clear(batch)
	}
}
