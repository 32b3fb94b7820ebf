package websocket

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/broker/memory"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/metrics"
)

// readers lists the readers this platform can run; every test of the
// reading path runs once per reader.
func readers() []string {
	if epollSupported {
		return []string{ReaderEpoll, ReaderGoroutine}
	}
	return []string{ReaderGoroutine}
}

func forEachReader(t *testing.T, f func(t *testing.T, reader string)) {
	for _, r := range readers() {
		t.Run(r, func(t *testing.T) { f(t, r) })
	}
}

// testEnv is a hub and a WebSocket handler served on a loopback port.
type testEnv struct {
	t    *testing.T
	hub  *hub.Hub
	hd   *Handler
	addr string
}

// startEnv serves the endpoint with the given reader and a 1024-byte message
// limit, changed by mutate.
func startEnv(t *testing.T, reader string, mutate func(*Options)) *testEnv {
	t.Helper()
	return startEnvBroker(t, reader, memory.New(memory.Options{}), mutate)
}

func startEnvBroker(t *testing.T, reader string, b broker.Broker, mutate func(*Options)) *testEnv {
	t.Helper()
	return startEnvFull(t, reader, b, nil, mutate)
}

// startEnvHub is startEnv with the hub's configuration changed by hubConf.
func startEnvHub(t *testing.T, reader string, hubConf func(*hub.Config), mutate func(*Options)) *testEnv {
	t.Helper()
	return startEnvFull(t, reader, memory.New(memory.Options{}), hubConf, mutate)
}

func startEnvFull(t *testing.T, reader string, b broker.Broker, hubConf func(*hub.Config), mutate func(*Options)) *testEnv {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hc := hub.Config{Metrics: metrics.New(prometheus.NewRegistry()), Logger: log}
	if hubConf != nil {
		hubConf(&hc)
	}
	h := hub.New(hc, b, nil)
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	opts := Options{Reader: reader, MaxMessageSize: 1024, Logger: log,
		// No keepalive pings in the middle of a test's frames, unless asked for.
		PingInterval: time.Hour, IdleTimeout: 2 * time.Hour}
	if mutate != nil {
		mutate(&opts)
	}
	hd := NewHandler(h, opts)
	if got := hd.opts.Reader; got != reader {
		t.Fatalf("handler uses reader %q, want %q", got, reader)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: hd, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	env := &testEnv{t: t, hub: h, hd: hd, addr: ln.Addr().String()}
	t.Cleanup(func() {
		_ = srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("hub shutdown: %v", err)
		}
		hd.Close()
		if hd.ep != nil {
			select {
			case <-hd.ep.done:
			case <-time.After(closeGrace + 3*time.Second):
				t.Errorf("event loop did not finish after Close")
			}
		}
	})
	return env
}

func (e *testEnv) url() string { return "ws://" + e.addr + "/ws" }

// client is a raw test client: it reads frames only when asked to, so it
// has no goroutine of its own.
type client struct {
	t  testing.TB
	nc net.Conn
	r  io.Reader
}

func (e *testEnv) dial() *client {
	e.t.Helper()
	return dialURL(e.t, e.url())
}

func dialURL(t testing.TB, url string) *client {
	t.Helper()
	return dialWith(t, ws.Dialer{}, url)
}

// dialWith is dialURL with the given dialer.
func dialWith(t testing.TB, d ws.Dialer, url string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, br, _, err := d.Dial(ctx, url)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	c := &client{t: t, nc: nc, r: nc}
	if br != nil {
		c.r = io.MultiReader(br, nc)
	}
	return c
}

// masked compiles a client frame.
func masked(f ws.Frame) []byte {
	b, err := ws.CompileFrame(ws.MaskFrameInPlace(f))
	if err != nil {
		panic(err)
	}
	return b
}

func (c *client) write(b []byte) {
	c.t.Helper()
	_ = c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *client) sendText(s string) { c.t.Helper(); c.write(masked(ws.NewTextFrame([]byte(s)))) }

// frame reads the next frame from the server.
func (c *client) frame() (ws.Frame, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	return ws.ReadFrame(c.r)
}

// next returns the next text message, failing on anything else.
func (c *client) next() map[string]any {
	c.t.Helper()
	for {
		f, err := c.frame()
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		switch f.Header.OpCode {
		case ws.OpPing, ws.OpPong:
			continue
		case ws.OpText:
			var m map[string]any
			if err := json.Unmarshal(f.Payload, &m); err != nil {
				c.t.Fatalf("server sent %q: %v", f.Payload, err)
			}
			return m
		default:
			c.t.Fatalf("unexpected frame %v %q", f.Header.OpCode, f.Payload)
		}
	}
}

// call sends a command with the given id and returns its reply.
func (c *client) call(id int, cmd string) map[string]any {
	c.t.Helper()
	c.sendText(cmd)
	for {
		m := c.next()
		if m["id"] == float64(id) {
			return m
		}
	}
}

func (c *client) subscribe(channel string) {
	c.t.Helper()
	m := c.call(1, fmt.Sprintf(`{"command":"subscribe","channel":%q,"id":1}`, channel))
	if m["error"] != nil {
		c.t.Fatalf("subscribe %s: %v", channel, m)
	}
}

// expectClose reads until the close frame and returns its code.
func (c *client) expectClose() int {
	c.t.Helper()
	for {
		f, err := c.frame()
		if err != nil {
			c.t.Fatalf("no close frame: %v", err)
		}
		if f.Header.OpCode == ws.OpClose {
			code, _ := ws.ParseCloseFrameData(f.Payload)
			return int(code)
		}
	}
}

func TestReaderPubSub(t *testing.T) {
	forEachReader(t, func(t *testing.T, reader string) {
		e := startEnv(t, reader, nil)
		c := e.dial()
		c.subscribe("news")
		if _, err := e.hub.Publish(t.Context(), "news", []byte(`"hello"`), "test"); err != nil {
			t.Fatal(err)
		}
		if m := c.next(); m["channel"] != "news" || m["data"] != "hello" {
			t.Fatalf("got %v", m)
		}
	})
}

func TestReaderBadFramesClose(t *testing.T) {
	tests := []struct {
		name  string
		frame []byte
		code  int
	}{
		{"binary", masked(ws.NewBinaryFrame([]byte(`{"command":"ping"}`))), 1003},
		{"too big", masked(ws.NewTextFrame([]byte(strings.Repeat("a", 2000)))), 1009},
		{"too big fragmented", append(masked(ws.Frame{Header: ws.Header{OpCode: ws.OpText, Length: 800}, Payload: make([]byte, 800)}),
			masked(ws.Frame{Header: ws.Header{Fin: true, OpCode: ws.OpContinuation, Length: 800}, Payload: make([]byte, 800)})...), 1009},
		{"invalid UTF-8", masked(ws.NewTextFrame([]byte{'"', 0xff, 0xfe, '"'})), 1007},
		{"unknown opcode", masked(ws.Frame{Header: ws.Header{Fin: true, OpCode: 0x3}}), 1002},
		{"continuation without start", masked(ws.Frame{Header: ws.Header{Fin: true, OpCode: ws.OpContinuation, Length: 1}, Payload: []byte("x")}), 1002},
		{"unmasked", func() []byte { b, _ := ws.CompileFrame(ws.NewTextFrame([]byte(`{}`))); return b }(), 1002},
		{"long ping", masked(ws.NewPingFrame(make([]byte, 126))), 1002},
	}
	forEachReader(t, func(t *testing.T, reader string) {
		e := startEnv(t, reader, nil)
		witness := e.dial()
		witness.subscribe("w")
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				c := dialURL(t, e.url())
				c.write(tc.frame)
				if code := c.expectClose(); code != tc.code {
					t.Fatalf("close code %d, want %d", code, tc.code)
				}
				if m := witness.call(7, `{"command":"ping","id":7}`); m["error"] != nil {
					t.Fatalf("witness: %v", m)
				}
			})
		}
	})
}

func TestReaderFragmentedAndPing(t *testing.T) {
	forEachReader(t, func(t *testing.T, reader string) {
		e := startEnv(t, reader, nil)
		c := e.dial()
		msg := []byte(`{"command":"subscribe","channel":"frag","id":1}`)
		var b []byte
		b = append(b, masked(ws.Frame{Header: ws.Header{OpCode: ws.OpText, Length: 10}, Payload: msg[:10]})...)
		b = append(b, masked(ws.NewPingFrame([]byte("p1")))...)
		b = append(b, masked(ws.Frame{Header: ws.Header{OpCode: ws.OpContinuation, Length: 10}, Payload: msg[10:20]})...)
		b = append(b, masked(ws.Frame{Header: ws.Header{Fin: true, OpCode: ws.OpContinuation, Length: int64(len(msg) - 20)}, Payload: msg[20:]})...)
		c.write(b)
		var pong, reply bool
		for !pong || !reply {
			f, err := c.frame()
			if err != nil {
				t.Fatal(err)
			}
			switch f.Header.OpCode {
			case ws.OpPong:
				if string(f.Payload) != "p1" {
					t.Fatalf("pong %q", f.Payload)
				}
				pong = true
			case ws.OpText:
				if !strings.Contains(string(f.Payload), `"id":1`) || strings.Contains(string(f.Payload), "error") {
					t.Fatalf("reply %s", f.Payload)
				}
				reply = true
			}
		}
	})
}

func TestReaderClientClose(t *testing.T) {
	forEachReader(t, func(t *testing.T, reader string) {
		e := startEnv(t, reader, nil)
		c := e.dial()
		c.subscribe("bye")
		c.write(masked(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye"))))
		if code := c.expectClose(); code != 1000 {
			t.Fatalf("close code %d, want 1000", code)
		}
		// The server closes the TCP connection once the client does.
		_ = c.nc.(*net.TCPConn).CloseWrite()
		if _, err := c.frame(); !errors.Is(err, io.EOF) {
			t.Fatalf("after close: %v, want EOF", err)
		}
		waitFor(t, "session to end", func() bool { return e.hub.Info().Connections == 0 })
	})
}

// TestReaderBytesWithHandshake sends the handshake and two frames in one
// write, so the frames reach the server together with the request.
func TestReaderBytesWithHandshake(t *testing.T) {
	forEachReader(t, func(t *testing.T, reader string) {
		e := startEnv(t, reader, nil)
		nc, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		req := "GET /ws HTTP/1.1\r\nHost: " + e.addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
		b := append([]byte(req), masked(ws.NewTextFrame([]byte(`{"command":"subscribe","channel":"pre","id":1}`)))...)
		b = append(b, masked(ws.NewTextFrame([]byte(`{"command":"ping","id":2}`)))...)
		// And half of a third, finished later.
		third := masked(ws.NewTextFrame([]byte(`{"command":"ping","id":3}`)))
		b = append(b, third[:5]...)
		if _, err := nc.Write(b); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(nc)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("handshake: %v %v", resp, err)
		}
		c := &client{t: t, nc: nc, r: br}
		if m := c.next(); m["id"] != 1.0 || m["error"] != nil {
			t.Fatalf("first reply %v", m)
		}
		if m := c.next(); m["id"] != 2.0 {
			t.Fatalf("second reply %v", m)
		}
		time.Sleep(20 * time.Millisecond)
		c.write(third[5:])
		if m := c.next(); m["id"] != 3.0 {
			t.Fatalf("third reply %v", m)
		}
	})
}

// TestReaderByteByByte delivers frames one byte per write.
func TestReaderByteByByte(t *testing.T) {
	forEachReader(t, func(t *testing.T, reader string) {
		e := startEnv(t, reader, nil)
		c := e.dial()
		var b []byte
		b = append(b, masked(ws.NewTextFrame([]byte(`{"command":"ping","id":1}`)))...)
		b = append(b, masked(ws.NewPingFrame([]byte("x")))...)
		b = append(b, masked(ws.NewTextFrame([]byte(`{"command":"ping","id":2}`)))...)
		for i := range b {
			c.write(b[i : i+1])
			time.Sleep(time.Millisecond)
		}
		var got []float64
		pong := false
		for len(got) < 2 || !pong {
			f, err := c.frame()
			if err != nil {
				t.Fatal(err)
			}
			switch f.Header.OpCode {
			case ws.OpPong:
				pong = true
			case ws.OpText:
				var m map[string]any
				_ = json.Unmarshal(f.Payload, &m)
				got = append(got, m["id"].(float64))
			}
		}
		if got[0] != 1 || got[1] != 2 {
			t.Fatalf("replies in order %v", got)
		}
	})
}

// TestReaderLargeFrameManyReads sends a frame near the size limit in chunks
// of random sizes, so it arrives over many reads, followed at once by a
// small frame in the same chunk as its end.
func TestReaderLargeFrameManyReads(t *testing.T) {
	forEachReader(t, func(t *testing.T, reader string) {
		e := startEnv(t, reader, func(o *Options) { o.MaxMessageSize = 100 << 10 })
		c := e.dial()
		rng := rand.New(rand.NewPCG(1, 2))
		for round := range 3 {
			big := fmt.Sprintf(`{"command":"ping","id":%d,"pad":"%s"}`, 10+round, strings.Repeat("z", 90<<10))
			b := masked(ws.NewTextFrame([]byte(big)))
			b = append(b, masked(ws.NewTextFrame([]byte(`{"command":"ping","id":99}`)))...)
			for len(b) > 0 {
				n := min(len(b), 1+rng.IntN(3000))
				c.write(b[:n])
				b = b[n:]
				if rng.IntN(4) == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			if m := c.next(); m["id"] != float64(10+round) || m["error"] != nil {
				t.Fatalf("big reply %v", m)
			}
			if m := c.next(); m["id"] != 99.0 {
				t.Fatalf("small reply %v", m)
			}
		}
	})
}

// TestReaderManyIdleThenAll opens many connections, lets them idle, then
// has all of them send at once.
func TestReaderManyIdleThenAll(t *testing.T) {
	const n = 300
	forEachReader(t, func(t *testing.T, reader string) {
		e := startEnv(t, reader, nil)
		clients := make([]*client, n)
		for i := range clients {
			clients[i] = e.dial()
			clients[i].subscribe(fmt.Sprintf("c%d", i))
		}
		time.Sleep(200 * time.Millisecond)
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make(chan error, n)
		for i, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				cmd := masked(ws.NewTextFrame([]byte(fmt.Sprintf(`{"command":"ping","id":%d}`, 1000+i))))
				if _, err := c.nc.Write(cmd); err != nil {
					errs <- err
					return
				}
				f, err := c.frame()
				for err == nil && (f.Header.OpCode == ws.OpPing || f.Header.OpCode == ws.OpPong) {
					f, err = c.frame() // a keepalive ping may come first
				}
				if err != nil || !strings.Contains(string(f.Payload), fmt.Sprintf(`"id":%d`, 1000+i)) {
					errs <- fmt.Errorf("client %d: %q %v", i, f.Payload, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		// And a publication to each channel reaches its subscriber.
		for i := range clients {
			if _, err := e.hub.Publish(t.Context(), fmt.Sprintf("c%d", i), []byte(`1`), "test"); err != nil {
				t.Fatal(err)
			}
		}
		for i, c := range clients {
			if m := c.next(); m["channel"] != fmt.Sprintf("c%d", i) {
				t.Fatalf("client %d got %v", i, m)
			}
		}
	})
}

// TestReaderCloseGrace: the server closes a connection whose client never
// answers the close frame and keeps sending; the server must drain for
// closeGrace, then drop the connection.
func TestReaderCloseGrace(t *testing.T) {
	forEachReader(t, func(t *testing.T, reader string) {
		e := startEnv(t, reader, nil)
		c := e.dial()
		r := c.call(1, `{"command":"connect","id":1}`)
		id := r["result"].(map[string]any)["client"].(string)
		start := time.Now()
		if err := e.hub.Disconnect(id, "", false); err != nil {
			t.Fatal(err)
		}
		// Until the grace period is over the server reads (and discards)
		// what the client sends.
		ping := masked(ws.NewTextFrame([]byte(`{"command":"ping"}`)))
		var failed time.Duration
		for time.Since(start) < closeGrace+3*time.Second {
			_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := c.nc.Write(ping); err != nil {
				failed = time.Since(start)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if failed == 0 {
			t.Fatal("the server never dropped the connection")
		}
		if failed < closeGrace-200*time.Millisecond {
			t.Fatalf("connection dropped after %v, before the grace period of %v", failed, closeGrace)
		}
		// The close frame was delivered before the drop.
		if code := c.expectClose(); code != 4500 {
			t.Fatalf("close code %d", code)
		}
	})
}

// TestReaderGoroutinesPerIdleConnection counts goroutines around opening
// many idle subscribed connections: none per connection with the event
// loop, one with the goroutine reader.
func TestReaderGoroutinesPerIdleConnection(t *testing.T) {
	const n = 500
	forEachReader(t, func(t *testing.T, reader string) {
		e := startEnv(t, reader, nil)
		warm := e.dial() // starts the pool's first worker, if any
		warm.subscribe("warm")
		before := runtime.NumGoroutine()
		for i := range n {
			c := e.dial()
			c.subscribe(fmt.Sprintf("idle%d", i))
		}
		time.Sleep(100 * time.Millisecond) // writers exit once their queue is empty
		delta := runtime.NumGoroutine() - before
		t.Logf("%s reader: %d goroutines more for %d idle connections", reader, delta, n)
		switch reader {
		case ReaderEpoll:
			if delta > 20 {
				t.Fatalf("%d goroutines for %d idle connections", delta, n)
			}
		case ReaderGoroutine:
			if delta < n-20 { // other goroutines may have ended meanwhile
				t.Fatalf("only %d goroutines for %d connections with a goroutine each", delta, n)
			}
		}
	})
}

func TestCheckReader(t *testing.T) {
	for _, name := range []string{"", ReaderGoroutine} {
		if err := CheckReader(name); err != nil {
			t.Errorf("CheckReader(%q) = %v", name, err)
		}
	}
	if err := CheckReader(ReaderEpoll); (err == nil) != epollSupported {
		t.Errorf("CheckReader(epoll) = %v on %s", err, runtime.GOOS)
	}
	if err := CheckReader("select"); err == nil {
		t.Error("CheckReader accepts an unknown reader")
	}
	h := hub.New(hub.Config{Metrics: metrics.New(prometheus.NewRegistry())}, memory.New(memory.Options{}), nil)
	hd := NewHandler(h, Options{Reader: "select", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer hd.Close()
	if hd.opts.Reader != ReaderGoroutine || hd.ep != nil {
		t.Errorf("unknown reader: handler uses %q", hd.opts.Reader)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestReaderChurn opens and drops connections from several goroutines (so
// fds are reused all the time) while a steady subscriber receives every
// publication in order.
func TestReaderChurn(t *testing.T) {
	forEachReader(t, func(t *testing.T, reader string) {
		e := startEnv(t, reader, nil)
		steady := e.dial()
		steady.subscribe("steady")
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 40 {
					ch := fmt.Sprintf("churn%d-%d", g, i)
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					nc, _, _, err := ws.Dialer{}.Dial(ctx, e.url())
					cancel()
					if err != nil {
						errs <- err
						return
					}
					c := &client{t: t, nc: nc, r: nc}
					_, _ = nc.Write(masked(ws.NewTextFrame([]byte(fmt.Sprintf(`{"command":"subscribe","channel":%q,"id":1}`, ch)))))
					f, err := c.frame()
					if err != nil || !strings.Contains(string(f.Payload), ch) {
						errs <- fmt.Errorf("%s: reply %q, %v", ch, f.Payload, err)
						_ = nc.Close()
						return
					}
					if i%2 == 0 {
						_ = nc.(*net.TCPConn).SetLinger(0)
					}
					_ = nc.Close()
				}
			}()
		}
		for i := 1; i <= 200; i++ {
			if _, err := e.hub.Publish(t.Context(), "steady", []byte(fmt.Sprint(i)), "test"); err != nil {
				t.Fatal(err)
			}
		}
		for i := 1; i <= 200; i++ {
			if m := steady.next(); m["data"] != float64(i) {
				t.Fatalf("publication %d: got %v", i, m)
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		waitFor(t, "churned sessions to end", func() bool { return e.hub.Info().Connections == 1 })
	})
}

// gateBroker blocks Subscribe to channels named slow* until gate is closed.
type gateBroker struct {
	*memory.Broker
	gate chan struct{}
}

func (b *gateBroker) Subscribe(ctx context.Context, channel string) error {
	if strings.HasPrefix(channel, "slow") {
		select {
		case <-b.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return b.Broker.Subscribe(ctx, channel)
}

// TestReaderSlowCommands: commands stuck in a slow broker, more of them than
// the event loop has workers to start with, do not hold up other clients.
func TestReaderSlowCommands(t *testing.T) {
	forEachReader(t, func(t *testing.T, reader string) {
		b := &gateBroker{Broker: memory.New(memory.Options{}), gate: make(chan struct{})}
		e := startEnvBroker(t, reader, b, nil)
		t.Cleanup(func() { close(b.gate) })
		slow := make([]*client, 3*max(4, 2*runtime.GOMAXPROCS(0)))
		for i := range slow {
			slow[i] = e.dial()
			slow[i].sendText(fmt.Sprintf(`{"command":"subscribe","channel":"slow%d","id":1}`, i))
		}
		// The stuck commands are released only when the test ends: a fast
		// client held up behind them gets no reply (call fails after its
		// read deadline), so no timing is asserted here.
		start := time.Now()
		for i := range 20 {
			c := e.dial()
			if m := c.call(2, `{"command":"ping","id":2}`); m["error"] != nil {
				t.Fatalf("fast client %d: %v", i, m)
			}
		}
		t.Logf("%s: 20 fast clients served in %v behind %d stuck commands", reader, time.Since(start), len(slow))
	})
}
