package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// OutboxState is where a publication is on its way to the server.
type OutboxState int

// The states of a publication in the outbox: queued (waiting for a
// connection), sent (on a connection, not acknowledged yet; back to queued
// if that connection drops), then acked or failed, when it leaves the
// outbox.
const (
	OutboxQueued OutboxState = iota
	OutboxSent
	OutboxAcked
	OutboxFailed
)

// String returns "queued", "sent", "acked" or "failed".
func (s OutboxState) String() string {
	switch s {
	case OutboxQueued:
		return "queued"
	case OutboxSent:
		return "sent"
	case OutboxAcked:
		return "acked"
	case OutboxFailed:
		return "failed"
	}
	return "unknown"
}

// OutboxEntry is a publication in the outbox, as Outbox and
// Options.OnOutbox show it.
type OutboxEntry struct {
	// Key is the idempotency key the publication is sent with, every time.
	Key string
	// Channel and Data are what is published.
	Channel string
	Data    json.RawMessage
	// State is where it is.
	State OutboxState
	// Attempts counts the times it was sent.
	Attempts int
	// Offset is the offset it got, once acked.
	Offset uint64
	// Err is why it failed: the server's *Error, ErrClosed, or the error
	// that stopped the client.
	Err error
}

// entry is a publication in the outbox. Its fields are guarded by the
// Client's mu.
type entry struct {
	OutboxEntry
	cn      *conn         // the connection it was last sent on
	done    chan struct{} // closed when acked or failed
	hold    *time.Timer   // set while it waits to be sent again after a temporary refusal
	refused int           // temporary refusals so far, for the retry's backoff
}

// maxInFlight bounds the publications sent and not yet acknowledged, over
// all channels, so that a large outbox does not run into the server's
// command rate limit all at once.
const maxInFlight = 64

// Publish publishes data (any value encoding/json accepts; a
// json.RawMessage is sent as it is) to channel, and waits until the server
// acknowledged it or ctx ends.
//
// The publication gets a random idempotency key and goes into the outbox:
// sent now if the client is connected, else on the next connection, and
// sent again with the same key on each new connection until it is
// acknowledged (a server that knows the key answers the first offset and
// publishes nothing twice). A channel's publications are sent one at a
// time, in the order of the Publish calls: the next once the previous was
// acknowledged. A refusal that may pass (429 rate limit, 500, 503) is
// retried after a backoff delay; any other fails Publish with the
// server's *Error. When ctx ends before the publication was sent, it is
// withdrawn; once sent, it stays in the outbox until acknowledged (see
// Outbox). Publish fails at once with ErrOutboxFull when
// Options.OutboxSize publications wait already.
func (c *Client) Publish(ctx context.Context, channel string, data any) (PublishResult, error) {
	raw, ok := data.(json.RawMessage)
	if !ok {
		b, err := json.Marshal(data)
		if err != nil {
			return PublishResult{}, fmt.Errorf("client: publish %s: %w", channel, err)
		}
		raw = b
	}
	e := &entry{OutboxEntry: OutboxEntry{Key: newKey(), Channel: channel, Data: raw}, done: make(chan struct{})}
	// The command's size, with room for its id and field names.
	if len(raw)+len(channel)+len(e.Key)+96 > c.opts.MaxMessageSize {
		return PublishResult{}, fmt.Errorf("client: publish %s: %w", channel, ErrTooLarge)
	}
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return PublishResult{}, ErrClosed
	case !c.running && c.stopErr != nil:
		err := c.stopErr
		c.mu.Unlock()
		return PublishResult{}, fmt.Errorf("client: publish %s: %w", channel, err)
	case len(c.outbox) >= c.opts.OutboxSize:
		c.mu.Unlock()
		return PublishResult{}, fmt.Errorf("client: publish %s: %w", channel, ErrOutboxFull)
	}
	c.outbox = append(c.outbox, e)
	c.outboxEventLocked(e)
	c.pumpLocked()
	c.mu.Unlock()
	select {
	case <-e.done:
	case <-ctx.Done():
		c.mu.Lock()
		if e.State == OutboxQueued {
			c.finishLocked(e, OutboxFailed, 0, ctx.Err())
			c.pumpLocked()
		}
		c.mu.Unlock()
		return PublishResult{}, fmt.Errorf("client: publish %s: %w", channel, ctx.Err())
	}
	c.mu.Lock()
	res, err := PublishResult{Offset: e.Offset, Key: e.Key}, e.Err
	c.mu.Unlock()
	if err != nil {
		return PublishResult{}, fmt.Errorf("client: publish %s: %w", channel, err)
	}
	return res, nil
}

// Outbox returns the publications waiting in the outbox, in the order
// they will be sent.
func (c *Client) Outbox() []OutboxEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]OutboxEntry, len(c.outbox))
	for i, e := range c.outbox {
		out[i] = e.OutboxEntry
	}
	return out
}

// pumpLocked sends what may go now: for each channel, the first
// publication not acknowledged yet, once the one before it was, and at
// most maxInFlight in all. One at a time per channel keeps a channel's
// order even when the server refuses one for a while (a rate limit, a
// broker outage) and it is sent again later. c.mu must be held.
func (c *Client) pumpLocked() {
	if c.cn == nil {
		return
	}
	busy := map[string]bool{}
	inFlight := 0
	for _, e := range c.outbox {
		if e.State == OutboxSent {
			busy[e.Channel] = true
			inFlight++
		}
	}
	for _, e := range c.outbox {
		if inFlight >= maxInFlight {
			return
		}
		if busy[e.Channel] {
			continue
		}
		busy[e.Channel] = true // the channel's first: the others wait for it
		if e.State == OutboxQueued && e.hold == nil && c.sendLocked(c.cn, e) {
			inFlight++
		}
	}
}

// sendLocked sends e on cn. c.mu must be held.
func (c *Client) sendLocked(cn *conn, e *entry) bool {
	cmd := &command{ID: c.nextID.Add(1), Command: "publish", Channel: e.Channel, Data: e.Data, IdempotencyKey: e.Key}
	if !cn.send(cmd, func(m *message, err error) { c.published(cn, e, m, err) }) {
		return false // cn ended: e stays queued for the next connection
	}
	e.State, e.cn = OutboxSent, cn
	e.Attempts++
	c.outboxEventLocked(e)
	return true
}

// published handles the answer to e's publish on cn, or cn's end.
func (c *Client) published(cn *conn, e *entry, m *message, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.State != OutboxSent || e.cn != cn {
		return
	}
	switch {
	case err != nil:
		e.State, e.cn = OutboxQueued, nil
		c.outboxEventLocked(e) // the next connection sends it again
		return
	case m.Error != nil && m.Error.Temporary():
		// Refused for now (429, 500, 503): queued again, sent after a
		// backoff delay; the channel's next publications wait for it.
		e.State, e.cn = OutboxQueued, nil
		delay := c.opts.Backoff.Delay(e.refused, c.random)
		e.refused++
		c.log.Debug("client: publish refused for now", "channel", e.Channel, "err", m.Error, "retry_in", delay)
		e.hold = time.AfterFunc(delay, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if e.hold != nil {
				e.hold = nil
				c.pumpLocked()
			}
		})
		c.outboxEventLocked(e)
	case m.Error != nil:
		c.finishLocked(e, OutboxFailed, 0, m.Error)
	default:
		var res struct {
			Offset uint64 `json:"offset"`
		}
		_ = json.Unmarshal(m.Result, &res)
		c.finishLocked(e, OutboxAcked, res.Offset, nil)
	}
	c.pumpLocked()
}

// finishLocked takes e out of the outbox as acked or failed and wakes its
// Publish. c.mu must be held.
func (c *Client) finishLocked(e *entry, st OutboxState, offset uint64, err error) {
	e.State, e.Offset, e.Err = st, offset, err
	if e.hold != nil {
		e.hold.Stop()
		e.hold = nil
	}
	if i := slices.Index(c.outbox, e); i >= 0 {
		c.outbox = slices.Delete(c.outbox, i, i+1)
	}
	c.outboxEventLocked(e)
	close(e.done)
}

// outboxEventLocked tells OnOutbox about e's state. c.mu must be held.
func (c *Client) outboxEventLocked(e *entry) {
	if cb := c.opts.OnOutbox; cb != nil {
		snap := e.OutboxEntry
		c.emit(func() { cb(snap) })
	}
}

// newKey returns a random idempotency key: 128 bits, hex.
func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
