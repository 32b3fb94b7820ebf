package webhook

import (
	"context"
	"sync"
	"sync/atomic"
)

// Held facts. A join or a connection the queue does not take is refused
// (the client gets a retryable error), but a leave or a disconnection
// cannot be: the client is gone whatever the broker says. Such a fact is
// held in this node's memory and written later, by the next report to its
// partition (which writes the held ones first, so that this node's facts
// of a partition keep their order) or by the retry loop, with backoff.
// The engine follows a refused join or connection with the leave or
// disconnection that undoes it, in case the write happened but its answer
// was lost; when it did not, the undo changes nothing (a leave of a client
// not in the channel, a disconnection of one not connected).
//
// Held facts live as long as the node: if it stops or dies before the
// broker is back, they are lost, but the node no longer marks itself alive
// and another node removes its clients (reason node_gone), which sends the
// same events.

// maxHeld bounds the facts a node holds, about 200 bytes each: past it, a
// fact is dropped (logged and counted), and its events come only if its
// node is later found gone.
const maxHeld = 100_000

// heldPart is what a node holds for one partition.
type heldPart struct {
	// mu is held across the writes of a flush, so that two flushes do not
	// write the same facts or reorder them.
	mu    sync.Mutex
	facts []heldFact   // oldest first; guarded by mu
	n     atomic.Int32 // len(facts), read without mu on the common path
}

type heldFact struct {
	kind string
	data []byte
}

// flushHeld writes the facts held for partition p, oldest first; it stops
// at the first failure, which it returns.
func (d *Dispatcher) flushHeld(ctx context.Context, p int) error {
	h := &d.held[p]
	if h.n.Load() == 0 {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	wrote := false
	defer func() {
		if wrote {
			d.wake(p)
		}
	}()
	for len(h.facts) > 0 {
		f := h.facts[0]
		if err := d.q.Append(ctx, p, f.data); err != nil {
			return err
		}
		wrote = true
		h.facts[0] = heldFact{}
		h.facts = h.facts[1:]
		h.n.Add(-1)
		d.m.WebhookEmitted.WithLabelValues(f.kind).Inc()
		d.m.WebhookHeld.Set(float64(d.heldTotal.Add(-1)))
	}
	h.facts = nil
	return nil
}

// hold keeps a fact whose write failed, to be written later.
func (d *Dispatcher) hold(p int, f fact, data []byte) {
	if d.heldTotal.Load() >= maxHeld {
		d.m.WebhookLost.Inc()
		d.log.Error("webhook: too many reports waiting for the broker; one is dropped",
			"kind", f.Kind, "channel", f.Channel, "client", f.Client)
		return
	}
	h := &d.held[p]
	h.mu.Lock()
	h.facts = append(h.facts, heldFact{kind: f.Kind, data: data})
	h.n.Add(1)
	h.mu.Unlock()
	n := d.heldTotal.Add(1)
	d.m.WebhookHeld.Set(float64(n))
	if n == 1 { // once per outage, not once per report
		d.log.Warn("webhook: the broker refused a leave or disconnection; holding such reports until it takes them",
			"kind", f.Kind, "channel", f.Channel, "client", f.Client)
	}
	select {
	case d.heldWake <- struct{}{}:
	default:
	}
}

// retryLoop writes held facts until Stop, pausing with backoff while the
// queue refuses them.
func (d *Dispatcher) retryLoop() {
	defer d.wg.Done()
	attempt := 0
	for {
		wait, wake := d.opts.PollInterval, (<-chan struct{})(nil)
		switch {
		case d.heldTotal.Load() == 0:
			// Nothing held: wait for the next hold.
			attempt, wait, wake = 0, d.opts.LeaseTTL, d.heldWake
		case d.retryHeld():
			attempt = 0
		default:
			wait = d.backoff(attempt)
			attempt++
		}
		if !d.pause(d.life, wait, wake) {
			return
		}
	}
}

// retryHeld tries to write the held facts of every partition; it reports
// whether all were written.
func (d *Dispatcher) retryHeld() bool {
	ctx, cancel := context.WithTimeout(d.life, d.opts.Timeout)
	defer cancel()
	ok := true
	for p := range d.held {
		if err := d.flushHeld(ctx, p); err != nil {
			if d.life.Err() == nil {
				d.log.Warn("webhook: held reports still not written", "partition", p, "err", err)
			}
			ok = false
		}
	}
	return ok
}
