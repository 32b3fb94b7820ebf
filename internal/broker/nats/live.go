package nats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	gonats "github.com/nats-io/nats.go"

	"github.com/switchboardhq/switchboard/internal/broker"
)

// liveChan is a channel this node is subscribed to: it turns the channel's
// announcements, which may arrive out of order or not at all, into
// deliveries in offset order, each once.
type liveChan struct {
	name    string // the channel
	subject string // its core subject, the key in Broker.live
	// settled is closed once the Subscribe that made c has subscribed it or
	// failed (and then removed it from Broker.live), so that other
	// Subscribe calls can wait for it within their context.
	settled chan struct{}

	// qmu guards the queue between the dispatcher and the drainer.
	qmu     sync.Mutex
	queue   []*gonats.Msg // received, not yet handled
	running bool          // a drainer goroutine is running

	// mu guards everything below and is held while calling the handler, so
	// that deliveries of one channel never overlap or reorder. Held by the
	// drainer, the gap timer and the catch-up loop in turn.
	mu      sync.Mutex
	sub     *gonats.Subscription
	closed  bool
	epoch   string                        // "" until known (the channel was empty at Subscribe)
	last    uint64                        // newest offset delivered (or skipped) in epoch
	retired []string                      // epochs replaced by epoch, newest last; their stragglers are dropped
	pending map[uint64]broker.Publication // arrived ahead of a gap, all above last+1
	timer   *time.Timer                   // the gap timer; non-nil while armed
	armed   uint64                        // counts timer starts, to tell a stale firing
}

// maxRetired bounds liveChan.retired.
const maxRetired = 4

// maxQueue bounds liveChan.queue; what comes beyond is dropped and later
// read from history like a lost announcement.
const maxQueue = 8192

// Subscribe implements broker.Broker: it subscribes to the channel's core
// subject, then reads the channel's newest offset, from which deliveries
// continue.
func (b *Broker) Subscribe(ctx context.Context, channel string) error {
	if err := b.usable(channel); err != nil {
		return fmt.Errorf("nats broker: subscribe: %w", err)
	}
	if err := ctx.Err(); err != nil { // even when subscribed already
		return fmt.Errorf("nats broker: subscribe to %q: %w", channel, err)
	}
	subject := b.livePrefix + token(channel)
	for {
		b.subMu.Lock()
		if b.closed.Load() {
			b.subMu.Unlock()
			return fmt.Errorf("nats broker: subscribe: %w", broker.ErrClosed)
		}
		c := b.live[subject]
		if c == nil {
			c = &liveChan{name: channel, subject: subject, settled: make(chan struct{})}
			b.live[subject] = c
			c.mu.Lock() // before anyone else can see c
			b.subMu.Unlock()
			err := b.startLive(ctx, c)
			if err != nil {
				c.closed = true
				b.subMu.Lock()
				if b.live[subject] == c {
					delete(b.live, subject)
				}
				b.subMu.Unlock()
			}
			c.mu.Unlock()
			close(c.settled)
			return err
		}
		b.subMu.Unlock()
		// Already subscribed, or being subscribed by another call: wait for
		// it to settle. (Not on c.mu, which a catch-up from history may
		// hold for long.)
		select {
		case <-c.settled:
		case <-ctx.Done():
			return fmt.Errorf("nats broker: subscribe to %q: %w", channel, ctx.Err())
		}
		b.subMu.RLock()
		ok := b.live[subject] == c
		b.subMu.RUnlock()
		if ok {
			return nil
		}
		// It failed, or was unsubscribed meanwhile: subscribe anew.
	}
}

// startLive subscribes c and reads its starting point. c.mu must be held;
// c's drainer waits for it, so nothing is delivered before the starting
// point is known.
func (b *Broker) startLive(ctx context.Context, c *liveChan) error {
	// While the connection is down the flush below would wait for the
	// server until the request timeout; fail at once instead, so that the
	// client hears "unavailable, retry" promptly. Subscriptions made before
	// are kept and renewed by the client library when it reconnects.
	if err := b.connected("subscribe to " + strconv.Quote(c.name)); err != nil {
		return err
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	// Every subscription feeds the one dispatcher, so a subscribed channel
	// costs no goroutine while it is quiet.
	sub, err := b.nc.ChanSubscribe(c.subject, b.inbox)
	if err != nil {
		return b.fail("subscribe to "+strconv.Quote(c.name), err)
	}
	// The server must have the subscription before the newest offset is
	// read: everything stored after that read is then announced to us.
	if err := b.nc.FlushWithContext(ctx); err != nil {
		_ = sub.Unsubscribe()
		return b.fail("subscribe to "+strconv.Quote(c.name), err)
	}
	r, err := b.currentStream(ctx)
	if err == nil {
		var last stored
		var found bool
		last, found, err = b.newest(ctx, r, b.histPrefix+token(c.name))
		if isStreamGone(err) {
			if _, err = b.findStream(ctx, r); err == nil {
				found = false // a new stream: the channel starts empty
			}
		}
		if found {
			c.epoch, c.last = last.epoch, last.pub.Offset
		}
	}
	if err != nil {
		_ = sub.Unsubscribe()
		return b.fail("subscribe to "+strconv.Quote(c.name), err)
	}
	c.sub = sub
	return nil
}

// Unsubscribe implements broker.Broker. Nothing of the channel is delivered
// after it returns.
func (b *Broker) Unsubscribe(ctx context.Context, channel string) error {
	subject := b.livePrefix + token(channel)
	b.subMu.Lock()
	c := b.live[subject]
	delete(b.live, subject)
	b.subMu.Unlock()
	if c != nil {
		c.close()
	}
	return nil
}

// close stops c's deliveries and its subscription.
func (c *liveChan) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.pending = nil
	if c.sub != nil {
		// Fails only when the connection is closed, which ends the
		// subscription too.
		_ = c.sub.Unsubscribe()
	}
}

// dispatchLoop hands each message of the subscribed core subjects to its
// channel's queue. It never waits for a channel.
func (b *Broker) dispatchLoop() {
	defer b.wg.Done()
	for {
		select {
		case <-b.life.Done():
			return
		case m := <-b.inbox:
			b.subMu.RLock()
			c := b.live[m.Subject]
			b.subMu.RUnlock()
			if c != nil {
				b.enqueue(c, m)
			}
		}
	}
}

// enqueue queues m for c, starting c's drainer if it is not running.
func (b *Broker) enqueue(c *liveChan, m *gonats.Msg) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if len(c.queue) >= maxQueue {
		b.log.Debug("channel queue full, dropped an announcement", "channel", c.name)
		return
	}
	c.queue = append(c.queue, m)
	if !c.running {
		c.running = true
		go b.drainQueue(c)
	}
}

// drainQueue handles c's queued messages in order and ends when the queue
// is empty: a goroutine per channel exists only while it has work.
func (b *Broker) drainQueue(c *liveChan) {
	for {
		c.qmu.Lock()
		batch := c.queue
		c.queue = nil
		if len(batch) == 0 {
			c.running = false
			c.qmu.Unlock()
			return
		}
		c.qmu.Unlock()
		for _, m := range batch {
			b.onLive(c, m)
		}
	}
}

// onLive handles one message of c's core subject.
func (b *Broker) onLive(c *liveChan, m *gonats.Msg) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	h := b.handler.Load()
	if h == nil {
		return
	}
	if m.Header.Get(hdrEvent) != "" {
		h.h.HandleEvent(c.name, m.Data)
		return
	}
	epoch := m.Header.Get(hdrEpoch)
	pub, err := parsePublication(m.Header, m.Data)
	if err != nil || epoch == "" {
		b.log.Debug("dropped a malformed announcement", "channel", c.name, "err", err)
		return
	}
	if epoch != c.epoch {
		if slices.Contains(c.retired, epoch) {
			return // a straggler of an epoch already replaced
		}
		// The chain restarted (the stream lost it, or it expired): deliver
		// the new epoch from its start.
		c.switchEpoch(epoch)
	}
	switch {
	case pub.Offset <= c.last:
		return // delivered already (from history, or a duplicate)
	case pub.Offset == c.last+1:
		b.deliver(h.h, c, pub)
		b.drain(h.h, c)
	default:
		if c.pending == nil {
			c.pending = map[uint64]broker.Publication{}
		}
		c.pending[pub.Offset] = pub
		if len(c.pending) >= maxPending {
			ctx, cancel := context.WithTimeout(b.life, b.opts.RequestTimeout)
			b.catchUp(ctx, h.h, c)
			cancel()
		}
	}
	b.armGapTimer(c)
}

// switchEpoch makes epoch c's current one. c.mu must be held.
func (c *liveChan) switchEpoch(epoch string) {
	if c.epoch != "" {
		c.retired = append(c.retired, c.epoch)
		if len(c.retired) > maxRetired {
			c.retired = c.retired[1:]
		}
	}
	c.epoch, c.last, c.pending = epoch, 0, nil
}

// deliver hands pub to the handler. c.mu must be held.
func (b *Broker) deliver(h broker.Handler, c *liveChan, pub broker.Publication) {
	h.HandlePublication(c.name, pub, c.epoch)
	c.last = pub.Offset
}

// drain delivers the held-back publications that now follow c.last and
// forgets those at or below it. c.mu must be held.
func (b *Broker) drain(h broker.Handler, c *liveChan) {
	for len(c.pending) > 0 {
		pub, ok := c.pending[c.last+1]
		if !ok {
			break
		}
		delete(c.pending, pub.Offset)
		b.deliver(h, c, pub)
	}
	for off := range c.pending {
		if off <= c.last {
			delete(c.pending, off)
		}
	}
}

// armGapTimer starts the gap timer when publications are held back and
// stops it when none are. c.mu must be held.
func (b *Broker) armGapTimer(c *liveChan) {
	switch {
	case len(c.pending) == 0 && c.timer != nil:
		c.timer.Stop()
		c.timer = nil
	case len(c.pending) > 0 && c.timer == nil:
		c.armed++
		gen := c.armed
		c.timer = time.AfterFunc(b.opts.GapTimeout, func() { b.gapExpired(c, gen) })
	}
}

// gapExpired runs when held-back publications waited GapTimeout for the
// missing ones: it reads them from history.
func (b *Broker) gapExpired(c *liveChan, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer == nil || c.armed != gen || c.closed {
		return // stopped or replaced meanwhile
	}
	c.timer = nil
	h := b.handler.Load()
	if h == nil || len(c.pending) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(b.life, b.opts.RequestTimeout)
	defer cancel()
	b.catchUp(ctx, h.h, c)
	if !c.closed {
		b.armGapTimer(c)
	}
}

// catchUp delivers what history holds after c.last, then what was held
// back. What history no longer holds is skipped: the subscriber sees the
// offsets jump. On error, held-back publications wait for the next try
// unless there are too many, which are then delivered past the gap.
// c.mu must be held.
func (b *Broker) catchUp(ctx context.Context, h broker.Handler, c *liveChan) {
	if b.beforeCatchUp != nil {
		b.beforeCatchUp(c.name)
	}
	var since *broker.Position
	if c.epoch != "" {
		since = &broker.Position{Offset: c.last, Epoch: c.epoch}
	}
	res, err := b.History(ctx, c.name, broker.HistoryQuery{Since: since, Limit: -1})
	if errors.Is(err, broker.ErrEpochMismatch) && res.Position.Epoch != "" {
		c.switchEpoch(res.Position.Epoch)
		since = &broker.Position{Epoch: c.epoch}
		res, err = b.History(ctx, c.name, broker.HistoryQuery{Since: since, Limit: -1})
	}
	if err != nil {
		b.log.Debug("catch-up from history failed", "channel", c.name, "err", err)
		if len(c.pending) >= maxPending {
			b.skipGaps(h, c)
		}
		return
	}
	if c.epoch == "" {
		c.epoch = res.Position.Epoch
	}
	for _, pub := range res.Publications {
		if pub.Offset > c.last {
			b.deliver(h, c, pub)
		}
	}
	c.last = max(c.last, res.Position.Offset)
	b.drain(h, c)
}

// skipGaps delivers every held-back publication in offset order, past the
// gaps. c.mu must be held.
func (b *Broker) skipGaps(h broker.Handler, c *liveChan) {
	offs := make([]uint64, 0, len(c.pending))
	for off := range c.pending {
		offs = append(offs, off)
	}
	slices.Sort(offs)
	for _, off := range offs {
		if off > c.last {
			b.deliver(h, c, c.pending[off])
		}
	}
	c.pending = nil
}

// resyncLoop catches every subscribed channel up from history after the
// connection was restored: announcements sent while it was down are lost.
func (b *Broker) resyncLoop() {
	defer b.wg.Done()
	for {
		select {
		case <-b.life.Done():
			return
		case <-b.resync:
		}
		b.subMu.Lock()
		chans := make([]*liveChan, 0, len(b.live))
		for _, c := range b.live {
			chans = append(chans, c)
		}
		b.subMu.Unlock()
		h := b.handler.Load()
		for _, c := range chans {
			if b.life.Err() != nil {
				return
			}
			ctx, cancel := context.WithTimeout(b.life, b.opts.RequestTimeout)
			c.mu.Lock()
			if !c.closed {
				b.catchUp(ctx, h.h, c)
				b.armGapTimer(c)
			}
			c.mu.Unlock()
			cancel()
		}
	}
}
