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
// It is close to the delay itself (30 ms by default), which a held write
// adds to its deliveries: below that the delay would cost the deliveries
// more than it saves. At 10 ms, a node whose one fan-out to 1,000
// subscribers takes ~15 ms of writes (a slower machine's loopback) counted
// half its deliveries late at 50 publications/s, 78 % of a core, and the
// delay doubled their latency (p50 19.6 against 10.2 ms).
const lateLag = 25 * time.Millisecond

// lateBatch is the mean number of messages per write, without the delay,
// that shows writers falling behind: a writer that keeps up finds one.
const lateBatch = 1.5

// writeDelaySwitch returns the check, run every coalesceInterval, that
// switches write_delay on and off.
//
// A fixed delay is the wrong tool below saturation: it adds its own length
// to every delivery of a stream while a writer could have written at once.
// So it goes on only when the writers cannot keep up: the node sends at
// least WriteDelayMinRate messages per second and either most of the
// interval's deliveries took longer than lateLag, or the writers found
// messages piling up (lateBatch or more per write while nothing holds them
// back). The second sign comes first when a burst saturates the node: the
// queues grow before the deliveries are late, and a backlog that builds
// while the delay is off is never drained at saturation. The send rate at that moment is
// what the node could not sustain writing at once; the delay stays on
// until the rate falls below half of it (and of WriteDelayMinRate), so it
// does not flap off as soon as the batching it brings frees the CPU.
// While it is off, a writer still batches whatever arrived during its
// previous write.
func (h *Hub) writeDelaySwitch() func() {
	sent, writes := metrics.Value(h.metrics.MessagesSent), metrics.Value(h.metrics.SocketWrites)
	onTime, timed := metrics.HistogramUpTo(h.metrics.DeliveryLatency, lateLag.Seconds())
	var onRate float64 // the send rate when the delay went on
	return func() {
		prevSent, prevWrites, prevOnTime, prevTimed := sent, writes, onTime, timed
		sent, writes = metrics.Value(h.metrics.MessagesSent), metrics.Value(h.metrics.SocketWrites)
		onTime, timed = metrics.HistogramUpTo(h.metrics.DeliveryLatency, lateLag.Seconds())
		rate := (sent - prevSent) / coalesceInterval.Seconds()
		late := timed - prevTimed - (onTime - prevOnTime)
		piling := writes > prevWrites && sent-prevSent >= lateBatch*(writes-prevWrites)
		behind := piling || late > 0 && 2*late >= timed-prevTimed
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

// directIdle is how long a connection must have had no write for its next
// message to be written directly: a connection that gets a message more
// often is a stream, whose writer goroutine batches what piles up during
// a write (and write_delay, when on, what comes soon after). So at
// saturation, where every connection streams, the writers do all writes.
const directIdle = 50 * time.Millisecond

// directMaxRate is the send rate (messages/s) at which, sustained for
// busyIntervals checks in a row, the node stops writing directly at all:
// a node of many quiet connections (a message each now and then) that
// together send this much is saturated too, and its writer goroutines
// spread the writes over the cores where one fan-out would make them
// one by one. It resumes below half of it.
const directMaxRate = 20000

// busyIntervals is how many checks in a row must see directMaxRate: one
// publication to 10,000 idle subscribers, written in well under a second,
// must not stop direct writes halfway through its own fan-out.
const busyIntervals = 3

// busySwitch returns the check, run every coalesceInterval, that sets
// h.busy from the node's send rate.
func (h *Hub) busySwitch() func() {
	sent := metrics.Value(h.metrics.MessagesSent)
	high := 0 // checks in a row at directMaxRate or more
	return func() {
		prev := sent
		sent = metrics.Value(h.metrics.MessagesSent)
		rate := (sent - prev) / coalesceInterval.Seconds()
		switch {
		case rate >= directMaxRate:
			if high++; high >= busyIntervals {
				h.busy.Store(true)
				h.metrics.DirectWritesActive.Set(0)
			}
		case rate < directMaxRate/2:
			high = 0
			h.busy.Store(false)
			h.metrics.DirectWritesActive.Set(1)
		default:
			high = 0
		}
	}
}
