package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// Client is a connection to Switchboard that keeps itself up. Create one
// with New, start it with Connect, end it with Close. Its methods are safe
// for concurrent use.
type Client struct {
	url    string
	opts   Options
	log    *slog.Logger
	random func() float64
	nextID atomic.Int64

	// mu guards everything below. Lock order: mu, then a Subscription's
	// mu, then a conn's mu, then the events queue's.
	mu        sync.Mutex
	state     State
	closed    bool               // Close was called: final
	running   bool               // the connection loop runs
	stopErr   error              // why the loop stopped for good, until Connect
	cancel    context.CancelFunc // stops the loop
	loopDone  chan struct{}      // closed when the loop has exited
	ev        *events            // started by the first Connect
	cn        *conn              // the connected connection, or nil
	connected chan struct{}      // closed while cn is set; replaced when it drops
	stopped   chan struct{}      // closed when the loop stops; replaced by Connect
	subs      map[string]*Subscription
	outbox    []*entry // in the order of Publish calls
	token     string
	info      ConnInfo
	dials     int
	refresh   *time.Timer // the next token refresh, for cn
}

// New returns a Client for the WebSocket endpoint url
// (ws://host:port/ws, or wss://). It does not connect: see Connect.
func New(url string, opts Options) *Client {
	opts = opts.withDefaults()
	c := &Client{
		url:       url,
		opts:      opts,
		log:       opts.Logger,
		random:    opts.Random,
		token:     opts.Token,
		connected: make(chan struct{}),
		stopped:   make(chan struct{}),
		subs:      map[string]*Subscription{},
	}
	if c.random == nil {
		c.random = rand.Float64
	}
	return c
}

// Connect starts the connection loop, if it is not running, and waits until
// the client is connected, the loop stopped for good (a close code that
// means "do not reconnect", such as 4500 or 4502: that error is returned),
// or ctx ends. When ctx ends first, the loop keeps trying in the background:
// subscriptions and publications wait for it. Connect after a stop for
// good starts again.
func (c *Client) Connect(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if !c.running {
		c.running = true
		c.stopErr = nil
		select {
		case <-c.stopped:
			c.stopped = make(chan struct{})
		default:
		}
		var lctx context.Context
		lctx, c.cancel = context.WithCancel(context.Background())
		c.loopDone = make(chan struct{})
		go c.loop(lctx, c.loopDone)
	}
	connected, stopped := c.connected, c.stopped
	c.mu.Unlock()
	select {
	case <-connected:
		return nil
	case <-stopped:
		return c.stopError()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the client: it closes the connection (with 1000), ends every
// subscription, fails the publications still in the outbox with ErrClosed
// and waits until the callbacks queued so far have run. It must not be
// called from a callback, which it would wait for. Calls after Close fail
// with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	cancel, loopDone, running := c.cancel, c.loopDone, c.running
	c.mu.Unlock()
	if cancel != nil {
		cancel()
		<-loopDone // also after a stop for good: the loop may still be returning
	}
	c.mu.Lock()
	if c.stopErr == nil || running {
		c.stopLocked(ErrClosed)
	}
	for ch, s := range c.subs {
		delete(c.subs, ch)
		s.end(ErrClosed)
	}
	ev := c.ev
	c.mu.Unlock()
	if ev != nil {
		ev.stop()
		<-ev.done
	}
	return nil
}

// State returns the client's current state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Info describes the current connection; the zero ConnInfo while not
// connected.
func (c *Client) Info() ConnInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cn == nil {
		return ConnInfo{}
	}
	return c.info
}

// stopError returns why the loop stopped.
func (c *Client) stopError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopErr != nil {
		return c.stopErr
	}
	return ErrClosed
}

// emit queues a callback, starting the events goroutine if this is the
// first. c.mu must be held (the order of events is the order of the state
// changes made under it). After Close it does nothing.
func (c *Client) emit(f func()) {
	if c.ev == nil {
		if c.closed {
			return
		}
		c.ev = newEvents()
	}
	c.ev.push(f)
}

// setStateLocked records a state change and tells OnState. c.mu must be
// held.
func (c *Client) setStateLocked(ch StateChange) {
	c.state = ch.State
	if cb := c.opts.OnState; cb != nil {
		c.emit(func() { cb(ch) })
	}
}

// loop connects, serves the connection until it ends, and decides from
// how it ended whether to connect again, until ctx ends or a close code
// says not to.
func (c *Client) loop(ctx context.Context, done chan struct{}) {
	defer close(done)
	attempt := 0
	c.mu.Lock()
	c.setStateLocked(StateChange{State: StateConnecting})
	c.mu.Unlock()
	for {
		cn, err := c.connectOnce(ctx)
		if err == nil {
			up := time.Now()
			c.serve(cn)
			select {
			case <-cn.closed:
			case <-ctx.Done():
				cn.close(1000, "client closed")
			}
			<-cn.done
			err = cn.error()
			c.lost(cn)
			attempt = c.opts.Backoff.next(attempt, time.Since(up))
		} else {
			attempt = c.opts.Backoff.next(attempt, 0)
		}
		if ctx.Err() != nil {
			return // Close finishes the stop
		}
		if !c.retryable(err) {
			c.log.Warn("client: stopped", "err", err)
			c.mu.Lock()
			c.stopLocked(err)
			c.mu.Unlock()
			return
		}
		delay := c.opts.Backoff.Delay(attempt-1, c.random)
		c.log.Info("client: reconnecting", "err", err, "attempt", attempt, "delay", delay)
		c.mu.Lock()
		c.setStateLocked(StateChange{State: StateConnecting, Err: err, Attempt: attempt - 1, Delay: delay})
		c.mu.Unlock()
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

// next returns the attempt count after a connection that stayed up for
// up (0 when it failed before connecting): back to 1 after a stable
// connection, one more otherwise.
func (b Backoff) next(attempt int, up time.Duration) int {
	if up >= b.withDefaults().Stable {
		return 1
	}
	return attempt + 1
}

// retryable reports whether the loop tries again after err, and forgets
// the token when the server said it expired.
func (c *Client) retryable(err error) bool {
	var ce *CloseError
	if errors.As(err, &ce) {
		if ce.TokenExpired() {
			c.forgetToken()
		}
		return ce.Reconnect()
	}
	var se *Error
	if errors.As(err, &se) {
		if se.Code == 419 && c.opts.GetToken != nil {
			c.forgetToken()
			return true
		}
		return se.Temporary()
	}
	var hs ws.StatusError
	if errors.As(err, &hs) && hs >= 400 && hs < 500 && hs != 408 && hs != 429 {
		// The handshake was refused for a reason a retry cannot fix: a
		// Host or Origin the server does not allow (421, 403), a wrong
		// path (404).
		return false
	}
	return true // dial errors, HTTP 503 while a node drains, GetToken errors
}

func (c *Client) forgetToken() {
	if c.opts.GetToken == nil {
		return
	}
	c.mu.Lock()
	c.token = ""
	c.mu.Unlock()
}

// stopLocked stops for good with err: the state becomes disconnected and
// publications and subscribes waiting fail with err. c.mu must be held.
func (c *Client) stopLocked(err error) {
	c.running = false
	c.stopErr = err
	select {
	case <-c.stopped:
	default:
		close(c.stopped)
	}
	box := c.outbox
	c.outbox = nil
	for _, e := range box {
		c.finishLocked(e, OutboxFailed, 0, err)
	}
	for ch, s := range c.subs {
		if !s.wasSubscribed() {
			delete(c.subs, ch)
			s.end(err)
		}
	}
	c.setStateLocked(StateChange{State: StateDisconnected, Err: err})
}

// connectOnce dials the next endpoint and sends the connect command.
func (c *Client) connectOnce(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	defer cancel()
	c.mu.Lock()
	attempt := c.dials
	c.dials++
	token := c.token
	c.mu.Unlock()
	url := c.url
	if c.opts.Endpoint != nil {
		u, err := c.opts.Endpoint(ctx, attempt)
		if err != nil {
			return nil, fmt.Errorf("client: endpoint: %w", err)
		}
		url = u
	}
	if token == "" && c.opts.GetToken != nil {
		t, err := c.opts.GetToken(ctx)
		if err != nil {
			return nil, fmt.Errorf("client: get token: %w", err)
		}
		token = t
		c.mu.Lock()
		c.token = t
		c.mu.Unlock()
	}
	cn, err := c.dial(ctx, url)
	if err != nil {
		return nil, err
	}
	ch, _ := cn.ask(&command{ID: c.nextID.Add(1), Command: "connect", Token: token})
	var a answer
	select {
	case a = <-ch:
	case <-ctx.Done():
		cn.fail(&CloseError{Code: closeAbnormal, Reason: "connect: " + ctx.Err().Error()})
		<-cn.done
		return nil, fmt.Errorf("client: connect to %s: %w", url, ctx.Err())
	}
	if a.err != nil {
		<-cn.done
		return nil, cn.error()
	}
	if a.m.Error != nil {
		cn.fail(a.m.Error)
		<-cn.done
		return nil, a.m.Error
	}
	var res struct {
		Client  string `json:"client"`
		Node    string `json:"node"`
		User    string `json:"user"`
		Expires int64  `json:"expires"`
	}
	if err := json.Unmarshal(a.m.Result, &res); err != nil {
		cn.close(1000, "bad connect reply")
		<-cn.done
		return nil, fmt.Errorf("client: connect reply: %w", err)
	}
	cn.info = ConnInfo{URL: url, Client: res.Client, Node: res.Node, User: res.User}
	if res.Expires > 0 {
		cn.info.Expires = time.Unix(res.Expires, 0)
	}
	c.log.Info("client: connected", "url", url, "client", res.Client, "node", res.Node)
	return cn, nil
}

// serve makes cn the client's connection: it subscribes every
// subscription again (from its position) and sends the outbox, in order.
func (c *Client) serve(cn *conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cn = cn
	c.info = cn.info
	close(c.connected)
	c.setStateLocked(StateChange{State: StateConnected})
	for _, s := range c.subs {
		c.subscribeLocked(cn, s)
	}
	c.pumpLocked()
	c.scheduleRefreshLocked(cn)
}

// lost forgets cn after it ended.
func (c *Client) lost(cn *conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cn == cn {
		c.cn = nil
		c.connected = make(chan struct{})
	}
	if c.refresh != nil {
		c.refresh.Stop()
		c.refresh = nil
	}
	for _, s := range c.subs {
		s.detach(cn)
	}
}

// waitConn returns the connected connection, waiting for one until ctx
// ends or the client stops.
func (c *Client) waitConn(ctx context.Context) (*conn, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		cn, connected, stopped := c.cn, c.connected, c.stopped
		c.mu.Unlock()
		if cn != nil {
			return cn, nil
		}
		select {
		case <-connected:
		case <-stopped:
			return nil, c.stopError()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// call sends cmd and returns its result. A read (history, presence) whose
// connection drops is sent again on the next one.
func (c *Client) call(ctx context.Context, cmd command) (json.RawMessage, error) {
	for {
		cn, err := c.waitConn(ctx)
		if err != nil {
			return nil, err
		}
		cmd.ID = c.nextID.Add(1)
		ch, ok := cn.ask(&cmd)
		if !ok {
			continue
		}
		select {
		case a := <-ch:
			if errors.Is(a.err, errDisconnected) {
				continue
			}
			if a.m.Error != nil {
				return nil, a.m.Error
			}
			return a.m.Result, nil
		case <-ctx.Done():
			cn.forget(cmd.ID)
			return nil, ctx.Err()
		}
	}
}

// History reads a channel's history (docs/protocol.md, "history"). It
// waits for a connection, within ctx.
func (c *Client) History(ctx context.Context, channel string, opts HistoryOptions) (HistoryResult, error) {
	cmd := command{Command: "history", Channel: channel, Since: opts.Since, Reverse: opts.Reverse}
	if opts.Limit != 0 {
		l := max(opts.Limit, 0)
		cmd.Limit = &l
	}
	raw, err := c.call(ctx, cmd)
	if err != nil {
		return HistoryResult{}, fmt.Errorf("client: history %s: %w", channel, err)
	}
	var res struct {
		Publications []struct {
			Data   json.RawMessage `json:"data"`
			Offset uint64          `json:"offset"`
		} `json:"publications"`
		Offset uint64 `json:"offset"`
		Epoch  string `json:"epoch"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return HistoryResult{}, fmt.Errorf("client: history %s: %w", channel, err)
	}
	out := HistoryResult{Position: Position{res.Offset, res.Epoch}, Publications: make([]Publication, 0, len(res.Publications))}
	for _, p := range res.Publications {
		out.Publications = append(out.Publications, Publication{Channel: channel, Data: p.Data, Offset: p.Offset, Epoch: res.Epoch})
	}
	return out, nil
}

// Presence lists the connections subscribed to a channel. It waits for a
// connection, within ctx.
func (c *Client) Presence(ctx context.Context, channel string) (PresenceResult, error) {
	raw, err := c.call(ctx, command{Command: "presence", Channel: channel})
	if err != nil {
		return PresenceResult{}, fmt.Errorf("client: presence %s: %w", channel, err)
	}
	var res PresenceResult
	if err := json.Unmarshal(raw, &res); err != nil {
		return PresenceResult{}, fmt.Errorf("client: presence %s: %w", channel, err)
	}
	return res, nil
}

// scheduleRefreshLocked arms the token refresh of cn: a quarter of the
// token's remaining life before it expires, at most 30 s before. c.mu
// must be held.
func (c *Client) scheduleRefreshLocked(cn *conn) {
	if c.opts.GetToken == nil || c.info.Expires.IsZero() || c.cn != cn {
		return
	}
	ttl := time.Until(c.info.Expires)
	lead := min(ttl/4, 30*time.Second)
	c.refresh = time.AfterFunc(max(ttl-lead, 0), func() { c.refreshToken(cn) })
}

// refreshToken gets a new token and sends it with the refresh command on
// cn. A failure is retried after a second; if the token expires
// meanwhile, the server closes the connection with 4005 and the loop
// reconnects with a new token.
func (c *Client) refreshToken(cn *conn) {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.DialTimeout)
	defer cancel()
	retry := func(err error) {
		c.log.Warn("client: token refresh failed", "err", err)
		c.mu.Lock()
		if c.cn == cn {
			c.refresh = time.AfterFunc(time.Second, func() { c.refreshToken(cn) })
		}
		c.mu.Unlock()
	}
	token, err := c.opts.GetToken(ctx)
	if err != nil {
		retry(err)
		return
	}
	ch, ok := cn.ask(&command{ID: c.nextID.Add(1), Command: "refresh", Token: token})
	if !ok {
		return
	}
	var a answer
	select {
	case a = <-ch:
	case <-ctx.Done():
		retry(ctx.Err())
		return
	}
	if a.err != nil {
		return // the connection ended; the loop takes over
	}
	if a.m.Error != nil {
		retry(a.m.Error)
		return
	}
	var res struct {
		Expires int64 `json:"expires"`
	}
	_ = json.Unmarshal(a.m.Result, &res)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.token = token
	if c.cn != cn {
		return
	}
	c.info.Expires = time.Time{}
	if res.Expires > 0 {
		c.info.Expires = time.Unix(res.Expires, 0)
	}
	c.scheduleRefreshLocked(cn)
}
