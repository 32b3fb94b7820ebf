package websocket

import (
	"time"

	"github.com/gobwas/ws"
	"github.com/jonboulle/clockwork"

	"github.com/switchboardhq/switchboard/internal/protocol"
	"github.com/switchboardhq/switchboard/internal/wheel"
)

// keepalive pings every connection once per interval and closes those idle
// for longer than the idle timeout, on a wheel.Wheel: no connection needs a
// timer of its own.
//
// A connection is added once its session exists and removed by conn.Close.
// The session may be closed at once (over a connection limit) and Close
// then races with the add; the wheel's removed flag makes the removal win
// whichever runs first, so a closed connection never stays on the wheel.
type keepalive struct {
	idle  time.Duration
	ping  []byte
	wheel *wheel.Wheel[*conn]
}

// newKeepalive starts the keepalive goroutine; stop ends it. clock is the
// time source of ticks and of the idle accounting (conn.touch).
func newKeepalive(clock clockwork.Clock, interval, idle time.Duration) *keepalive {
	k := &keepalive{idle: idle, ping: ws.MustCompileFrame(ws.NewPingFrame(nil))}
	k.wheel = wheel.New(clock, interval, k.visit)
	return k
}

// add puts c on the wheel, unless c was already removed.
func (k *keepalive) add(c *conn) { k.wheel.Add(c, &c.kaSlot) }

// remove takes c off the wheel for good; it may run before add.
func (k *keepalive) remove(c *conn) { k.wheel.Remove(c, &c.kaSlot) }

// len returns the number of connections on the wheel.
func (k *keepalive) len() int { return k.wheel.Len() }

// stop ends the keepalive goroutine and waits for it. It is idempotent.
func (k *keepalive) stop() { k.wheel.Stop() }

// visit closes c when nothing arrived from it for longer than the idle
// timeout, and pings it otherwise.
func (k *keepalive) visit(now time.Time, c *conn) {
	if now.UnixMilli()-c.lastRead.Load() > k.idle.Milliseconds() {
		c.sess.Close(protocol.DisconnectIdleTimeout)
		return
	}
	c.sess.EnqueueControl(k.ping)
}
