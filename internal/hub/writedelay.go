package hub

import (
	"time"

	"github.com/switchboardhq/switchboard/internal/metrics"
)

// holdBack delays the next write of a busy connection: when the previous
// write was less than WriteDelay ago, and the one before it came soon
// before that, the writer waits out the rest, so that what arrives
// meanwhile goes out in the same write. A connection written to less often
// is never delayed, nor is a queue holding a reply or a close. The delay in
// force is 0 while the node is quiet (WriteDelayMinRate). Called by the
// writer.
func (o *outbox) holdBack() {
	h := o.sess.hub
	wait := holdFor(time.Duration(h.holdDelay.Load()), o.lastWrite, o.lastGap, h.nanotime())
	if wait <= 0 {
		return
	}
	o.mu.Lock()
	if o.closing || o.urgent || o.halfFullLocked() { // replies are never held back
		o.mu.Unlock()
		return
	}
	if o.wake == nil {
		o.wake = make(chan struct{}, 1)
	}
	o.holding = true
	o.mu.Unlock()
	if o.holdTimer == nil {
		o.holdTimer = h.clock.NewTimer(wait)
	} else {
		o.holdTimer.Reset(wait)
	}
	select {
	case <-o.holdTimer.Chan():
	case <-o.wake: // a reply was queued, or the queue is half full
	}
	o.holdTimer.Stop()
	o.mu.Lock()
	if !o.holding { // woken, or a wake-up raced the timer: drain it
		select {
		case <-o.wake:
		default:
		}
	}
	o.holding = false
	o.mu.Unlock()
}

// holdFor is how long a writer waits before its next write, with delay d
// in force, its last write at lastWrite, the gap before that lastGap, and
// the time now (all nanotime). Only a stream waits: a connection whose
// last two writes were also close (within 2d, as a held write comes d
// after the one before it). One that gets a message now and then would
// wait for nothing to share its write with.
func holdFor(d time.Duration, lastWrite, lastGap, now int64) time.Duration {
	if d <= 0 || lastWrite == 0 || lastGap > 2*int64(d) {
		return 0
	}
	return max(time.Duration(lastWrite+int64(d)-now), 0)
}

// coalesceInterval is how often the node's send rate is checked against
// WriteDelayMinRate.
const coalesceInterval = 100 * time.Millisecond

// writeDelaySwitch returns the check, run every coalesceInterval, that
// switches WriteDelay on while the node sends at least WriteDelayMinRate
// messages per second and off below half of that.
func (h *Hub) writeDelaySwitch() func() {
	sent := metrics.Value(h.metrics.MessagesSent)
	return func() {
		prev := sent
		sent = metrics.Value(h.metrics.MessagesSent)
		rate := (sent - prev) / coalesceInterval.Seconds()
		switch on := h.holdDelay.Load() != 0; {
		case !on && rate >= float64(h.cfg.WriteDelayMinRate):
			h.holdDelay.Store(int64(h.cfg.WriteDelay))
			h.metrics.WriteDelayActive.Set(1)
		case on && rate < float64(h.cfg.WriteDelayMinRate)/2:
			h.holdDelay.Store(0)
			h.metrics.WriteDelayActive.Set(0)
		}
	}
}
