package longpoll

import (
	"sync"

	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

var _ hub.Transport = (*collector)(nil)

// collector is the hub.Transport of a waiting poll: instead of writing to a
// socket it keeps the publications the session's writer hands it, for the
// request handler to pick up. Channel events (join, leave) are dropped: they
// are not kept in history, so a poller could only ever see those that happen
// while one of its requests is open.
type collector struct {
	wake   chan struct{} // one token: publications are waiting
	closed chan struct{} // closed when the session closes the transport

	mu        sync.Mutex // guards the fields below
	msgs      []hub.Message
	limit     int  // most publications kept
	full      bool // a publication was dropped: keep no later one
	closeOnce sync.Once
}

func newCollector(limit int) *collector {
	return &collector{wake: make(chan struct{}, 1), closed: make(chan struct{}), limit: limit}
}

// Name implements hub.Transport.
func (c *collector) Name() string { return "longpoll" }

// WriteMessages implements hub.Transport. It never blocks. Past its limit it
// drops every further publication, so that what it keeps of each channel is
// a prefix of what the session delivered: the poll's cursor then moves past
// exactly what the answer holds, and the next poll recovers the rest.
func (c *collector) WriteMessages(msgs []hub.Message) error {
	c.mu.Lock()
	signal := false
	for _, m := range msgs {
		if m.Offset == 0 || m.Control {
			continue
		}
		if c.full || len(c.msgs) >= c.limit {
			signal = signal || !c.full
			c.full = true
			break
		}
		c.msgs = append(c.msgs, m)
		signal = true
	}
	c.mu.Unlock()
	if signal {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// Close implements hub.Transport.
func (c *collector) Close(protocol.Disconnect) error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

// take returns the publications collected since the last take, and whether
// the collector has dropped one (the answer must then be sent at once).
func (c *collector) take() (msgs []hub.Message, full bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	msgs = c.msgs
	c.msgs = nil
	c.limit -= len(msgs)
	return msgs, c.full
}
