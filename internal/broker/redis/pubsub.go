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

// subscription is the node's subscription to one channel. Its delivery
// state is in gap.go.
type subscription struct {
	channel string // the engine's channel name
	slot    uint16 // the hash slot of its keys (in a cluster)

	// home is the shard whose connection carries the subscription, in a
	// cluster. Guarded by Broker.mu.
	home *shard

	// mu guards the delivery state below and is held while delivering to
	// the handler, so that the channel's deliveries never overlap: the
	// Pub/Sub reader, the loop that resubscribes and the channel's gap
	// filler take it in turn, each briefly.
	mu sync.Mutex
	// ready is set once the position at subscription time is known; until
	// then deliveries establish it.
	ready bool
	// epoch and offset are the position delivered up to: the channel's
	// position when the node subscribed, then that of the newest
	// publication delivered (or reported lost).
	epoch  string
	offset uint64
	// filling is set while a gap is open: a filler goroutine reads the
	// publications after offset up to gapTo (in epoch) from history,
	// and what arrives meanwhile waits in buf (bufBytes of data).
	filling  bool
	gapTo    uint64
	buf      []item
	bufBytes int
	// gone is set when the node left the channel: nothing more is
	// delivered for this subscription.
	gone bool
}

var stripeSeed = maphash.MakeSeed()

// lockStripe takes the stripe of channel, or fails with ctx; the function
// returned releases it.
func (b *Broker) lockStripe(ctx context.Context, channel string) (func(), error) {
	stripe := b.stripes[maphash.String(stripeSeed, channel)%uint64(len(b.stripes))]
	select {
	case stripe <- struct{}{}:
		return func() { <-stripe }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Subscribe implements broker.Broker. It returns once Redis has confirmed
// the subscription; it fails with broker.ErrUnavailable while the Pub/Sub
// connection is down.
func (b *Broker) Subscribe(ctx context.Context, channel string) error {
	if err := ctx.Err(); err != nil { // even when subscribed already
		return fmt.Errorf("redis broker: subscribe to %s: %w", channel, err)
	}
	unlock, err := b.lockStripe(ctx, channel)
	if err != nil {
		return fmt.Errorf("redis broker: subscribe to %s: %w", channel, err)
	}
	defer unlock()
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
		s.leave()
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
	unlock, err := b.lockStripe(ctx, channel)
	if err != nil {
		return fmt.Errorf("redis broker: unsubscribe from %s: %w", channel, err)
	}
	defer unlock()
	name := b.pubName(channel)
	if b.cluster {
		return b.unsubscribeCluster(ctx, channel, name)
	}
	b.mu.Lock()
	s := b.subs[name]
	delete(b.subs, name)
	conn := b.conn
	b.mu.Unlock()
	if s != nil {
		s.leave()
	}
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

// onMessage receives the messages of the Pub/Sub connection, one at a time
// and in the order Redis sent them. It runs on the connection's reader, so
// it never waits for Redis: a message behind a gap waits in its channel's
// buffer while the channel's filler reads history (see gap.go).
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
		b.offer(s, item{kind: kindEvent, data: []byte(m.Message[1:])})
	case kindPublication:
		pub, epoch, err := decodePublication(m.Message)
		if err != nil {
			b.log.Error("undecodable publication", "channel", s.channel, "err", err)
			return
		}
		b.offer(s, item{kind: kindPublication, epoch: epoch, pub: pub})
	}
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
