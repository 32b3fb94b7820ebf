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

// coalesceInterval is how often the node's send rate and delivery lag are
// checked to switch write_delay on or off.
const coalesceInterval = 100 * time.Millisecond

// lateLag is the delivery lag (publication reaching the node to its write)
// past which a delivery counts as late: write_delay goes on when most
// deliveries of an interval are late, since the writers then cannot keep up.
const lateLag = 10 * time.Millisecond

// writeDelaySwitch returns the check, run every coalesceInterval, that
// switches write_delay on and off.
//
// A fixed delay is the wrong tool below saturation: it adds its own length
// to every delivery of a stream while a writer could have written at once.
// So it goes on only when the writers cannot keep up: the node sends at
// least WriteDelayMinRate messages per second and most of the interval's
// deliveries took longer than lateLag. The send rate at that moment is
// what the node could not sustain writing at once; the delay stays on
// until the rate falls below half of it (and of WriteDelayMinRate), so it
// does not flap off as soon as the batching it brings frees the CPU.
// While it is off, a writer still batches whatever arrived during its
// previous write.
func (h *Hub) writeDelaySwitch() func() {
	sent := metrics.Value(h.metrics.MessagesSent)
	onTime, timed := metrics.HistogramUpTo(h.metrics.DeliveryLatency, lateLag.Seconds())
	var onRate float64 // the send rate when the delay went on
	return func() {
		prevSent, prevOnTime, prevTimed := sent, onTime, timed
		sent = metrics.Value(h.metrics.MessagesSent)
		onTime, timed = metrics.HistogramUpTo(h.metrics.DeliveryLatency, lateLag.Seconds())
		rate := (sent - prevSent) / coalesceInterval.Seconds()
		late := timed - prevTimed - (onTime - prevOnTime)
		behind := late > 0 && 2*late >= timed-prevTimed
		minRate := float64(h.cfg.WriteDelayMinRate)
		switch on := h.holdDelay.Load() != 0; {
		case !on && rate >= minRate && behind:
			onRate = rate
			h.holdDelay.Store(int64(h.cfg.WriteDelay))
			h.metrics.WriteDelayActive.Set(1)
		case on && rate < max(minRate, onRate)/2:
			h.holdDelay.Store(0)
			h.metrics.WriteDelayActive.Set(0)
		}
	}
}
