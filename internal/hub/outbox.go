package hub

import (
	"errors"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// outbox is a session's outbound side: the bounded queue, the writer
// goroutine that drains it into the transport, and the write_delay wait.
// Everything a client receives goes through it, in queue order.
//
// Ownership: the fields under mu are shared by every goroutine that queues
// (fan-out, command replies, keepalive) and the writer. lastWrite, lastGap
// and holdTimer belong to the writer alone. There is at most one writer at
// a time; it starts when something is queued and exits when the queue is
// empty, so an idle connection has no goroutine.
type outbox struct {
	sess *Session

	mu         sync.Mutex
	queue      []Message
	spare      []Message  // the writer's last batch, reused while busy
	qbox       *[]Message // the pool's box of queue's buffer, reused when it goes back
	queueBytes int        // bytes of the bounded messages in queue
	queueLen   int        // number of bounded messages in queue
	forced     int        // bytes queued past the bounds since the writer last took the queue
	wake       chan struct{}
	urgent     bool // the queue holds a reply, which write_delay does not hold back
	holding    bool // the writer is waiting out write_delay
	writing    bool // a writer goroutine is running
	closing    bool // no more messages are queued; the writer closes
	owed       bool // the transport holds bytes of a direct write: the writer must call WriteMessages
	finished   bool // the writer closed the transport
	disconnect protocol.Disconnect

	// Owned by the writer:
	lastWrite int64           // nanotime of the last write
	lastGap   int64           // ns between the last two writes
	holdTimer clockwork.Timer // reused from one wait to the next
}

// push queues m within the queue's bounds, starting the writer if it is not
// running. A queue over its bounds closes the session as a slow consumer.
// Messages queued after the session began closing are dropped.
func (o *outbox) push(m Message) {
	o.mu.Lock()
	if o.pushLocked(m) {
		o.mu.Unlock()
		o.writeDirect(m)
		return
	}
	o.mu.Unlock()
}

// pushLocked is push under o.mu. It reports true when the caller must
// write m itself with writeDirect (after unlocking): the connection was
// idle and the caller is now its writer.
func (o *outbox) pushLocked(m Message) (direct bool) {
	if o.closing {
		return false
	}
	cfg := &o.sess.hub.cfg
	switch {
	case o.queueLen >= cfg.QueueMaxMessages:
		o.overflowLocked(metrics.DropQueueMessages)
		return false
	case o.queueBytes+len(m.Data) > cfg.QueueMaxBytes:
		o.overflowLocked(metrics.DropQueueBytes)
		return false
	}
	if o.directLocked() {
		return true
	}
	if o.queue == nil {
		o.qbox = queuePool.Get().(*[]Message)
		o.queue = (*o.qbox)[:0]
	}
	o.queue = append(o.queue, m)
	o.queueBytes += len(m.Data)
	o.queueLen++
	switch {
	case m.At == 0 && !m.Control:
		o.urgent = true
		o.wakeLocked()
	case o.halfFullLocked():
		o.wakeLocked() // waiting out write_delay must not make a reader look slow
	}
	o.startWriterLocked()
	return false
}

// halfFullLocked reports whether the queue is at half its bounds, where
// the writer stops waiting out write_delay.
func (o *outbox) halfFullLocked() bool {
	cfg := &o.sess.hub.cfg
	return 2*o.queueLen >= cfg.QueueMaxMessages || 2*o.queueBytes >= cfg.QueueMaxBytes
}

// forcedQueueFactor: what a session may queue past its bounds (a subscribe's
// recovered publications) is at most this many times QueueMaxBytes between
// two writes.
const forcedQueueFactor = 16

// pushForced queues m outside the queue's bounds: a subscribe's reply and
// recovered publications, which are bounded by the channel's history, must
// not make a client that reads at full speed look slow, or it could never
// recover. They are capped by forcedQueueFactor × QueueMaxBytes so that a
// client that does not read cannot pile them up. A reply (m.At == 0) is
// urgent: write_delay does not hold it back.
func (o *outbox) pushForced(m Message) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing {
		return
	}
	if o.forced+len(m.Data) > forcedQueueFactor*o.sess.hub.cfg.QueueMaxBytes {
		o.overflowLocked(metrics.DropQueueBytes)
		return
	}
	o.queue = append(o.queue, m)
	o.forced += len(m.Data)
	if m.At == 0 && !m.Control {
		o.urgent = true
		o.wakeLocked()
	}
	o.startWriterLocked()
}

// queuePool recycles the outbound queues of sessions that went idle, so a
// burst does not allocate a new queue for every subscriber.
var queuePool = sync.Pool{New: func() any { q := make([]Message, 0, 16); return &q }}

// releaseQueueLocked gives the queue buffers back to the pool.
func (o *outbox) releaseQueueLocked() {
	for _, q := range [][]Message{o.queue, o.spare} {
		if q == nil || cap(q) > 1024 {
			continue
		}
		clear(q[:cap(q)])
		if o.qbox == nil {
			o.qbox = new([]Message)
		}
		*o.qbox = q[:0]
		queuePool.Put(o.qbox)
		o.qbox = nil
	}
	o.queue, o.spare, o.qbox = nil, nil, nil
}

// dropQueueLocked discards what is queued, counting it under reason.
func (o *outbox) dropQueueLocked(reason metrics.DropReason) {
	n := 0
	for i := range o.queue {
		if !o.queue[i].Control {
			n++
		}
	}
	o.sess.hub.metrics.Drop(reason, n)
	o.queue, o.queueBytes, o.queueLen, o.forced = nil, 0, 0, 0
}

// overflowLocked drops the queue and closes the session as a slow consumer.
func (o *outbox) overflowLocked(reason metrics.DropReason) {
	o.sess.hub.metrics.QueueOverflows.Inc()
	o.sess.hub.metrics.Drop(reason, 1) // the message that did not fit
	o.dropQueueLocked(reason)
	o.closeLocked(protocol.DisconnectSlowConsumer)
}

func (o *outbox) startWriterLocked() {
	if !o.writing {
		o.writing = true
		go o.writeLoop()
	}
}

// close begins a server-side close: what is queued is written, then the
// transport closes with d. The first reason wins.
func (o *outbox) close(d protocol.Disconnect) {
	o.mu.Lock()
	o.closeLocked(d)
	o.mu.Unlock()
}

func (o *outbox) closeLocked(d protocol.Disconnect) {
	if o.beginCloseLocked(d, true) {
		o.wakeLocked()
		o.startWriterLocked()
	}
}

// beginCloseLocked marks the session closing with d (counted as a
// server-side disconnect when counted) and stops the commands in flight
// for it. It reports false when the session was already closing.
func (o *outbox) beginCloseLocked(d protocol.Disconnect, counted bool) bool {
	if o.closing {
		return false
	}
	o.closing, o.disconnect = true, d
	if counted {
		o.sess.hub.metrics.Disconnect(d.Code)
	}
	o.sess.cancelCommands()
	return true
}

// peerGone closes without writing anything more: the peer is gone.
func (o *outbox) peerGone() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing {
		return
	}
	o.dropQueueLocked(metrics.DropClosed)
	o.beginCloseLocked(protocol.DisconnectNormal, false)
	o.wakeLocked()
	o.startWriterLocked()
}

// writeLoop drains the queue in batches until it is empty, then exits. When
// the session is closing it closes the transport and ends the session.
func (o *outbox) writeLoop() {
	for {
		o.holdBack()
		o.mu.Lock()
		if len(o.queue) == 0 && !o.owed {
			if o.closing && !o.finished {
				o.finished = true
				d := o.disconnect
				o.spare = nil
				o.mu.Unlock()
				_ = o.sess.transport.Close(d)
				o.sess.finish()
				return
			}
			o.writing = false
			o.releaseQueueLocked() // an idle session keeps no buffer
			o.mu.Unlock()
			return
		}
		batch := o.queue
		o.queue, o.spare = o.spare, nil
		o.queueBytes, o.queueLen, o.forced = 0, 0, 0
		o.urgent, o.owed = false, false
		o.mu.Unlock()

		err := o.sess.transport.WriteMessages(batch)
		o.wrote(batch, err)
		clear(batch)

		o.mu.Lock()
		o.spare = batch[:0]
		if err != nil {
			o.failedLocked(err)
		}
		o.mu.Unlock()
	}
}

// wrote records a write of batch that ended with err: the writer's timing
// (lastWrite, lastGap) and the metrics. Called by the writer.
func (o *outbox) wrote(batch []Message, err error) {
	h := o.sess.hub
	m := h.metrics
	now := h.nanotime()
	if o.lastWrite != 0 {
		o.lastGap = now - o.lastWrite
	}
	o.lastWrite = now
	var n, bytes int
	for i := range batch {
		if !batch[i].Control {
			n++
			bytes += len(batch[i].Data)
			if at := batch[i].At; at != 0 && err == nil {
				m.DeliveryLatency.Observe(float64(now-at) / 1e9)
			}
		}
	}
	if err != nil {
		m.Drop(metrics.DropWriteFailed, n)
	} else {
		m.MessagesSent.Add(float64(n))
		m.BytesSent.Add(float64(bytes))
		m.SocketWrites.Inc()
	}
}

// failedLocked ends the session after a failed write: what is queued is
// dropped and the writer closes the transport.
func (o *outbox) failedLocked(err error) {
	o.dropQueueLocked(metrics.DropWriteFailed)
	o.beginCloseLocked(protocol.DisconnectWriteTimeout, !errors.Is(err, ErrTransportClosed))
}

// directLocked reports whether m can be written at once by the goroutine
// queuing it, and if so makes that goroutine the writer: the connection
// is idle (no writer, nothing queued or owed, nothing written for
// directIdle), the node is not busy (busySwitch), its transport writes
// without blocking, and write_delay would not hold this write back.
func (o *outbox) directLocked() bool {
	h := o.sess.hub
	if o.writing || len(o.queue) > 0 || o.owed || h.busy.Load() {
		return false
	}
	dw, ok := o.sess.transport.(DirectWriter)
	if !ok || !dw.CanWriteDirect() {
		return false
	}
	now := h.nanotime()
	if o.lastWrite != 0 && now-o.lastWrite < int64(directIdle) {
		return false // a stream: let the writer gather what comes next
	}
	if d := time.Duration(h.holdDelay.Load()); d > 0 && holdFor(d, o.lastWrite, o.lastGap, now) > 0 {
		return false
	}
	o.writing = true
	return true
}

// writeDirect writes m on the caller's goroutine, which directLocked made
// the writer, then hands over to a writer goroutine if the socket kept
// part of it, more was queued meanwhile, or the session began closing.
func (o *outbox) writeDirect(m Message) {
	batch := [1]Message{m}
	owed, err := o.sess.transport.(DirectWriter).TryWriteMessages(batch[:])
	o.wrote(batch[:], err)
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		o.failedLocked(err)
	} else {
		o.sess.hub.metrics.DirectWrites.Inc()
	}
	o.owed = owed
	if len(o.queue) > 0 || o.owed || o.closing {
		go o.writeLoop() // o.writing stays true
		return
	}
	o.writing = false
}

// wakeLocked ends the writer's wait for write_delay, if it is waiting: a
// reply or a close must not wait.
func (o *outbox) wakeLocked() {
	if o.holding {
		o.holding = false
		o.wake <- struct{}{} // room for one; only holdBack receives
	}
}

// ErrTransportClosed may be returned by Transport.WriteMessages when the
// connection is already closed; the session then closes without counting a
// server-side disconnect.
var ErrTransportClosed = errors.New("hub: transport closed")
