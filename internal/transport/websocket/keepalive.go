package websocket

import (
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// keepalive pings every connection once per interval and closes those idle
// for longer than the idle timeout. Connections are spread over buckets and
// one goroutine visits one bucket per tick, so the work is even over time and
// no connection needs a timer of its own.
type keepalive struct {
	idle time.Duration
	ping []byte

	mu      sync.Mutex
	buckets []map[*conn]struct{}
	next    int // bucket for the next added connection

	quit     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

func newKeepalive(interval, idle time.Duration) *keepalive {
	n := int(interval / time.Second)
	n = max(1, min(n, 60))
	k := &keepalive{
		idle:    idle,
		ping:    ws.MustCompileFrame(ws.NewPingFrame(nil)),
		buckets: make([]map[*conn]struct{}, n),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	for i := range k.buckets {
		k.buckets[i] = make(map[*conn]struct{})
	}
	go k.run(interval / time.Duration(n))
	return k
}

func (k *keepalive) add(c *conn) {
	k.mu.Lock()
	c.kaSlot = k.next
	k.buckets[k.next][c] = struct{}{}
	k.next = (k.next + 1) % len(k.buckets)
	k.mu.Unlock()
}

func (k *keepalive) remove(c *conn) {
	k.mu.Lock()
	delete(k.buckets[c.kaSlot], c)
	k.mu.Unlock()
}

func (k *keepalive) stop() {
	k.stopOnce.Do(func() { close(k.quit) })
	<-k.done
}

func (k *keepalive) run(tick time.Duration) {
	defer close(k.done)
	t := time.NewTicker(tick)
	defer t.Stop()
	var batch []*conn
	for i := 0; ; i = (i + 1) % len(k.buckets) {
		select {
		case <-k.quit:
			return
		case <-t.C:
		}
		k.mu.Lock()
		batch = batch[:0]
		for c := range k.buckets[i] {
			batch = append(batch, c)
		}
		k.mu.Unlock()
		now := coarseNow()
		idle := k.idle.Milliseconds()
		for _, c := range batch {
			if now-c.lastRead.Load() > idle {
				c.sess.Close(protocol.DisconnectIdleTimeout)
				continue
			}
			c.sess.EnqueueControl(k.ping)
		}
		clear(batch)
	}
}

// coarseNow returns the time in milliseconds, enough for idle accounting.
func coarseNow() int64 { return time.Now().UnixMilli() }
