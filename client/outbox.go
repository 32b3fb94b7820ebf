package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
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
	cn   *conn         // the connection it was last sent on
	done chan struct{} // closed when acked or failed
}

// Publish publishes data (any value encoding/json accepts; a
// json.RawMessage is sent as it is) to channel, and waits until the server
// acknowledged it or ctx ends.
//
// The publication gets a random idempotency key and goes into the outbox:
// sent now if the client is connected, else on the next connection, and
// sent again with the same key on each new connection until it is
// acknowledged (a server that knows the key answers the first offset and
// publishes nothing twice). Publications to one channel are sent in the
// order of the Publish calls. When ctx ends before the publication was
// sent, it is withdrawn; once sent, it stays in the outbox until
// acknowledged (see Outbox). Publish fails at once with ErrOutboxFull when
// Options.OutboxSize publications wait already, and with the server's
// *Error when it refuses the publication.
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
	if c.cn != nil {
		c.sendLocked(c.cn, e)
	}
	c.mu.Unlock()
	select {
	case <-e.done:
	case <-ctx.Done():
		c.mu.Lock()
		if e.State == OutboxQueued {
			c.finishLocked(e, OutboxFailed, 0, ctx.Err())
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

// sendLocked sends e on cn. c.mu must be held.
func (c *Client) sendLocked(cn *conn, e *entry) {
	cmd := &command{ID: c.nextID.Add(1), Command: "publish", Channel: e.Channel, Data: e.Data, IdempotencyKey: e.Key}
	if !cn.send(cmd, func(m *message, err error) { c.published(cn, e, m, err) }) {
		return // cn ended: e stays queued for the next connection
	}
	e.State, e.cn = OutboxSent, cn
	e.Attempts++
	c.outboxEventLocked(e)
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
	case m.Error != nil:
		c.finishLocked(e, OutboxFailed, 0, m.Error)
	default:
		var res struct {
			Offset uint64 `json:"offset"`
		}
		_ = json.Unmarshal(m.Result, &res)
		c.finishLocked(e, OutboxAcked, res.Offset, nil)
	}
}

// finishLocked takes e out of the outbox as acked or failed and wakes its
// Publish. c.mu must be held.
func (c *Client) finishLocked(e *entry, st OutboxState, offset uint64, err error) {
	e.State, e.Offset, e.Err = st, offset, err
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
