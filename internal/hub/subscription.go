package hub

import (
	"context"
	"sync"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// subState is where a subscription is in its life.
type subState uint8

const (
	// subPending: the subscribe is reading history; live publications are
	// buffered (bounded) until it completes.
	subPending subState = iota
	// subLive: publications are queued as they come, once each, in order.
	subLive
	// subEnded: unsubscribed, or the session is gone. Nothing is queued and
	// nothing may join presence any more. It is final.
	subEnded
)

// presState is where a subscription is in the channel's presence.
type presState uint8

const (
	presOut  presState = iota // not in presence (yet, or for good once ended)
	presBusy                  // one goroutine is adding the entry (join or refresh)
	presIn                    // in presence
)

// subscription is one session's membership of one channel. Its state has
// one lock, mu, which is never held across a broker call. Presence is a
// broker call, so its transitions are handed over instead: whoever moves
// the presence state to presBusy owns the entry until it moves it on, and a
// leave that comes meanwhile is left for that owner to carry out
// (leaveWanted). So an AddPresence can never come after the RemovePresence
// that should undo it.
type subscription struct {
	sess    *Session
	channel string
	// info is shown in presence (the subscribe hook's JSON), empty for
	// none. A string rather than a json.RawMessage: the 8 bytes saved hold
	// dmode within the struct's size class.
	info string
	// dmode: whether the subscription gets deltas, and whether the client
	// holds the data of publication last (delta.go). Set before the
	// subscription is registered, then guarded by mu.
	dmode deltaMode

	mu    sync.Mutex // guards the fields below, which are packed to keep the struct small
	state subState
	// skipped: while pending, the buffer overflowed and was dropped; epoch
	// and last say where it ended.
	skipped     bool
	pres        presState // where the subscription is in presence
	leaveWanted bool      // an end came while pres was presBusy
	// slot is the subscription's index in its channel's list in the
	// registry (shard.channels), guarded by the shard's lock, not mu. It
	// fills what would be padding.
	slot int32
	// While pending: live publications, in arrival order (nil until the
	// first; most subscribes see none, and an idle subscription should not
	// carry an empty buffer's 32 bytes).
	pend *pendingBuf
	// While live: the channel's epoch the subscriber is in, and the offset
	// of the last publication queued. While pending and skipped: the
	// position of the last publication dropped.
	epoch string
	last  uint64
}

// pendingBuf holds the publications that arrive during a subscribe's
// history read.
type pendingBuf struct {
	msgs  []Message
	bytes int
}

// deliver queues a publication or event for the subscriber, or buffers it
// while the subscribe reads history. Called by the fan-out with the
// channel's shard read-locked.
func (sub *subscription) deliver(m Message, epoch string) {
	sub.mu.Lock()
	switch sub.state {
	case subPending:
		sub.bufferLocked(m, epoch)
	case subLive:
		sub.deliverLiveLocked(m, epoch)
	}
	sub.mu.Unlock()
}

// bufferLocked keeps a publication that arrived during the subscribe's
// history read. The buffer is bounded like the outbound queue: past it,
// what was buffered is dropped and the subscribe reports recovered:false
// from after the last dropped publication, so the client knows what it
// missed instead of the node holding it without limit.
func (sub *subscription) bufferLocked(m Message, epoch string) {
	h := sub.sess.hub
	if m.Offset == 0 { // an event (join, leave): not worth holding
		h.metrics.Drop(metrics.DropPendingEvent, 1)
		return
	}
	p := sub.pend
	var n, bytes int
	if p != nil {
		n, bytes = len(p.msgs), p.bytes
	}
	if sub.skipped || n >= h.cfg.QueueMaxMessages || bytes+len(m.Data) > h.cfg.QueueMaxBytes {
		h.metrics.Drop(metrics.DropPendingOverflow, n+1)
		sub.skipped = true
		sub.epoch, sub.last = epoch, m.Offset
		sub.pend = nil
		return
	}
	if p == nil {
		p = &pendingBuf{}
		sub.pend = p
	}
	m.Epoch = epoch
	p.msgs = append(p.msgs, m)
	p.bytes += len(m.Data)
}

// deliverLiveLocked queues a publication for a live subscription, once and
// in order. A remote broker may deliver a publication after the position
// the subscription started from already covered it (history is written
// before the live copy travels), so anything at or below the last offset
// queued is dropped. A publication of another epoch means the channel's
// history was lost: the subscriber gets a reset push first.
func (sub *subscription) deliverLiveLocked(m Message, epoch string) {
	out := &sub.sess.out
	if m.Offset == 0 { // an event
		out.push(m)
		return
	}
	h := sub.sess.hub
	if epoch != "" && sub.epoch != "" && epoch != sub.epoch {
		h.metrics.Resets.Inc()
		reset := protocol.AppendPushEvent(nil, sub.channel, "reset", mustJSON(struct {
			Offset uint64 `json:"offset"`
			Epoch  string `json:"epoch"`
		}{m.Offset - 1, epoch}))
		out.push(Message{Data: reset, Channel: sub.channel, Epoch: epoch})
		sub.epoch, sub.last = epoch, m.Offset-1
		sub.dmode.forget()
	}
	if m.Offset <= sub.last {
		h.metrics.Drop(metrics.DropDuplicate, 1)
		return
	}
	if gap := m.Offset - sub.last - 1; gap > 0 {
		h.metrics.Drop(metrics.DropBrokerGap, int(gap))
	}
	if sub.dmode != deltaOff {
		m = sub.deltaLocked(sub.last, m)
	}
	sub.last = m.Offset
	out.push(m)
}

// goLive ends a pending subscribe: with res read from history, it lets
// emit queue what the client must see first (the reply, recovered
// publications), then the buffered publications that come after them, and
// makes the subscription live, all under mu so that no live publication
// slips in between. When the buffer overflowed, res is moved to after what
// was dropped, unrecovered. It reports false when the subscription ended
// meanwhile (the session closed): nothing is queued then.
func (sub *subscription) goLive(res *SubscribeResult, emit func(*SubscribeResult)) bool {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.state != subPending {
		return false
	}
	if sub.skipped && sub.last > res.Position.Offset {
		*res = SubscribeResult{Position: broker.Position{Offset: sub.last, Epoch: sub.epoch}}
	}
	emit(res)
	sub.epoch, sub.last = res.Position.Epoch, res.Position.Offset
	sub.dmode.forget()
	if n := len(res.Publications); res.sent && n > 0 && res.Publications[n-1].Offset == sub.last {
		sub.dmode.hold() // the reply carried publication last whole
	}
	if sub.pend != nil {
		for _, m := range sub.pend.msgs {
			sub.deliverLiveLocked(m, m.Epoch)
		}
	}
	sub.pend, sub.skipped = nil, false
	sub.state = subLive
	return true
}

// isLive reports whether the subscribe completed and has not ended.
func (sub *subscription) isLive() bool {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return sub.state == subLive
}

// end makes the subscription final: nothing more is queued for it, and it
// leaves presence. Only the first call does anything.
func (sub *subscription) end() {
	sub.mu.Lock()
	if sub.state == subEnded {
		sub.mu.Unlock()
		return
	}
	sub.state = subEnded
	sub.pend = nil
	leave := false
	switch sub.pres {
	case presIn:
		sub.pres, leave = presOut, true
	case presBusy:
		sub.leaveWanted = true // the owner of the entry removes it
	}
	sub.mu.Unlock()
	if leave {
		sub.sess.hub.left(sub.channel, sub.clientInfo())
	}
}

// join adds the live subscription to the channel's presence (and tells the
// channel, with join_leave) and reports it to the Lifecycle, unless it
// ended first. The presence state orders the Lifecycle's reports too: a
// Left never comes before the Joined it undoes.
func (sub *subscription) join(ctx context.Context) {
	h := sub.sess.hub
	if _, ok := roomOfChannel(sub.channel); ok {
		return // a room's watcher: the participants are the members
	}
	ns, _ := h.cfg.Rules.Lookup(sub.channel)
	if !h.tracked(ns) || !sub.own() {
		return
	}
	info := sub.clientInfo()
	h.joined(ctx, sub.channel, ns, info)
	sub.release(info)
}

// refresh renews the subscription's presence entry, if it has one. It
// cannot bring back an entry that a leave removed.
func (sub *subscription) refresh(ctx context.Context) error {
	h := sub.sess.hub
	if ns, _ := h.cfg.Rules.Lookup(sub.channel); !ns.Presence {
		return nil // tracked for the Lifecycle only
	}
	sub.mu.Lock()
	if sub.pres != presIn || sub.state != subLive {
		sub.mu.Unlock()
		return nil
	}
	sub.pres = presBusy
	sub.mu.Unlock()
	info := sub.clientInfo()
	err := h.presence.AddPresence(ctx, sub.channel, info, h.cfg.PresenceTTL)
	sub.release(info)
	return err
}

// hold takes the presence entry of a live subscription that has one, for
// a call that reports it again; release ends it.
func (sub *subscription) hold() bool {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.state != subLive || sub.pres != presIn {
		return false
	}
	sub.pres = presBusy
	return true
}

// own takes the presence entry for a join: it reports false when the
// subscription is not live (ended, or never completed) or already in
// presence.
func (sub *subscription) own() bool {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.state != subLive || sub.pres != presOut {
		return false
	}
	sub.pres = presBusy
	return true
}

// release ends a presence call owned with presBusy: the entry is in
// presence, unless an end came meanwhile, in which case the owner removes
// it now.
func (sub *subscription) release(info broker.ClientInfo) {
	sub.mu.Lock()
	leave := sub.leaveWanted
	sub.leaveWanted = false
	if leave {
		sub.pres = presOut
	} else {
		sub.pres = presIn
	}
	sub.mu.Unlock()
	if leave {
		sub.sess.hub.left(sub.channel, info)
	}
}

// clientInfo describes the subscriber in the channel's presence.
func (sub *subscription) clientInfo() broker.ClientInfo {
	ci := sub.sess.clientInfo()
	if sub.info != "" {
		ci.Info = broker.RawJSON(sub.info)
	}
	return ci
}
