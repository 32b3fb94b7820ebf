package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// command is a client command on the wire (docs/protocol.md, "Commands").
type command struct {
	ID             int64           `json:"id"`
	Command        string          `json:"command"`
	Channel        string          `json:"channel,omitempty"`
	Data           json.RawMessage `json:"data,omitempty"`
	Token          string          `json:"token,omitempty"`
	Since          *Position       `json:"since,omitempty"`
	Limit          *int            `json:"limit,omitempty"`
	Reverse        bool            `json:"reverse,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	Method         string          `json:"method,omitempty"`
}

// message is anything the server sends: a reply (with id), an error
// without id, or a push (publication, reset, join, leave).
type message struct {
	ID      *int64          `json:"id"`
	Result  json.RawMessage `json:"result"`
	Error   *Error          `json:"error"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
	Offset  *uint64         `json:"offset"`
	Reset   *Position       `json:"reset"`
	// Subscribed and Unsubscribed are the server-side subscription pushes.
	Subscribed   *subscribedPush   `json:"subscribed"`
	Unsubscribed *unsubscribedPush `json:"unsubscribed"`
}

// subscribedPush is the body of a subscribed push: a subscribe result and
// the backend's data.
type subscribedPush struct {
	subscribeResult
	Data json.RawMessage `json:"data"`
}

// unsubscribedPush is the body of an unsubscribed push.
type unsubscribedPush struct {
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

// replyFunc receives the reply to one command, or the error that ended its
// connection first. It runs on the connection's reader goroutine, before
// anything the server sent after the reply is handled.
type replyFunc func(m *message, err error)

// conn is one WebSocket connection. Its reader goroutine hands replies to
// their replyFunc and pushes to the Client; its writer goroutine writes
// what send queued, in order, so that send never blocks on the socket.
type conn struct {
	c    *Client
	nc   net.Conn
	r    io.Reader // nc, behind what the dialer buffered
	url  string
	info ConnInfo // set once connected, before it is shared

	wmu sync.Mutex // serialises whole frames on nc (writer, control replies)

	mu      sync.Mutex // guards the fields below
	queue   [][]byte
	pending map[int64]replyFunc
	order   []int64 // ids of the commands not answered yet, in the order sent
	err     error   // why the connection ended; non-nil once it has
	wake    chan struct{}

	closed chan struct{} // closed when err is set
	done   chan struct{} // closed when the reader and the writer have exited
}

// dial opens a WebSocket to url and starts its reader and writer.
func (c *Client) dial(ctx context.Context, url string) (*conn, error) {
	d := ws.Dialer{Timeout: c.opts.DialTimeout}
	nc, br, _, err := d.Dial(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", url, err)
	}
	cn := &conn{
		c: c, nc: nc, r: nc, url: url,
		pending: map[int64]replyFunc{},
		wake:    make(chan struct{}, 1),
		closed:  make(chan struct{}),
		done:    make(chan struct{}),
	}
	if br != nil {
		// Frames the server sent right behind its handshake.
		cn.r = io.MultiReader(br, nc)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); cn.readLoop() }()
	go func() { defer wg.Done(); cn.writeLoop() }()
	go func() { wg.Wait(); close(cn.done) }()
	return cn, nil
}

// lockedWriter writes each control frame wsutil answers (pong, close) in
// one call under the frame lock, so that it never lands inside a data frame.
type lockedWriter struct{ cn *conn }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.cn.wmu.Lock()
	defer w.cn.wmu.Unlock()
	_ = w.cn.nc.SetWriteDeadline(time.Now().Add(w.cn.c.opts.WriteTimeout))
	return w.cn.nc.Write(p)
}

func (cn *conn) readLoop() {
	rw := struct {
		io.Reader
		io.Writer
	}{cn.r, lockedWriter{cn}}
	for {
		_ = cn.nc.SetReadDeadline(time.Now().Add(cn.c.opts.IdleTimeout))
		data, err := wsutil.ReadServerText(rw)
		if err != nil {
			cn.fail(closeErrorOf(err))
			return
		}
		var m message
		if err := json.Unmarshal(data, &m); err != nil {
			cn.c.log.Warn("client: undecodable message", "err", err)
			continue
		}
		cn.handle(&m)
	}
}

// closeErrorOf turns a read error into the CloseError it means.
func closeErrorOf(err error) *CloseError {
	var ce wsutil.ClosedError
	if errors.As(err, &ce) {
		return &CloseError{Code: int(ce.Code), Reason: ce.Reason}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &CloseError{Code: closeAbnormal, Reason: "idle timeout: nothing received"}
	}
	return &CloseError{Code: closeAbnormal, Reason: err.Error()}
}

// handle dispatches one message from the server.
//
// The server answers a connection's commands in the order it got them,
// and every command the client sends has an id. An error without id (a
// command refused by the rate limit before it was read, a frame whose id
// could not be read) therefore answers the oldest command not answered
// yet.
func (cn *conn) handle(m *message) {
	if m.ID != nil || m.Error != nil {
		cn.mu.Lock()
		var id int64
		switch {
		case m.ID != nil:
			id = *m.ID
			if i := slices.Index(cn.order, id); i >= 0 {
				cn.order = slices.Delete(cn.order, i, i+1)
			}
		case len(cn.order) > 0:
			id = cn.order[0]
			cn.order = cn.order[1:]
		default:
			cn.mu.Unlock()
			cn.c.log.Warn("client: server error for no command", "code", m.Error.Code, "message", m.Error.Message)
			return
		}
		f := cn.pending[id]
		delete(cn.pending, id)
		cn.mu.Unlock()
		if f != nil {
			f(m, nil)
		}
		return
	}
	if m.Channel != "" {
		cn.c.handlePush(cn, m)
	}
}

func (cn *conn) writeLoop() {
	var buf bytes.Buffer
	for {
		select {
		case <-cn.closed:
			return
		case <-cn.wake:
		}
		cn.mu.Lock()
		q := cn.queue
		cn.queue = nil
		cn.mu.Unlock()
		if len(q) == 0 {
			continue
		}
		buf.Reset()
		for _, p := range q {
			if err := wsutil.WriteClientText(&buf, p); err != nil {
				cn.fail(&CloseError{Code: closeAbnormal, Reason: err.Error()})
				return
			}
		}
		cn.wmu.Lock()
		_ = cn.nc.SetWriteDeadline(time.Now().Add(cn.c.opts.WriteTimeout))
		_, err := cn.nc.Write(buf.Bytes())
		cn.wmu.Unlock()
		if err != nil {
			cn.fail(&CloseError{Code: closeAbnormal, Reason: "write: " + err.Error()})
			return
		}
	}
}

// answer is the reply to one command, or why none will come.
type answer struct {
	m   *message
	err error
}

// ask sends cmd and returns where its answer will arrive, as send does
// (false: the connection is gone and nothing will arrive).
func (cn *conn) ask(cmd *command) (<-chan answer, bool) {
	ch := make(chan answer, 1)
	ok := cn.send(cmd, func(m *message, err error) { ch <- answer{m, err} })
	return ch, ok
}

// send queues cmd, with f to receive its reply when f is not nil. It
// reports false when the connection has already ended (f is then not
// called).
func (cn *conn) send(cmd *command, f replyFunc) bool {
	b, err := json.Marshal(cmd)
	if err != nil {
		// Only data can fail, and Publish marshals it beforehand.
		panic("client: marshal command: " + err.Error())
	}
	cn.mu.Lock()
	if cn.err != nil {
		cn.mu.Unlock()
		return false
	}
	if f != nil {
		cn.pending[cmd.ID] = f
	}
	cn.order = append(cn.order, cmd.ID)
	cn.queue = append(cn.queue, b)
	cn.mu.Unlock()
	select {
	case cn.wake <- struct{}{}:
	default:
	}
	return true
}

// forget drops the reply function of id (its caller stopped waiting).
func (cn *conn) forget(id int64) {
	cn.mu.Lock()
	delete(cn.pending, id)
	cn.mu.Unlock()
}

// fail ends the connection with err (the first error wins) and fails every
// command waiting for a reply.
func (cn *conn) fail(err error) {
	cn.mu.Lock()
	if cn.err != nil {
		cn.mu.Unlock()
		return
	}
	cn.err = err
	pending := cn.pending
	cn.pending = nil
	cn.mu.Unlock()
	close(cn.closed)
	_ = cn.nc.Close()
	for _, f := range pending {
		f(nil, errDisconnected)
	}
}

// close sends a close frame with code and ends the connection.
func (cn *conn) close(code ws.StatusCode, reason string) {
	cn.wmu.Lock()
	_ = cn.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_ = ws.WriteFrame(cn.nc, ws.MaskFrameInPlace(ws.NewCloseFrame(ws.NewCloseFrameBody(code, reason))))
	cn.wmu.Unlock()
	cn.fail(&CloseError{Code: int(code), Reason: reason})
}

// error returns why the connection ended.
func (cn *conn) error() error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.err
}
