// Package wstest is a small WebSocket client for Switchboard's tests: it
// dials a real server over loopback, sends protocol commands and reads
// replies, pushes and close frames with timeouts.
package wstest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// DefaultTimeout bounds every wait of a Client.
const DefaultTimeout = 10 * time.Second

// Client is a test WebSocket client. Its methods fail the test on error.
type Client struct {
	t    testing.TB
	Conn net.Conn

	in     chan frame
	mu     sync.Mutex
	nextID int64
	// pending holds pushes read while waiting for a reply.
	pending []map[string]any
}

type frame struct {
	data []byte
	err  error
}

// Dial connects to url (ws://host/ws) and starts reading.
func Dial(t testing.TB, url string) *Client {
	t.Helper()
	c, err := DialErr(t, url, nil)
	if err != nil {
		t.Fatalf("wstest: dial %s: %v", url, err)
	}
	return c
}

// DialErr connects with optional extra headers and returns the error
// instead of failing the test.
func DialErr(t testing.TB, url string, header map[string]string) (*Client, error) {
	d := ws.Dialer{Timeout: DefaultTimeout}
	if header != nil {
		h := ws.HandshakeHeaderHTTP{}
		hh := make(map[string][]string)
		for k, v := range header {
			hh[k] = []string{v}
		}
		h = ws.HandshakeHeaderHTTP(hh)
		d.Header = h
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
	defer cancel()
	conn, br, _, err := d.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	if br != nil {
		// The server sent frames right behind its handshake (a close, for
		// instance): they sit in br and must be read before the socket.
		conn = &prefixedConn{Conn: conn, r: io.MultiReader(br, conn)}
	}
	c := &Client{t: t, Conn: conn, in: make(chan frame, 1024)}
	go c.readLoop()
	t.Cleanup(func() { _ = conn.Close() })
	return c, nil
}

// prefixedConn reads what the dialer buffered before the socket itself.
type prefixedConn struct {
	net.Conn
	r io.Reader
}

func (p *prefixedConn) Read(b []byte) (int, error) { return p.r.Read(b) }

func (c *Client) readLoop() {
	defer close(c.in)
	for {
		data, err := wsutil.ReadServerText(c.Conn)
		c.in <- frame{data: data, err: err}
		if err != nil {
			return
		}
	}
}

// SendRaw sends one text frame, in one write: the reading goroutine
// answers the server's pings with pongs on the same connection, and a pong
// written between a frame's header and its payload would corrupt both.
func (c *Client) SendRaw(text string) {
	c.t.Helper()
	var frame bytes.Buffer
	if err := wsutil.WriteClientText(&frame, []byte(text)); err != nil {
		c.t.Fatalf("wstest: frame: %v", err)
	}
	if _, err := c.Conn.Write(frame.Bytes()); err != nil {
		c.t.Fatalf("wstest: send: %v", err)
	}
}

// SendFrame sends f as it is (mask it first to be a valid client frame),
// in one write, for the reason given at SendRaw.
func (c *Client) SendFrame(f ws.Frame) error {
	b, err := ws.CompileFrame(f)
	if err != nil {
		return err
	}
	_, err = c.Conn.Write(b)
	return err
}

// Send sends v as one JSON text frame.
func (c *Client) Send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatalf("wstest: marshal: %v", err)
	}
	c.SendRaw(string(b))
}

// Call sends cmd with a fresh id and returns the reply with that id. Pushes
// received meanwhile are kept for Next.
func (c *Client) Call(cmd map[string]any) map[string]any {
	c.t.Helper()
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	c.mu.Unlock()
	cmd["id"] = id
	c.Send(cmd)
	deadline := time.Now().Add(DefaultTimeout)
	for {
		m, err := c.read(time.Until(deadline))
		if err != nil {
			c.t.Fatalf("wstest: waiting for reply %d to %v: %v", id, cmd, err)
		}
		if got, ok := m["id"].(float64); ok && int64(got) == id {
			return m
		}
		c.pending = append(c.pending, m)
	}
}

// MustCall is Call that fails the test when the reply is an error.
func (c *Client) MustCall(cmd map[string]any) map[string]any {
	c.t.Helper()
	r := c.Call(cmd)
	if r["error"] != nil {
		c.t.Fatalf("wstest: %v failed: %v", cmd, r["error"])
	}
	res, _ := r["result"].(map[string]any)
	return res
}

// Subscribe subscribes to channel and returns the result.
func (c *Client) Subscribe(channel string) map[string]any {
	c.t.Helper()
	return c.MustCall(map[string]any{"command": "subscribe", "channel": channel})
}

// Next returns the next message (a push, or a reply without id).
func (c *Client) Next() map[string]any {
	c.t.Helper()
	m, err := c.NextErr(DefaultTimeout)
	if err != nil {
		c.t.Fatalf("wstest: next: %v", err)
	}
	return m
}

// NextErr returns the next message or the read error (such as a
// wsutil.ClosedError, or a timeout).
func (c *Client) NextErr(timeout time.Duration) (map[string]any, error) {
	if len(c.pending) > 0 {
		m := c.pending[0]
		c.pending = c.pending[1:]
		return m, nil
	}
	return c.read(timeout)
}

// ErrTimeout is returned when nothing arrives in time.
var ErrTimeout = errors.New("wstest: timeout")

func (c *Client) read(timeout time.Duration) (map[string]any, error) {
	select {
	case f, ok := <-c.in:
		if !ok {
			return nil, errors.New("wstest: connection closed")
		}
		if f.err != nil {
			return nil, f.err
		}
		var m map[string]any
		if err := json.Unmarshal(f.data, &m); err != nil {
			return nil, fmt.Errorf("wstest: server sent invalid JSON %q: %w", f.data, err)
		}
		return m, nil
	case <-time.After(timeout):
		return nil, ErrTimeout
	}
}

// ExpectClose reads until the server closes the connection and returns the
// close code (0 when the connection ended without a close frame).
func (c *Client) ExpectClose() int {
	c.t.Helper()
	deadline := time.Now().Add(DefaultTimeout)
	for {
		_, err := c.NextErr(time.Until(deadline))
		if err == nil {
			continue
		}
		var ce wsutil.ClosedError
		if errors.As(err, &ce) {
			return int(ce.Code)
		}
		if errors.Is(err, ErrTimeout) {
			c.t.Fatalf("wstest: server did not close the connection")
		}
		return 0
	}
}

// Silent asserts that nothing arrives for d.
func (c *Client) Silent(d time.Duration) {
	c.t.Helper()
	m, err := c.NextErr(d)
	if err == nil {
		c.t.Fatalf("wstest: expected silence, got %v", m)
	}
	if !errors.Is(err, ErrTimeout) {
		c.t.Fatalf("wstest: expected silence, got error %v", err)
	}
}

// Requeue puts m back in front of what Next returns.
func (c *Client) Requeue(m map[string]any) {
	c.pending = append([]map[string]any{m}, c.pending...)
}
