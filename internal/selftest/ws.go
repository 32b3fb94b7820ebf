package selftest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// WebSocketDialer returns a Dialer whose participants connect to the node
// at base (http://host:port, https://..., or ws:// and wss://) over
// WebSocket, as browsers do, with token when it is not empty.
func WebSocketDialer(base, token string) (Dialer, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("selftest: url: %w", err)
	}
	switch u.Scheme {
	case "http", "ws":
		u.Scheme = "ws"
	case "https", "wss":
		u.Scheme = "wss"
	default:
		return nil, fmt.Errorf("selftest: url %q: want http, https, ws or wss", base)
	}
	if !strings.HasSuffix(u.Path, "/ws") {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/ws"
	}
	endpoint := u.String()
	return func(ctx context.Context) (Conn, error) {
		nc, br, _, err := ws.Dialer{}.Dial(ctx, endpoint)
		if err != nil {
			return nil, err
		}
		if br != nil {
			ws.PutReader(br)
		}
		c := &wsConn{nc: nc, pending: map[int]chan reply{}, pushes: map[string]func(string, json.RawMessage){}, done: make(chan struct{})}
		go c.read()
		if token != "" {
			if _, err := c.call(ctx, map[string]any{"command": "connect", "token": token}); err != nil {
				c.Close()
				return nil, fmt.Errorf("connect with the token: %w", err)
			}
		}
		return c, nil
	}, nil
}

type reply struct {
	result json.RawMessage
	err    error
}

// wsConn is one participant's WebSocket connection.
type wsConn struct {
	nc   net.Conn
	wmu  sync.Mutex
	done chan struct{}

	mu      sync.Mutex
	next    int
	pending map[int]chan reply
	pushes  map[string]func(string, json.RawMessage)
	closed  bool
}

func (c *wsConn) read() {
	defer close(c.done)
	for {
		data, err := wsutil.ReadServerText(c.nc)
		if err != nil {
			c.mu.Lock()
			c.closed = true
			for id, ch := range c.pending {
				ch <- reply{err: errors.New("the connection closed")}
				delete(c.pending, id)
			}
			c.mu.Unlock()
			return
		}
		var m struct {
			ID     *int            `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
			Room  string          `json:"room"`
			Event string          `json:"event"`
			Data  json.RawMessage `json:"data"`
		}
		if json.Unmarshal(data, &m) != nil {
			continue
		}
		c.mu.Lock()
		if m.ID != nil {
			if ch := c.pending[*m.ID]; ch != nil {
				delete(c.pending, *m.ID)
				r := reply{result: m.Result}
				if m.Error != nil {
					r.err = fmt.Errorf("%d: %s", m.Error.Code, m.Error.Message)
				}
				ch <- r
			}
			c.mu.Unlock()
			continue
		}
		push := c.pushes[m.Room]
		c.mu.Unlock()
		if push != nil && m.Event != "" {
			push(m.Event, m.Data)
		}
	}
}

func (c *wsConn) call(ctx context.Context, cmd map[string]any) (json.RawMessage, error) {
	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, errors.New("the connection closed")
	}
	c.next++
	id := c.next
	c.pending[id] = ch
	c.mu.Unlock()
	cmd["id"] = id
	b, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	err = writeText(c.nc, &c.wmu, b)
	if err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r.result, r.err
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return nil, ctx.Err()
	}
}

func (c *wsConn) Join(ctx context.Context, room string, push func(string, json.RawMessage)) (JoinReply, error) {
	c.mu.Lock()
	c.pushes[room] = push
	c.mu.Unlock()
	res, err := c.call(ctx, map[string]any{"command": "room_join", "data": map[string]any{"room": room}})
	if err != nil {
		return JoinReply{}, err
	}
	var r JoinReply
	if err := json.Unmarshal(res, &r); err != nil {
		return r, fmt.Errorf("selftest: join reply: %w", err)
	}
	return r, nil
}

func (c *wsConn) Command(ctx context.Context, command string, data map[string]any) (json.RawMessage, error) {
	return c.call(ctx, map[string]any{"command": command, "data": data})
}

// Close ends the connection; the node removes it from its rooms.
func (c *wsConn) Close() {
	_ = c.nc.Close()
	<-c.done
}

// writeText sends b as one masked text frame in one write, under wmu. One
// write, not wsutil's header then payload: the reading goroutine answers
// pings with pongs on the same connection, and a pong between a frame's
// header and payload would corrupt both (the server closes with 1007).
// b is masked in place.
func writeText(nc net.Conn, wmu *sync.Mutex, b []byte) error {
	frame, err := ws.CompileFrame(ws.MaskFrameInPlace(ws.NewTextFrame(b)))
	if err != nil {
		return err
	}
	wmu.Lock()
	defer wmu.Unlock()
	_, err = nc.Write(frame)
	return err
}
