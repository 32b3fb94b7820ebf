package websocket

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/jonboulle/clockwork"

	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// nextNudging reads the next frame. The keepalive wheel re-arms its timer
// after a round's pings are out, so the test's next Advance can come
// before the re-arm and find no timer to fire; when nothing arrives for a
// while, the clock is nudged by a millisecond, which fires a timer re-armed
// in the past.
func (c *client) nextNudging(clk *clockwork.FakeClock) ws.Frame {
	c.t.Helper()
	for range 100 {
		_ = c.nc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		f, err := ws.ReadFrame(c.r)
		if err == nil {
			return f
		}
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			c.t.Fatalf("read: %v", err)
		}
		clk.Advance(time.Millisecond)
	}
	c.t.Fatal("no frame from the keepalive")
	return ws.Frame{}
}

// TestKeepalive drives the keepalive with a fake clock: a ping each
// interval, and a close with 4002 once nothing arrived for longer than the
// idle timeout.
func TestKeepalive(t *testing.T) {
	const interval, idle = 10 * time.Second, 25 * time.Second
	tests := []struct {
		name   string
		answer bool // the client answers every ping with a pong
		rounds int  // intervals the clock is advanced by
		closed bool // the last round closes the connection with 4002
	}{
		{"a ping each interval while the client answers", true, 6, false},
		{"an idle client is closed after idle_timeout", false, 3, true},
	}
	forEachReader(t, func(t *testing.T, reader string) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				clk := clockwork.NewFakeClock()
				e := startEnv(t, reader, func(o *Options) {
					o.Clock, o.PingInterval, o.IdleTimeout = clk, interval, idle
				})
				c := e.dial()
				// A reply means the session exists, is on the keepalive and
				// was last heard from at the fake clock's start.
				if m := c.call(1, `{"command":"ping","id":1}`); m["error"] != nil {
					t.Fatalf("ping: %v", m)
				}
				for round := 1; round <= tc.rounds; round++ {
					clk.Advance(interval)
					f := c.nextNudging(clk)
					if tc.closed && round == tc.rounds {
						code, _ := ws.ParseCloseFrameData(f.Payload)
						if f.Header.OpCode != ws.OpClose || code != ws.StatusCode(protocol.DisconnectIdleTimeout.Code) {
							t.Fatalf("round %d: %v %d, want a close with 4002", round, f.Header.OpCode, code)
						}
						return
					}
					if f.Header.OpCode != ws.OpPing {
						t.Fatalf("round %d: got %v %q, want a ping", round, f.Header.OpCode, f.Payload)
					}
					if tc.answer {
						c.write(masked(ws.NewPongFrame(nil)))
						// The reply comes after the pong was read.
						if m := c.call(round+1, fmt.Sprintf(`{"command":"ping","id":%d}`, round+1)); m["error"] != nil {
							t.Fatalf("round %d: %v", round, m)
						}
					}
				}
			})
		}
	})
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close(); _ = client.Close() })
	return server, client
}

// TestKeepaliveCloseBeforeAdd: the session of a connection over the limit
// is closed at once, so its writer may run conn.Close (which takes the
// connection off the keepalive) before ServeHTTP puts it on. The connection
// must not stay on the keepalive.
func TestKeepaliveCloseBeforeAdd(t *testing.T) {
	e := startEnv(t, ReaderGoroutine, nil)
	nc, _ := tcpPair(t)
	c := &conn{hd: e.hd, nc: nc}
	c.sess = e.hub.NewSession(sink{}, hub.SessionInfo{})
	defer c.sess.PeerGone()
	if err := c.Close(protocol.DisconnectConnectionLimit); err != nil {
		t.Fatal(err)
	}
	e.hd.ka.add(c) // what ServeHTTP does next
	if n := e.hd.ka.len(); n != 0 {
		t.Fatalf("%d connections on the keepalive after close, want 0", n)
	}
}

// TestKeepaliveOverLimit opens connections over the hub's limit from
// several goroutines; each is closed with 4007, and only the one within the
// limit is left on the keepalive.
func TestKeepaliveOverLimit(t *testing.T) {
	forEachReader(t, func(t *testing.T, reader string) {
		e := startEnvHub(t, reader, func(c *hub.Config) { c.MaxConnections = 1 }, nil)
		keep := e.dial()
		keep.subscribe("keep")
		var wg sync.WaitGroup
		errs := make(chan string, 64)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 8 {
					c := e.dial()
					if code := c.expectClose(); code != int(protocol.DisconnectConnectionLimit.Code) {
						errs <- fmt.Sprintf("close code %d, want 4007", code)
					}
					_ = c.nc.Close()
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		waitFor(t, "the refused sessions to end", func() bool { return e.hub.Info().Connections == 1 })
		waitFor(t, "one connection on the keepalive", func() bool { return e.hd.ka.len() == 1 })
	})
}
