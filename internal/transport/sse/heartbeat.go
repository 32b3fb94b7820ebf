package sse

import (
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/switchboardhq/switchboard/internal/wheel"
)

// heartbeatFrame is the comment line sent to idle streams. Browsers ignore
// comments; proxies and load balancers see traffic and keep the connection.
var heartbeatFrame = []byte(": ping\n\n")

// heartbeat queues a comment on every stream once per interval, on a
// wheel.Wheel: no stream needs a timer of its own. A stream whose peer is
// gone is noticed when a heartbeat cannot be written.
type heartbeat struct {
	wheel *wheel.Wheel[*stream]
}

// newHeartbeat starts the heartbeat goroutine on clock; stop ends it.
func newHeartbeat(clock clockwork.Clock, interval time.Duration) *heartbeat {
	// The visit runs outside the wheel's lock: queueing takes the
	// session's lock.
	return &heartbeat{wheel: wheel.New(clock, interval, func(_ time.Time, st *stream) {
		st.sess.EnqueueControl(heartbeatFrame)
	})}
}

// add registers st, unless it was removed before. Its place is kept in
// st.hbSlot, guarded by the wheel's lock.
func (hb *heartbeat) add(st *stream) { hb.wheel.Add(st, &st.hbSlot) }

// remove unregisters st for good; it is a no-op for a stream never added.
func (hb *heartbeat) remove(st *stream) { hb.wheel.Remove(st, &st.hbSlot) }

// len returns the number of registered streams.
func (hb *heartbeat) len() int { return hb.wheel.Len() }

// stop ends the goroutine and waits for it. It is idempotent.
func (hb *heartbeat) stop() { hb.wheel.Stop() }
