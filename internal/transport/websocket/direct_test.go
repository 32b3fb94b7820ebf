package websocket

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/metrics"
)

// startEnvMetrics is startEnv with the hub's metrics at hand and its
// queues bounded at queueBytes (0: the default).
func startEnvMetrics(t *testing.T, reader string, queueBytes int) (*testEnv, *metrics.Metrics) {
	t.Helper()
	m := metrics.New(prometheus.NewRegistry())
	return startEnvHub(t, reader, func(c *hub.Config) { c.Metrics, c.QueueMaxBytes = m, queueBytes }, nil), m
}

// TestDirectWritesToIdleSubscribers: a publication to idle subscribers on
// the event loop is written by the fan-out itself, one direct write per
// subscriber; with the goroutine reader every write is the writer's.
func TestDirectWritesToIdleSubscribers(t *testing.T) {
	forEachReader(t, func(t *testing.T, reader string) {
		e, m := startEnvMetrics(t, reader, 0)
		const n = 20
		clients := make([]*client, n)
		for i := range clients {
			clients[i] = e.dial()
			clients[i].subscribe("news")
		}
		time.Sleep(100 * time.Millisecond) // idle: nothing written for longer than the hub's 50 ms
		before := testutil.ToFloat64(m.DirectWrites)
		if _, err := e.hub.Publish(t.Context(), "news", []byte(`"hello"`), "test"); err != nil {
			t.Fatal(err)
		}
		for _, c := range clients {
			if got := c.next(); got["data"] != "hello" {
				t.Fatalf("got %v", got)
			}
		}
		direct := testutil.ToFloat64(m.DirectWrites) - before
		want := float64(n)
		if reader == ReaderGoroutine {
			want = 0
		}
		if direct != want {
			t.Fatalf("%v direct writes for %d idle subscribers, want %v", direct, n, want)
		}
	})
}

// TestDirectWriteAfterWriteDeadline: a blocking write leaves a deadline on
// the socket; a direct write long after it has passed still goes out (it
// must not be refused as timed out, which closed every connection 25 s
// after its subscribe, at its first ping).
func TestDirectWriteAfterWriteDeadline(t *testing.T) {
	forEachReader(t, func(t *testing.T, reader string) {
		e := startEnv(t, reader, func(o *Options) { o.WriteTimeout = 50 * time.Millisecond })
		c := e.dial()
		c.subscribe("news") // the reply goes through the writer: a deadline 50 ms on
		time.Sleep(200 * time.Millisecond)
		for i := range 3 {
			if _, err := e.hub.Publish(t.Context(), "news", []byte(fmt.Sprint(i)), "test"); err != nil {
				t.Fatal(err)
			}
			if got := c.next(); got["data"] != float64(i) {
				t.Fatalf("publication %d: got %v", i, got)
			}
		}
	})
}

// TestDirectWriteOwedBytes: a direct write larger than the socket can take
// leaves the rest to the writer, and what is queued meanwhile follows it:
// a client that reads late gets every frame whole and in order.
func TestDirectWriteOwedBytes(t *testing.T) {
	forEachReader(t, func(t *testing.T, reader string) {
		e, m := startEnvMetrics(t, reader, 16<<20)
		c := dialSmallBuffer(t, e.url())
		c.subscribe("big")
		time.Sleep(100 * time.Millisecond) // idle, so that the first publication is written directly
		const n, size = 6, 900 << 10
		want := make([]string, n)
		for i := range want {
			want[i] = strings.Repeat(string(rune('a'+i)), size)
			data, _ := json.Marshal(want[i])
			if _, err := e.hub.Publish(t.Context(), "big", data, "test"); err != nil {
				t.Fatal(err)
			}
		}
		for i := range want {
			got := c.next()
			if s, _ := got["data"].(string); s != want[i] {
				t.Fatalf("publication %d: %d bytes, want %d of %q", i, len(s), size, want[i][:1])
			}
		}
		if reader == ReaderEpoll && testutil.ToFloat64(m.DirectWrites) == 0 {
			t.Fatal("no direct write: the test did not cover what a direct write leaves owed")
		}
	})
}

// dialSmallBuffer dials url with a small receive buffer, so that the
// server's writes fill the socket soon.
func dialSmallBuffer(t *testing.T, url string) *client {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	}}
	return dialWith(t, ws.Dialer{NetDial: d.DialContext}, url)
}
