package client

import (
	"context"
	"encoding/json"

	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// SubscribeOptions configure a Subscription.
type SubscribeOptions struct {
	// OnPublication receives every publication of the channel once, in
	// offset order, across reconnects.
	OnPublication func(Publication)
	// OnGap is called when publications were lost for this subscriber
	// (see Gap): history could not cover a disconnection, the channel's
	// history was lost, or offsets jumped. Nil: the gap is only logged,
	// which an application that keeps state should not accept.
	OnGap func(Gap)
	// OnError is called when the server refuses to subscribe again after a
	// reconnect for a reason a retry cannot fix (a permission or a channel
	// limit); the subscription has then ended.
	OnError func(error)
	// Since starts the subscription from a position the application kept
	// (the last publication it processed): publications after it are
	// delivered first, or OnGap says they cannot be. Nil: from now.
	Since *Position
	// Token is the subscription token for channels of a "token"
	// namespace.
	Token string
}

// Subscription is a Client's subscription to one channel. It lives until
// Unsubscribe or the Client's Close, across reconnects.
type Subscription struct {
	c       *Client
	channel string
	opts    SubscribeOptions
	ended   atomic.Bool

	ready     chan struct{} // closed at the first confirmation, or failure
	readyErr  error         // set before ready is closed, on failure
	readyOnce sync.Once

	mu         sync.Mutex // guards the fields below
	pos        Position   // of the last publication delivered
	hasPos     bool
	cn         *conn // the connection the last subscribe went on
	live       bool  // cn confirmed the subscribe: pushes are delivered
	subscribed bool  // confirmed at least once
	refused    int   // temporary refusals of subscribes again, for the backoff
}

// Channel returns the subscription's channel.
func (s *Subscription) Channel() string { return s.channel }

// Position returns the position of the last publication delivered (or
// where the subscription started): what it resumes from.
func (s *Subscription) Position() Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pos
}

// Subscribe subscribes to channel and waits until the server confirmed it,
// waiting for a connection if there is none (within ctx). From then on the
// subscription is kept across reconnects. It fails with the server's
// *Error (permission, invalid channel, limit), ErrAlreadySubscribed, or
// ctx's error (the subscription is then withdrawn).
func (c *Client) Subscribe(ctx context.Context, channel string, opts SubscribeOptions) (*Subscription, error) {
	s := &Subscription{c: c, channel: channel, opts: opts, ready: make(chan struct{})}
	if opts.Since != nil {
		s.pos, s.hasPos = *opts.Since, true
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if _, ok := c.subs[channel]; ok {
		c.mu.Unlock()
		return nil, fmt.Errorf("client: subscribe %s: %w", channel, ErrAlreadySubscribed)
	}
	c.subs[channel] = s
	if c.cn != nil {
		c.subscribeLocked(c.cn, s)
	}
	stopped := c.stopped
	c.mu.Unlock()
	select {
	case <-s.ready:
		if s.readyErr != nil {
			return nil, fmt.Errorf("client: subscribe %s: %w", channel, s.readyErr)
		}
		return s, nil
	case <-stopped:
		s.withdraw()
		return nil, fmt.Errorf("client: subscribe %s: %w", channel, c.stopError())
	case <-ctx.Done():
		s.withdraw()
		return nil, fmt.Errorf("client: subscribe %s: %w", channel, ctx.Err())
	}
}

// Unsubscribe ends the subscription: no callback of it runs after
// Unsubscribe returns (one already running may finish). It tells the
// server when connected, waiting for its answer within ctx.
func (s *Subscription) Unsubscribe(ctx context.Context) error {
	c := s.c
	c.mu.Lock()
	if c.subs[s.channel] != s {
		c.mu.Unlock()
		return nil
	}
	delete(c.subs, s.channel)
	s.end(ErrUnsubscribed)
	s.mu.Lock()
	cn := s.cn
	s.mu.Unlock()
	c.mu.Unlock()
	if cn == nil {
		return nil
	}
	ch := make(chan *message, 1)
	id := c.nextID.Add(1)
	if !cn.send(&command{ID: id, Command: "unsubscribe", Channel: s.channel}, func(m *message, err error) { ch <- m }) {
		return nil
	}
	select {
	case m := <-ch:
		if m != nil && m.Error != nil && m.Error.Code != 410 {
			return fmt.Errorf("client: unsubscribe %s: %w", s.channel, m.Error)
		}
		return nil
	case <-ctx.Done():
		cn.forget(id)
		return fmt.Errorf("client: unsubscribe %s: %w", s.channel, ctx.Err())
	}
}

// withdraw ends a subscription whose Subscribe gave up, telling the server
// without waiting for its answer.
func (s *Subscription) withdraw() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Unsubscribe sends, then returns at once
	_ = s.Unsubscribe(ctx)
}

// end marks the subscription ended and wakes a Subscribe still waiting.
func (s *Subscription) end(err error) {
	s.ended.Store(true)
	s.readyOnce.Do(func() {
		s.readyErr = err
		close(s.ready)
	})
}

func (s *Subscription) wasSubscribed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.subscribed
}

// detach forgets cn, which ended: the next connection subscribes again.
func (s *Subscription) detach(cn *conn) {
	s.mu.Lock()
	if s.cn == cn {
		s.cn, s.live = nil, false
	}
	s.mu.Unlock()
}

// subscribeLocked sends the subscribe command of s on cn, from the
// position s holds. c.mu must be held.
func (c *Client) subscribeLocked(cn *conn, s *Subscription) {
	s.mu.Lock()
	s.cn, s.live = cn, false
	var since *Position
	if s.hasPos {
		p := s.pos
		since = &p
	}
	s.mu.Unlock()
	cmd := &command{ID: c.nextID.Add(1), Command: "subscribe", Channel: s.channel, Since: since, Token: s.opts.Token}
	cn.send(cmd, func(m *message, err error) {
		if err != nil {
			return // the connection ended: the next one subscribes again
		}
		c.subscribed(cn, s, since, m)
	})
}

// subscribeResult is the result of a subscribe command.
type subscribeResult struct {
	Offset       uint64 `json:"offset"`
	Epoch        string `json:"epoch"`
	Recovered    *bool  `json:"recovered"`
	Publications []struct {
		Data   json.RawMessage `json:"data"`
		Offset uint64          `json:"offset"`
	} `json:"publications"`
}

// subscribed handles the answer to a subscribe sent on cn with since, on
// cn's reader goroutine, before any push that follows it.
func (c *Client) subscribed(cn *conn, s *Subscription, since *Position, m *message) {
	if m.Error != nil {
		c.subscribeFailed(cn, s, m.Error)
		return
	}
	var res subscribeResult
	if err := json.Unmarshal(m.Result, &res); err != nil {
		c.log.Warn("client: bad subscribe reply", "channel", s.channel, "err", err)
		cn.close(1000, "bad subscribe reply")
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended.Load() || s.cn != cn {
		return
	}
	now := Position{res.Offset, res.Epoch}
	switch {
	case since == nil:
		s.pos = now
	case res.Recovered != nil && *res.Recovered && res.Epoch == s.pos.Epoch:
		for _, p := range res.Publications {
			s.deliverLocked(p.Offset, p.Data)
		}
		if s.pos.Offset < now.Offset {
			s.gapLocked(GapSkipped, now)
		}
	default:
		s.gapLocked(GapNotRecovered, now)
	}
	s.hasPos = true
	s.live = true
	s.refused = 0
	if !s.subscribed {
		s.subscribed = true
		s.readyOnce.Do(func() { close(s.ready) })
	}
}

// subscribeFailed handles a refused subscribe. A first subscribe fails
// its caller. A subscribe again after a reconnect that may work later
// (429 rate limit, 500, 503) is sent again on the same connection after a
// backoff delay; one that cannot ends the subscription and tells OnError.
func (c *Client) subscribeFailed(cn *conn, s *Subscription, e *Error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.ended.Load() || c.subs[s.channel] != s {
		return
	}
	if s.wasSubscribed() && e.Temporary() {
		s.mu.Lock()
		delay := c.opts.Backoff.Delay(s.refused, c.random)
		s.refused++
		s.mu.Unlock()
		c.log.Warn("client: subscribe again refused for now", "channel", s.channel, "err", e, "retry_in", delay)
		time.AfterFunc(delay, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.cn == cn && c.subs[s.channel] == s {
				c.subscribeLocked(cn, s)
			}
		})
		return
	}
	delete(c.subs, s.channel)
	first := !s.wasSubscribed()
	s.end(e)
	if !first && s.opts.OnError != nil {
		err := fmt.Errorf("client: subscribe %s again: %w", s.channel, e)
		c.emit(func() { s.opts.OnError(err) })
	}
}

// handlePush delivers a push of cn to its subscription.
func (c *Client) handlePush(cn *conn, m *message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case m.Subscribed != nil:
		c.serverSubscribedLocked(cn, m.Channel, m.Subscribed)
		return
	case m.Unsubscribed != nil:
		c.serverUnsubscribedLocked(cn, m.Channel, m.Unsubscribed)
		return
	}
	s := c.subs[m.Channel]
	if s == nil {
		return // one just ended, or a token's channel (not tracked)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cn != cn || !s.live {
		return
	}
	switch {
	case m.Reset != nil:
		s.gapLocked(GapReset, *m.Reset)
	case m.Offset != nil:
		s.deliverLocked(*m.Offset, m.Data)
	}
}

// deliverLocked delivers the publication at off unless it was delivered
// already, telling OnGap first when offsets jumped. s.mu and c.mu must be
// held.
func (s *Subscription) deliverLocked(off uint64, data json.RawMessage) {
	if off <= s.pos.Offset {
		return // delivered already
	}
	if off > s.pos.Offset+1 {
		s.gapLocked(GapSkipped, Position{off - 1, s.pos.Epoch})
	}
	s.pos.Offset = off
	if cb := s.opts.OnPublication; cb != nil {
		p := Publication{Channel: s.channel, Data: data, Offset: off, Epoch: s.pos.Epoch}
		s.c.emit(func() {
			if !s.ended.Load() {
				cb(p)
			}
		})
	}
}

// gapLocked moves the position to to and tells OnGap. s.mu and c.mu must
// be held.
func (s *Subscription) gapLocked(reason GapReason, to Position) {
	g := Gap{Channel: s.channel, Reason: reason, From: s.pos, To: to}
	s.pos = to
	s.c.log.Warn("client: gap", "channel", s.channel, "reason", reason, "from", g.From.Offset, "to", to.Offset)
	if cb := s.opts.OnGap; cb != nil {
		s.c.emit(func() {
			if !s.ended.Load() {
				cb(g)
			}
		})
	}
}

// serverSubscribedLocked makes the Subscription of a subscribed push: live
// on cn from the push's position, with Options.ServerSubscriptions'
// callbacks. A channel the client holds already is left as it is. c.mu
// must be held.
func (c *Client) serverSubscribedLocked(cn *conn, channel string, p *subscribedPush) {
	if c.closed || c.subs[channel] != nil {
		return
	}
	opts := c.opts.ServerSubscriptions
	opts.Since, opts.Token = nil, ""
	s := &Subscription{c: c, channel: channel, opts: opts, ready: make(chan struct{}), cn: cn, live: true, subscribed: true, hasPos: true}
	s.readyOnce.Do(func() { close(s.ready) })
	c.subs[channel] = s
	if cb := c.opts.OnServerSubscribe; cb != nil {
		data := p.Data
		c.emit(func() { cb(s, data) })
	}
	now := Position{p.Offset, p.Epoch}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case p.Recovered != nil && *p.Recovered && len(p.Publications) > 0:
		s.pos = Position{p.Publications[0].Offset - 1, p.Epoch}
		for _, pub := range p.Publications {
			s.deliverLocked(pub.Offset, pub.Data)
		}
	case p.Recovered != nil && !*p.Recovered:
		s.gapLocked(GapNotRecovered, now)
	default:
		s.pos = now
	}
}

// serverUnsubscribedLocked ends the subscription of an unsubscribed push.
// c.mu must be held.
func (c *Client) serverUnsubscribedLocked(cn *conn, channel string, p *unsubscribedPush) {
	s := c.subs[channel]
	if s == nil {
		return
	}
	s.mu.Lock()
	mine := s.cn == cn
	s.mu.Unlock()
	if !mine {
		return // a subscribe sent since: the server has it again
	}
	delete(c.subs, channel)
	s.end(ErrUnsubscribed)
	if cb := c.opts.OnServerUnsubscribe; cb != nil {
		c.emit(func() { cb(s, p.Code, p.Reason) })
	}
}
