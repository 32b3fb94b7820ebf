package redis

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboardhq/switchboard/internal/broker"
)

// The first byte of a Pub/Sub message says what it carries.
const (
	// kindPublication: "p" offset ":" epoch ":" time (ms) ":" data.
	kindPublication = 'p'
	// kindEvent: "e" data.
	kindEvent = 'e'
)

// subscription is the node's subscription to one channel.
type subscription struct {
	channel string // the engine's channel name
	slot    uint16 // the hash slot of its keys (in a cluster)

	// home is the shard whose connection carries the subscription, in a
	// cluster. Guarded by Broker.mu.
	home *shard

	// mu is held while delivering to the handler: it orders the channel's
	// deliveries between the Pub/Sub reader and the reconnecting loop.
	mu sync.Mutex
	// ready is set once the position at subscription time is known; until
	// then deliveries establish it. Guarded by mu.
	ready bool
	// epoch and offset are the position delivered up to: the channel's
	// position when the node subscribed, then that of the newest
	// publication delivered. Guarded by mu.
	epoch  string
	offset uint64
}

var stripeSeed = maphash.MakeSeed()

func (b *Broker) stripe(channel string) *sync.Mutex {
	return &b.stripes[maphash.String(stripeSeed, channel)%uint64(len(b.stripes))]
}

// Subscribe implements broker.Broker. It returns once Redis has confirmed
// the subscription; it fails with broker.ErrUnavailable while the Pub/Sub
// connection is down.
func (b *Broker) Subscribe(ctx context.Context, channel string) error {
	stripe := b.stripe(channel)
	stripe.Lock()
	defer stripe.Unlock()
	if b.closed.Load() {
		return fmt.Errorf("redis broker: subscribe to %s: %w", channel, broker.ErrClosed)
	}
	name := b.pubName(channel)
	if b.cluster {
		return b.subscribeCluster(ctx, channel, name)
	}
	b.mu.Lock()
	if _, ok := b.subs[name]; ok {
		b.mu.Unlock()
		return nil
	}
	conn := b.conn
	if conn == nil {
		b.mu.Unlock()
		return fmt.Errorf("redis broker: subscribe to %s: %w: no Pub/Sub connection", channel, broker.ErrUnavailable)
	}
	s := &subscription{channel: channel}
	b.subs[name] = s
	b.mu.Unlock()

	if err := b.subscribeOn(ctx, conn, []*subscription{s}); err != nil {
		b.mu.Lock()
		if b.subs[name] == s {
			delete(b.subs, name)
		}
		b.mu.Unlock()
		// The SUBSCRIBE may have gone through; leave the channel again so
		// that nothing is sent for it. Deliveries stop either way.
		uctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = conn.Do(uctx, conn.B().Unsubscribe().Channel(name).Build()).Error()
		cancel()
		return b.wrap("subscribe to "+channel, err)
	}
	return nil
}

// Unsubscribe implements broker.Broker.
func (b *Broker) Unsubscribe(ctx context.Context, channel string) error {
	stripe := b.stripe(channel)
	stripe.Lock()
	defer stripe.Unlock()
	name := b.pubName(channel)
	if b.cluster {
		return b.unsubscribeCluster(ctx, channel, name)
	}
	b.mu.Lock()
	s := b.subs[name]
	delete(b.subs, name)
	conn := b.conn
	b.mu.Unlock()
	if s == nil || conn == nil {
		return nil // a new connection subscribes only to what is in b.subs
	}
	if err := conn.Do(ctx, conn.B().Unsubscribe().Channel(name).Build()).Error(); err != nil {
		return b.wrap("unsubscribe from "+channel, err)
	}
	return nil
}

// subscribeOn subscribes conn to the channels of subs, then reads their
// positions on the same connection and catches each up to its position.
//
// Redis answers on a connection in order, so every publication published
// after the SUBSCRIBE and before the position was read has reached
// onMessage before the position arrives: a subscription that is not ready
// takes the position as its start unless a publication came first, and a
// ready one (after a reconnection) delivers what it missed from history.
func (b *Broker) subscribeOn(ctx context.Context, conn rueidis.DedicatedClient, subs []*subscription) error {
	const batch = 256
	for len(subs) > 0 {
		n := min(len(subs), batch)
		if err := b.subscribeBatch(ctx, conn, subs[:n]); err != nil {
			return err
		}
		subs = subs[n:]
	}
	return nil
}

// subscribeBatch is one step of subscribeOn, bounded by opTimeout.
func (b *Broker) subscribeBatch(ctx context.Context, conn rueidis.DedicatedClient, subs []*subscription) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	names := make([]string, len(subs))
	reads := make(rueidis.Commands, len(subs))
	for i, s := range subs {
		names[i] = b.pubName(s.channel)
		reads[i] = conn.B().Hmget().Key(b.metaKey(s.channel)).Field("offset", "epoch").Build()
	}
	if err := conn.Do(ctx, conn.B().Subscribe().Channel(names...).Build()).Error(); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	for i, res := range conn.DoMulti(ctx, reads...) {
		epoch, offset, err := parsePosition(res)
		if err != nil {
			return err
		}
		b.catchUp(subs[i], epoch, offset)
	}
	return nil
}

// parsePosition decodes the reply to HMGET meta offset epoch: both are
// nil when the channel has no state.
func parsePosition(res rueidis.RedisResult) (epoch string, offset uint64, err error) {
	vals, err := res.ToArray()
	if err != nil {
		return "", 0, fmt.Errorf("read position: %w", err)
	}
	if len(vals) != 2 {
		return "", 0, fmt.Errorf("read position: %d values", len(vals))
	}
	off, _ := vals[0].AsInt64()
	epoch, _ = vals[1].ToString()
	return epoch, uint64(max(off, 0)), nil
}

// catchUp brings s to the position (epoch, offset): it sets the starting
// position of a subscription that has none, and otherwise delivers from
// history what the node has not delivered up to offset.
func (b *Broker) catchUp(s *subscription, epoch string, offset uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ready {
		s.ready = true
		if s.epoch == "" {
			s.epoch, s.offset = epoch, offset
		}
		return
	}
	if epoch == "" {
		return // the channel has no state (it expired or was lost); the next publication says so
	}
	b.fillLocked(s, epoch, offset)
}

// fillLocked delivers the publications of epoch after s's position up to
// offset from history. A new epoch starts from its first publication. What
// history no longer holds is skipped, which the handler sees as a jump in
// offsets. s.mu must be held.
func (b *Broker) fillLocked(s *subscription, epoch string, offset uint64) {
	if epoch != s.epoch {
		s.epoch, s.offset = epoch, 0
	}
	if offset <= s.offset {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	q := broker.HistoryQuery{
		Since: &broker.Position{Offset: s.offset, Epoch: epoch},
		Limit: int(min(offset-s.offset, 1<<20)),
	}
	r, err := b.History(ctx, s.channel, q)
	for try := 1; try < 3 && errors.Is(err, broker.ErrUnavailable) && !b.closed.Load(); try++ {
		// The client has retried already; give a Redis that is coming
		// back one more chance before leaving a gap.
		time.Sleep(time.Duration(try) * 200 * time.Millisecond)
		r, err = b.History(ctx, s.channel, q)
	}
	if err != nil {
		if !b.closed.Load() {
			b.log.Warn("cannot fill a gap from history", "channel", s.channel, "after", s.offset, "upto", offset, "err", err)
		}
		return
	}
	for _, p := range r.Publications {
		if p.Offset > offset {
			break
		}
		b.handler.HandlePublication(s.channel, p, epoch)
		s.offset = p.Offset
	}
	if s.offset < offset {
		b.log.Warn("publications missed and no longer in history", "channel", s.channel, "from", s.offset+1, "to", offset)
	}
}

// onMessage receives the messages of the Pub/Sub connection, one at a time
// and in the order Redis sent them.
func (b *Broker) onMessage(m rueidis.PubSubMessage) {
	if m.Channel == b.controlName() {
		if ch, ok := b.handler.(broker.ControlHandler); ok {
			ch.HandleControl([]byte(m.Message))
		}
		return
	}
	b.mu.RLock()
	s := b.subs[m.Channel]
	b.mu.RUnlock()
	if s == nil || m.Message == "" {
		return // left already
	}
	switch m.Message[0] {
	case kindEvent:
		s.mu.Lock()
		b.handler.HandleEvent(s.channel, []byte(m.Message[1:]))
		s.mu.Unlock()
	case kindPublication:
		pub, epoch, err := decodePublication(m.Message)
		if err != nil {
			b.log.Error("undecodable publication", "channel", s.channel, "err", err)
			return
		}
		s.mu.Lock()
		b.deliverLocked(s, pub, epoch)
		s.mu.Unlock()
	}
}

// deliverLocked hands pub to the handler unless it was delivered already,
// first filling any gap before it from history. s.mu must be held.
func (b *Broker) deliverLocked(s *subscription, pub broker.Publication, epoch string) {
	if s.ready {
		if epoch == s.epoch && pub.Offset <= s.offset {
			return // delivered by a catch-up
		}
		if epoch != s.epoch || pub.Offset > s.offset+1 {
			b.fillLocked(s, epoch, pub.Offset-1)
		}
	}
	b.handler.HandlePublication(s.channel, pub, epoch)
	s.epoch, s.offset = epoch, pub.Offset
}

// decodePublication parses a publication message.
func decodePublication(msg string) (broker.Publication, string, error) {
	var pub broker.Publication
	parts := strings.SplitN(msg[1:], ":", 4)
	if len(parts) != 4 {
		return pub, "", errors.New("malformed publication message")
	}
	offset, err1 := strconv.ParseUint(parts[0], 10, 64)
	at, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return pub, "", fmt.Errorf("malformed publication message: %w", err)
	}
	pub.Offset, pub.Time, pub.Data = offset, time.UnixMilli(at), []byte(parts[3])
	return pub, parts[1], nil
}

// pubsubLoop keeps the Pub/Sub connection: it opens it, subscribes it to
// every channel in b.subs, catches them up, waits until it breaks and
// starts over with backoff, until ctx is cancelled. The outcome of the
// first attempt is sent on first.
func (b *Broker) pubsubLoop(ctx context.Context, first chan<- error) {
	defer close(b.loopDone)
	backoff := minBackoff
	lost := false
	for {
		conn, release := b.client.Dedicate()
		wait := conn.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: b.onMessage})
		err := b.resubscribe(ctx, conn)
		if err == nil {
			if first != nil {
				first <- nil
				first = nil
			}
			if lost {
				b.log.Info("Pub/Sub connection restored", "cluster", b.cluster)
				lost = false
			}
			backoff = minBackoff
			select {
			case err = <-wait:
			case <-ctx.Done():
			}
		}
		b.mu.Lock()
		b.conn = nil
		b.mu.Unlock()
		release()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("connection closed")
		}
		err = b.wrap("Pub/Sub connection", err)
		if first != nil {
			first <- err
			first = nil
		}
		if !lost {
			// In a cluster this connection carries the control channel only.
			b.log.Warn("Pub/Sub connection lost; reconnecting", "cluster", b.cluster, "err", err)
			lost = true
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// resubscribe makes conn the live Pub/Sub connection and subscribes it to
// every channel the node is subscribed to, catching each up. In a cluster
// the channels are on the shard connections, and conn carries only the
// control channel.
func (b *Broker) resubscribe(ctx context.Context, conn rueidis.DedicatedClient) error {
	pctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := conn.Do(pctx, conn.B().Ping().Build()).Error(); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	if err := b.subscribeControl(pctx, conn); err != nil {
		return err
	}
	b.mu.Lock()
	b.conn = conn
	if b.cluster {
		b.mu.Unlock()
		return nil
	}
	subs := make([]*subscription, 0, len(b.subs))
	for _, s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	// A Subscribe from now on goes to conn itself. One that took the old
	// connection fails, or succeeded there and is in subs: subscribing
	// twice is harmless.
	return b.subscribeOn(ctx, conn, subs)
}
