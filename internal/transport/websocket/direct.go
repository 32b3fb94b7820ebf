package websocket

import (
	"github.com/switchboardhq/switchboard/internal/hub"
)

// CanWriteDirect implements hub.DirectWriter: a connection on the event
// loop has its socket at hand and can be written without blocking.
func (c *conn) CanWriteDirect() bool { return c.ep.polled() }

// TryWriteMessages implements hub.DirectWriter: it frames msgs as
// WriteMessages does and writes them with one non-blocking system call on
// the caller's goroutine. What the socket buffer cannot take is kept in
// c.owed and goes out first with the next WriteMessages.
func (c *conn) TryWriteMessages(msgs []hub.Message) (owed bool, err error) {
	if c.owed != nil { // the writer has not flushed it yet: nothing may overtake it
		rest := c.frameAll(*c.owed, msgs)
		c.owed = &rest
		return true, nil
	}
	bp := bufPool.Get().(*[]byte)
	buf := c.frameAll((*bp)[:0], msgs)
	n, err := writeNow(c.ep.rc, buf)
	if err == nil && n < len(buf) {
		rest := make([]byte, len(buf)-n)
		copy(rest, buf[n:])
		c.owed = &rest
	}
	putBuf(bp, buf)
	if err != nil {
		if n > 0 { // part of a frame went out: no close frame can follow
			c.broken = true
		}
		return false, transportErr(err)
	}
	return c.owed != nil, nil
}
