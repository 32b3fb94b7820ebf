package hub

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// Transport is what a session writes to: one client connection. It is
// implemented by each transport package (WebSocket, SSE, ...). The hub calls
// WriteMessages and Close from one goroutine at a time (the session's
// writer), never concurrently.
type Transport interface {
	// Name is the transport's name in metrics and the server API.
	Name() string
	// WriteMessages writes msgs to the peer in order, each as one message,
	// coalescing them into as few socket writes as it can. It must not block
	// longer than the transport's write timeout.
	WriteMessages(msgs []Message) error
	// Close tells the peer why it is being closed, if the transport can, and
	// closes the connection. Further reads on it fail.
	Close(d protocol.Disconnect) error
}

// DirectWriter is implemented by a Transport that can write without
// blocking. For such a connection, the goroutine that queues a message
// while the connection is idle (the fan-out, a command's reply) writes it
// at once, and a writer goroutine starts only when the socket could not
// take it all or more is queued meanwhile: one publication to many idle
// subscribers costs a system call each, not a goroutine each.
type DirectWriter interface {
	// CanWriteDirect reports whether TryWriteMessages may be called; the
	// answer does not change over the connection's life.
	CanWriteDirect() bool
	// TryWriteMessages writes msgs as WriteMessages does, but never blocks.
	// owed reports that the socket could not take everything: the
	// transport keeps the rest and writes it first in the next
	// WriteMessages call, which the hub makes even with no message. It is
	// called only when no WriteMessages is in progress.
	TryWriteMessages(msgs []Message) (owed bool, err error)
}

// Message is one entry of an outbound queue.
type Message struct {
	// Data is a protocol message (a JSON object), shared between sessions and
	// never modified; or, when Control is set, bytes the transport prepared.
	Data []byte
	// At is when the publication reached this node (monotonic nanoseconds),
	// or 0 for replies. It feeds the delivery latency metric.
	At int64
	// Control marks bytes a transport queued for itself (such as a WebSocket
	// ping or pong frame) to be written as they are.
	Control bool
	// Channel and Offset identify a publication (Offset > 0) or a channel
	// event (Offset 0), for transports that track positions (SSE).
	Channel string
	Offset  uint64
	// Epoch is set on a reset push (the channel's history was lost and
	// offsets start again in this epoch), and on buffered publications.
	Epoch string
	// dp is the publication for delta subscribers (delta.go), nil when
	// the channel had none.
	dp *deltaPub
}

// SessionInfo describes a connection when it is opened.
type SessionInfo struct {
	// RemoteAddr is the client's address as the transport sees it
	// (host:port, or a bare IP for a client behind a trusted proxy);
	// connection limits per address use its host.
	RemoteAddr string
	// User is the authenticated user id, empty for anonymous clients. It is
	// overridden by Credentials.
	User string
	// Credentials, when not nil, come from a connection token the transport
	// verified with Hub.Authenticate.
	Credentials *Credentials
	// Headers are the allowlisted headers of the client's HTTP request
	// (Hub.PassHeaders), for the connect hook; nil when no connect hook is
	// configured. They are dropped once the client is connected.
	Headers map[string]string
	// Ephemeral marks a short-lived session (one long poll): it is not shown
	// in presence, so polling clients do not join and leave on every poll.
	Ephemeral bool
}

// Session is one client connection's state in the engine. Its parts have
// their own owners: the outbox (outbox.go) owns what is written to the
// client; each subscription (subscription.go) owns its channel state; the
// command path (dispatch.go, commands.go, subscribe.go) runs on the
// transport's reading goroutine; Session itself holds the identity, the
// subscription list and the commands in flight, which end when the
// connection closes.
type Session struct {
	hub       *Hub
	id        string
	transport Transport
	// Of the SessionInfo, only what is used later is kept: a session is
	// allocated per connection, and its size class is watched.
	remoteAddr string
	headers    map[string]string // for the connect hook, dropped once connected
	created    int64             // nanotime when the session was opened

	authed     atomic.Bool  // a valid connection token was presented
	reported   atomic.Bool  // the Lifecycle was told the session connected
	refreshing atomic.Bool  // the refresh hook is being called (refreshExpired)
	expires    atomic.Int64 // unix nanoseconds when the token expires; 0 never

	// Owned by HandleMessage's caller (the transport calls it for one
	// session from one goroutine at a time, in order). The fields are laid
	// out to keep the struct in a smaller allocation class.
	overLimitIn int32   // commands refused in a row by the rate limit
	connected   bool    // the connect command succeeded
	ephemeral   bool    // SessionInfo.Ephemeral: not shown in presence
	bucket      float64 // rate limit tokens
	bucketAt    int64   // nanotime of the last refill

	userMu sync.Mutex // guards user and creds
	user   string
	creds  *Credentials

	mu     sync.Mutex // guards subs, ended, closed and cmds
	ended  bool       // the session is gone: no subscription may be added
	closed bool       // the session began closing: commands are cancelled
	subs   []*subscription
	cmds   []*inflight // commands in flight, cancelled when the session closes

	out outbox
}

// NewSession registers a new connection on the hub.
// A session over a connection limit, or during shutdown, is closed at once.
func (h *Hub) NewSession(t Transport, info SessionInfo) *Session {
	s := &Session{hub: h, id: h.newClientID(), transport: t, remoteAddr: info.RemoteAddr, headers: info.Headers, ephemeral: info.Ephemeral, created: h.nanotime(), user: info.User}
	s.out.sess = s
	s.bucket, s.bucketAt = float64(h.cfg.CommandBurst), s.created
	if c := info.Credentials; c != nil {
		s.setCredentials(c)
	}
	ok := h.register(s)
	switch {
	case h.closing.Load(): // raced with Shutdown's snapshot of sessions
		s.Close(protocol.DisconnectShutdown)
	case !ok:
		s.Close(protocol.DisconnectConnectionLimit)
	}
	return s
}

// ip is the client's IP address: the host part of its remote address.
func (s *Session) ip() string {
	if host, _, err := net.SplitHostPort(s.remoteAddr); err == nil {
		return host
	}
	return s.remoteAddr
}

// ID returns the session's client id, unique across nodes.
func (s *Session) ID() string { return s.id }

// setCredentials makes c the session's identity.
func (s *Session) setCredentials(c *Credentials) {
	s.userMu.Lock()
	s.user, s.creds = c.User, c
	s.userMu.Unlock()
	var exp int64
	if !c.Expires.IsZero() {
		exp = c.Expires.UnixNano()
	}
	s.expires.Store(exp)
	s.authed.Store(true)
}

// credentials returns the session's verified credentials, nil when none.
func (s *Session) credentials() *Credentials {
	s.userMu.Lock()
	defer s.userMu.Unlock()
	return s.creds
}

// User returns the session's user id (empty when anonymous).
func (s *Session) User() string {
	s.userMu.Lock()
	defer s.userMu.Unlock()
	return s.user
}

// clientInfo describes the session in presence.
func (s *Session) clientInfo() broker.ClientInfo {
	return broker.ClientInfo{Client: s.id, User: s.User(), Transport: s.transport.Name()}
}

// allow takes a token from the session's rate-limit bucket.
func (s *Session) allow() bool {
	rate := s.hub.cfg.CommandRate
	if rate <= 0 {
		return true
	}
	now := s.hub.nanotime()
	s.bucket = min(float64(s.hub.cfg.CommandBurst), s.bucket+float64(now-s.bucketAt)/1e9*rate)
	s.bucketAt = now
	if s.bucket < 1 {
		return false
	}
	s.bucket--
	return true
}

// maxOverLimit is how many commands in a row may be refused by the rate
// limit before the connection is closed.
const maxOverLimit = 100

// HandleMessage handles one message (a JSON protocol command) from the
// client, queueing its reply. The transport calls it for one session from
// one goroutine at a time, in order. A command runs under the connection's
// lifetime context with the hub's CommandTimeout, so neither a closed
// connection nor a broker that does not answer keeps the caller.
func (s *Session) HandleMessage(frame []byte) { s.HandleFrame(frame, protocol.DecodeCommand) }

// HandleFrame is HandleMessage for a message in another encoding of the
// protocol: decode turns the frame into a command, failing with a
// *protocol.DecodeError. Replies are queued as JSON all the same; the
// transport re-encodes what it writes.
func (s *Session) HandleFrame(frame []byte, decode func([]byte) (protocol.Command, error)) {
	s.hub.metrics.MessagesReceived.Inc()
	s.hub.metrics.BytesReceived.Add(float64(len(frame)))
	if !s.allow() {
		s.overLimitIn++
		s.hub.metrics.RateLimited.Inc()
		if s.overLimitIn > maxOverLimit {
			s.Close(protocol.DisconnectTooManyRequests)
			return
		}
		s.replyError(0, false, protocol.ErrLimitExceeded.WithMessage("over %g commands per second", s.hub.cfg.CommandRate))
		return
	}
	s.overLimitIn = 0
	cmd, err := decode(frame)
	if err != nil {
		var de *protocol.DecodeError
		if errors.As(err, &de) {
			s.replyError(de.ID, de.HasID, de.Err)
		} else {
			s.replyError(0, false, protocol.ErrBadRequest)
		}
		return
	}
	result, perr := s.dispatch(&cmd)
	if perr != nil {
		s.replyError(cmd.ID, cmd.HasID, perr)
		return
	}
	switch {
	case cmd.HasID:
		s.out.push(Message{Data: protocol.AppendResult(nil, cmd.ID, result)})
	case cmd.Command == protocol.CmdPing:
		s.out.push(Message{Data: []byte(`{"pong":{}}`)})
	}
}

// errReplied is an internal marker: the command queued its own reply.
var errReplied = &protocol.Error{Code: -1}

func (s *Session) replyError(id int64, hasID bool, perr *protocol.Error) {
	if perr == errReplied {
		return
	}
	s.hub.metrics.Error(perr.Code)
	s.out.push(Message{Data: protocol.AppendError(nil, id, hasID, perr)})
}

// EnqueueControl queues bytes the transport prepared (a ping, a pong) to be
// written in order with the session's messages. It is dropped when the
// session is closing.
func (s *Session) EnqueueControl(frame []byte) {
	s.out.push(Message{Data: frame, Control: true})
}

// Close closes the session from the server side: what is already queued is
// written, then the transport closes the connection with d. It is
// idempotent; the first reason wins.
func (s *Session) Close(d protocol.Disconnect) { s.out.close(d) }

// PeerGone tells the session its connection was closed by the peer or
// failed; nothing more is written and the session is removed.
func (s *Session) PeerGone() { s.out.peerGone() }

// finish runs once, on the writer, after the transport is closed: the
// session leaves the registry and every channel.
func (s *Session) finish() {
	s.cancelCommands()
	s.leaveRooms()
	s.hub.unregister(s)
	s.reportDisconnected()
}

// inflight is a command in progress and how to stop it.
type inflight struct {
	cancel context.CancelFunc
}

// begin starts a command that may wait on the broker: its context ends
// when parent does, after the hub's CommandTimeout, or when the session
// closes, whichever comes first; end releases it. A session keeps a slot
// per command in flight rather than a context of its own: a context that
// commands derive from keeps a map of children and a channel alive for the
// whole connection, close to a kilobyte per idle client.
func (s *Session) begin(parent context.Context) (ctx context.Context, end func()) {
	ctx, cancel := context.WithTimeout(parent, s.hub.cfg.CommandTimeout)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel()
		return ctx, cancel
	}
	c := &inflight{cancel}
	s.cmds = append(s.cmds, c)
	s.mu.Unlock()
	return ctx, func() {
		s.mu.Lock()
		for i := range s.cmds {
			if s.cmds[i] == c {
				s.cmds = slices.Delete(s.cmds, i, i+1) // zeroes the freed slot
				break
			}
		}
		s.mu.Unlock()
		cancel()
	}
}

// cancelCommands ends every command in flight, and any begun later. It is
// called when the session begins closing.
func (s *Session) cancelCommands() {
	s.mu.Lock()
	cmds := s.cmds
	s.cmds, s.closed = nil, true
	s.mu.Unlock()
	for _, c := range cmds {
		c.cancel()
	}
}

// isClosed reports whether the session began closing.
func (s *Session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// addSub adds sub to the session's list, unless the session is closing, is
// already subscribed to the channel, or is at its channel limit.
func (s *Session) addSub(sub *subscription) *protocol.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.closed {
		return protocol.ErrUnavailable.WithMessage("connection is closing")
	}
	for _, have := range s.subs {
		if have.channel == sub.channel {
			return protocol.ErrAlreadySubscribed.WithMessage("already subscribed to %q", sub.channel)
		}
	}
	if len(s.subs) >= s.hub.cfg.MaxChannelsPerConnection {
		return protocol.ErrLimitExceeded.WithMessage("at most %d channels per connection", s.hub.cfg.MaxChannelsPerConnection)
	}
	s.subs = append(s.subs, sub)
	return nil
}

// findSub returns the session's subscription to channel, or nil.
func (s *Session) findSub(channel string) *subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, have := range s.subs {
		if have.channel == channel {
			return have
		}
	}
	return nil
}

// removeSub removes sub from the session's list.
func (s *Session) removeSub(sub *subscription) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, have := range s.subs {
		if have == sub {
			s.subs = append(s.subs[:i], s.subs[i+1:]...)
			break
		}
	}
	if len(s.subs) == 0 {
		s.subs = nil
	}
}

// appendSubs appends the session's subscriptions to dst.
func (s *Session) appendSubs(dst []*subscription) []*subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append(dst, s.subs...)
}

// takeSubs ends the list: it returns what it held, and no subscription can
// be added after it.
func (s *Session) takeSubs() []*subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	subs := s.subs
	s.subs, s.ended = nil, true
	return subs
}
