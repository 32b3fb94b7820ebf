package hub

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
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
	// Ephemeral marks a short-lived session (one long poll): it is not shown
	// in presence, so polling clients do not join and leave on every poll.
	Ephemeral bool
}

// Session is one client connection's state in the engine.
type Session struct {
	hub       *Hub
	id        string
	transport Transport
	info      SessionInfo
	ip        string
	created   time.Time

	authed  atomic.Bool  // a valid connection token was presented
	expires atomic.Int64 // unix nanoseconds when the token expires; 0 never

	// Owned by HandleMessage's caller (the transport calls it for one
	// session from one goroutine at a time, in order):
	connected   bool    // the connect command succeeded
	bucket      float64 // rate limit tokens
	bucketAt    time.Time
	overLimitIn int // commands refused in a row by the rate limit

	userMu sync.Mutex // guards user and credentials
	user   string
	creds  *Credentials

	mu         sync.Mutex // guards the fields below
	subs       []*subscription
	queue      []Message
	spare      []Message   // the writer's last batch, reused while busy
	queueBytes int         // bytes of the bounded messages in queue
	queueLen   int         // number of bounded messages in queue
	forced     int         // bytes queued past the bounds since the writer last took the queue
	qbox       *[]Message  // the pool's box of queue's buffer, reused when it goes back
	lastWrite  int64       // nanotime of the writer's last write; owned by the writer
	lastGap    int64       // ns between the writer's last two writes; owned by the writer
	urgent     bool        // the queue holds a reply, which write_delay does not hold back
	holding    bool        // the writer is waiting out write_delay
	holdTimer  *time.Timer // the writer's, reused from one wait to the next
	wake       chan struct{}
	writing    bool // a writer goroutine is running
	closing    bool // no more messages are queued; the writer closes
	disconnect protocol.Disconnect
	finished   bool
}

// subscription is one session's membership of one channel.
type subscription struct {
	sess    *Session
	channel string
	// Guarded by sess.mu:
	pending bool      // subscribe in progress: publications are buffered
	buf     []Message // publications received while pending
	live    bool      // subscribe completed
	present bool      // the client is in the channel's presence
	epoch   string    // the channel's epoch the subscriber is in
	last    uint64    // offset of the last publication queued
}

// NewSession registers a new connection on the hub.
// A session over a connection limit, or during shutdown, is closed at once.
func (h *Hub) NewSession(t Transport, info SessionInfo) *Session {
	s := &Session{hub: h, id: h.newClientID(), transport: t, info: info, created: time.Now(), user: info.User}
	s.ip = info.RemoteAddr
	if host, _, err := net.SplitHostPort(info.RemoteAddr); err == nil {
		s.ip = host
	}
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

// User returns the session's user id (empty when anonymous).
func (s *Session) User() string {
	s.userMu.Lock()
	defer s.userMu.Unlock()
	return s.user
}

// allow takes a token from the session's rate-limit bucket.
func (s *Session) allow() bool {
	rate := s.hub.cfg.CommandRate
	if rate <= 0 {
		return true
	}
	now := time.Now()
	s.bucket = min(float64(s.hub.cfg.CommandBurst), s.bucket+now.Sub(s.bucketAt).Seconds()*rate)
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

// ID returns the session's client id, unique across nodes.
func (s *Session) ID() string { return s.id }

// HandleMessage handles one message (a protocol command) from the client,
// queueing its reply.
func (s *Session) HandleMessage(ctx context.Context, frame []byte) {
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
	cmd, err := protocol.DecodeCommand(frame)
	if err != nil {
		var de *protocol.DecodeError
		if errors.As(err, &de) {
			s.replyError(de.ID, de.HasID, de.Err)
		} else {
			s.replyError(0, false, protocol.ErrBadRequest)
		}
		return
	}
	result, perr := s.dispatch(ctx, &cmd)
	if perr != nil {
		s.replyError(cmd.ID, cmd.HasID, perr)
		return
	}
	switch {
	case cmd.HasID:
		s.enqueue(Message{Data: protocol.AppendResult(nil, cmd.ID, result)})
	case cmd.Command == protocol.CmdPing:
		s.enqueue(Message{Data: []byte(`{"pong":{}}`)})
	}
}

// dispatch runs a decoded command, returning the JSON result object.
func (s *Session) dispatch(ctx context.Context, cmd *protocol.Command) ([]byte, *protocol.Error) {
	switch cmd.Command {
	case protocol.CmdConnect:
		return s.connect(ctx, cmd)
	case protocol.CmdRefresh:
		return s.refresh(cmd)
	case protocol.CmdPing:
		return nil, nil
	}
	if s.hub.cfg.RequireAuth && !s.authed.Load() {
		return nil, protocol.ErrUnauthorized.WithMessage(`send {"command":"connect","token":...} first`)
	}
	switch cmd.Command {
	case protocol.CmdSubscribe:
		return s.subscribe(ctx, cmd)
	case protocol.CmdUnsubscribe:
		return s.unsubscribe(cmd)
	case protocol.CmdPublish:
		return s.publish(ctx, cmd)
	case protocol.CmdHistory:
		return s.history(ctx, cmd)
	case protocol.CmdPresence:
		return s.presence(ctx, cmd)
	case protocol.CmdPresenceStats:
		return s.presenceStats(ctx, cmd)
	default:
		return nil, protocol.ErrUnknownCommand.WithMessage("unknown command %q", cmd.Command)
	}
}

// connect authenticates the session (with a token in the command, or the
// credentials its transport verified), subscribes the channels the token
// names, and describes the session.
func (s *Session) connect(ctx context.Context, cmd *protocol.Command) ([]byte, *protocol.Error) {
	if s.connected {
		return nil, protocol.ErrBadRequest.WithMessage("already connected")
	}
	if cmd.Token != "" {
		c, perr := s.hub.Authenticate(cmd.Token)
		if perr != nil {
			if s.hub.cfg.RequireAuth || perr.Code == protocol.ErrTokenExpired.Code {
				s.failConnect(cmd, perr)
				return nil, errReplied
			}
			return nil, perr
		}
		s.userMu.Lock()
		prev := s.creds
		s.userMu.Unlock()
		if prev != nil && prev.User != c.User {
			return nil, protocol.ErrPermissionDenied.WithMessage("the token is for another user than the connection's")
		}
		s.setCredentials(c)
	} else if s.hub.cfg.RequireAuth && !s.authed.Load() {
		s.failConnect(cmd, protocol.ErrUnauthorized.WithMessage("a connection token is required"))
		return nil, errReplied
	}
	s.connected = true
	type subPos struct {
		Channel string `json:"channel"`
		Offset  uint64 `json:"offset"`
		Epoch   string `json:"epoch"`
	}
	res := struct {
		Client        string          `json:"client"`
		Node          string          `json:"node"`
		Version       string          `json:"version"`
		User          string          `json:"user,omitempty"`
		Expires       int64           `json:"expires,omitempty"`
		Subscriptions []subPos        `json:"subscriptions,omitempty"`
		Info          json.RawMessage `json:"info,omitempty"`
	}{Client: s.id, Node: s.hub.cfg.NodeID, Version: s.hub.cfg.Version, User: s.User()}
	s.userMu.Lock()
	creds := s.creds
	s.userMu.Unlock()
	if creds != nil {
		res.Info = creds.Info
		if !creds.Expires.IsZero() {
			res.Expires = creds.Expires.Unix()
		}
		// Server-side subscriptions: the token grants them, so no
		// permission check but the channel's validity.
		for _, ch := range creds.Channels {
			r, perr := s.Subscribe(ctx, ch, nil, nil)
			if perr != nil && perr.Code != protocol.ErrAlreadySubscribed.Code {
				return nil, perr.WithMessage("server-side subscription to %q: %s", ch, perr.Message)
			}
			res.Subscriptions = append(res.Subscriptions, subPos{ch, r.Position.Offset, r.Position.Epoch})
		}
	}
	return mustJSON(res), nil
}

// failConnect answers a failed connect and closes the connection: 4005 for
// an expired token (reconnect with a new one), 4502 otherwise.
func (s *Session) failConnect(cmd *protocol.Command, perr *protocol.Error) {
	s.replyError(cmd.ID, cmd.HasID, perr)
	if perr.Code == protocol.ErrTokenExpired.Code {
		s.Close(protocol.DisconnectTokenExpired)
		return
	}
	s.Close(protocol.DisconnectUnauthorized)
}

// refresh replaces the connection's token with a newer one of the same
// user, pushing its expiry back.
func (s *Session) refresh(cmd *protocol.Command) ([]byte, *protocol.Error) {
	if cmd.Token == "" {
		return nil, protocol.ErrBadRequest.WithMessage(`missing "token"`)
	}
	c, perr := s.hub.Authenticate(cmd.Token)
	if perr != nil {
		return nil, perr
	}
	if !s.authed.Load() || s.User() != c.User {
		return nil, protocol.ErrPermissionDenied.WithMessage("refresh needs a token of the connection's user")
	}
	c.Channels = nil // server-side subscriptions are made once, at connect
	s.setCredentials(c)
	var exp int64
	if !c.Expires.IsZero() {
		exp = c.Expires.Unix()
	}
	return mustJSON(struct {
		Expires int64 `json:"expires,omitempty"`
	}{exp}), nil
}

// canSubscribe checks the namespace's subscribe rule and the channel's user
// list for this session.
func (s *Session) canSubscribe(channel, token string) *protocol.Error {
	return s.hub.CanSubscribe(channel, s.User(), token)
}

// CanSubscribe checks whether a client with the given user id (empty when
// anonymous) may subscribe to channel: the namespace's subscribe rule and
// the channel's user list; token is a subscription token, for namespaces
// that need one. The subscribe command checks it itself; transports that
// subscribe with Session.Subscribe (which checks nothing) call it first.
func (h *Hub) CanSubscribe(channel, user, token string) *protocol.Error {
	ns, perr := h.namespace(channel)
	if perr != nil {
		return perr
	}
	if !auth.UserAllowed(channel, user) {
		return protocol.ErrPermissionDenied.WithMessage("%q is limited to its listed users", channel)
	}
	switch ns.Subscribe {
	case auth.SubscribeAuthenticated:
		if user == "" {
			return protocol.ErrPermissionDenied.WithMessage("%q needs an authenticated user", channel)
		}
	case auth.SubscribeToken:
		if token == "" {
			return protocol.ErrPermissionDenied.WithMessage("%q needs a subscription token", channel)
		}
		if _, err := h.cfg.Verifier.Subscribe(token, channel, user); err != nil {
			if errors.Is(err, auth.ErrTokenExpired) {
				return protocol.ErrTokenExpired.WithMessage("subscription token expired")
			}
			return protocol.ErrPermissionDenied.WithMessage("subscription token refused")
		}
	}
	return nil
}

// canRead checks access to a channel's history and presence: what may
// subscribe may read; in token namespaces, only current subscribers.
func (s *Session) canRead(channel string) *protocol.Error {
	ns, perr := s.hub.namespace(channel)
	if perr != nil {
		return perr
	}
	if ns.Subscribe == auth.SubscribeToken {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, sub := range s.subs {
			if sub.channel == channel && sub.live {
				return nil
			}
		}
		return protocol.ErrPermissionDenied.WithMessage("subscribe to %q first", channel)
	}
	return s.canSubscribe(channel, "")
}

func (s *Session) subscribe(ctx context.Context, cmd *protocol.Command) ([]byte, *protocol.Error) {
	if perr := s.canSubscribe(cmd.Channel, cmd.Token); perr != nil {
		return nil, perr
	}
	var since *broker.Position
	if cmd.Since != nil {
		since = &broker.Position{Offset: cmd.Since.Offset, Epoch: cmd.Since.Epoch}
	}
	perr := s.subscribeChannel(ctx, cmd.Channel, since, func(res *SubscribeResult) {
		if !cmd.HasID {
			return
		}
		reply := subscribeReply{Channel: cmd.Channel, Offset: res.Position.Offset, Epoch: res.Position.Epoch}
		if since != nil {
			reply.Recovered = &res.Recovered
			reply.Publications = make([]json.RawMessage, 0, len(res.Publications))
			for _, p := range res.Publications {
				reply.Publications = append(reply.Publications, protocol.AppendPublication(nil, cmd.Channel, p.Data, p.Offset))
			}
		}
		// The reply carries the recovered publications: it may exceed the
		// queue's bounds, which apply to live traffic.
		s.enqueueForcedLocked(Message{Data: protocol.AppendResult(nil, cmd.ID, mustJSON(reply))})
	})
	if perr != nil {
		return nil, perr
	}
	// The reply is already queued; tell HandleMessage not to queue another.
	return nil, errReplied
}

// subscribeReply is the result of the subscribe command.
type subscribeReply struct {
	Channel      string            `json:"channel"`
	Offset       uint64            `json:"offset"`
	Epoch        string            `json:"epoch"`
	Recovered    *bool             `json:"recovered,omitempty"`
	Publications []json.RawMessage `json:"publications,omitempty"`
}

// SubscribeResult is the outcome of a subscription.
type SubscribeResult struct {
	// Position is the channel's position when the subscription went live:
	// every publication after it is delivered live.
	Position broker.Position
	// Recovered reports, when a since position was given, whether every
	// publication after it was recovered from history.
	Recovered bool
	// Publications are the recovered publications, after since up to
	// Position, in offset order (empty unless Recovered).
	Publications []broker.Publication
}

// Subscribe subscribes the session to channel for a transport that has no
// command replies (SSE, long polling): recovered publications (after since,
// when given) are queued as ordinary pushes, followed by live ones, with no
// gap and no duplicate. first, when not nil, is called once the outcome is
// known and returns messages to queue before anything else of the channel
// (such as a notice that the position could not be recovered); it runs
// under the session's lock and must not call back into the session.
func (s *Session) Subscribe(ctx context.Context, channel string, since *broker.Position, first func(SubscribeResult) []Message) (SubscribeResult, *protocol.Error) {
	var out SubscribeResult
	perr := s.subscribeChannel(ctx, channel, since, func(res *SubscribeResult) {
		out = *res
		if first != nil {
			for _, m := range first(*res) {
				s.enqueueForcedLocked(m)
			}
		}
		for _, p := range res.Publications {
			s.enqueueForcedLocked(pubMessage(channel, p))
		}
	})
	return out, perr
}

// subscribeChannel is the one subscribe path. It registers a pending
// subscription (so publications from now on are buffered), reads history
// since the client's position (or only the position), lets emit queue what
// the client must see first (under s.mu), then releases the buffered
// publications that come after what emit covered, and goes live.
func (s *Session) subscribeChannel(ctx context.Context, channel string, since *broker.Position, emit func(*SubscribeResult)) *protocol.Error {
	if perr := protocol.ValidateChannel(channel); perr != nil {
		return perr
	}
	sub := &subscription{sess: s, channel: channel, pending: true}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return protocol.ErrUnavailable.WithMessage("connection is closing")
	}
	for _, have := range s.subs {
		if have.channel == channel {
			s.mu.Unlock()
			return protocol.ErrAlreadySubscribed.WithMessage("already subscribed to %q", channel)
		}
	}
	if len(s.subs) >= s.hub.cfg.MaxChannelsPerConnection {
		s.mu.Unlock()
		return protocol.ErrLimitExceeded.WithMessage("at most %d channels per connection", s.hub.cfg.MaxChannelsPerConnection)
	}
	s.subs = append(s.subs, sub)
	s.mu.Unlock()

	fail := func(perr *protocol.Error) *protocol.Error {
		s.dropSubscription(sub)
		s.hub.removeSubscription(sub)
		return perr
	}
	if err := s.hub.addSubscription(ctx, sub); err != nil {
		s.hub.log.Warn("subscribe failed", "channel", channel, "err", err)
		return fail(protocol.ErrUnavailable.WithMessage("cannot subscribe now, retry"))
	}
	s.mu.Lock()
	gone := s.finished
	s.mu.Unlock()
	if gone { // the session ended while we subscribed: undo
		s.hub.removeSubscription(sub)
		return protocol.ErrUnavailable.WithMessage("connection closed")
	}
	if ns, _ := s.hub.cfg.Rules.Lookup(channel); !ns.Recovery && since != nil {
		since = &broker.Position{Offset: since.Offset, Epoch: "recovery-off"}
	}
	res, err := s.hub.recover(ctx, channel, since)
	if err != nil {
		s.hub.log.Warn("read history failed", "channel", channel, "err", err)
		return fail(protocol.ErrUnavailable.WithMessage("cannot subscribe now, retry"))
	}

	s.mu.Lock()
	emit(&res)
	sub.epoch, sub.last = res.Position.Epoch, res.Position.Offset
	for _, m := range sub.buf {
		s.deliverLiveLocked(sub, m, m.Epoch)
	}
	sub.pending, sub.buf, sub.live = false, nil, true
	sub.present = !s.info.Ephemeral
	s.mu.Unlock()
	if !s.info.Ephemeral {
		s.hub.joined(ctx, channel, s.clientInfo())
	}
	return nil
}

// recover reads what a subscriber needs: the channel's position and, with a
// since position, the publications after it when history still holds all
// of them.
func (h *Hub) recover(ctx context.Context, channel string, since *broker.Position) (SubscribeResult, error) {
	if since == nil {
		r, err := h.broker.History(ctx, channel, broker.HistoryQuery{})
		return SubscribeResult{Position: r.Position}, err
	}
	r, err := h.broker.History(ctx, channel, broker.HistoryQuery{Since: since, Limit: -1})
	if errors.Is(err, broker.ErrEpochMismatch) {
		err = nil
		if r.Position.Epoch == "" { // the broker did not say where the channel is
			r, err = h.broker.History(ctx, channel, broker.HistoryQuery{})
		}
		h.metrics.Recoveries.WithLabelValues("false").Inc()
		return SubscribeResult{Position: r.Position}, err
	}
	if err != nil {
		return SubscribeResult{}, err
	}
	res := SubscribeResult{Position: r.Position}
	switch {
	case since.Offset == r.Position.Offset:
		res.Recovered = true // nothing was missed
	case since.Offset < r.Position.Offset && len(r.Publications) > 0 && r.Publications[0].Offset == since.Offset+1:
		res.Recovered = true
		res.Publications = r.Publications
	}
	h.metrics.Recoveries.WithLabelValues(strconv.FormatBool(res.Recovered)).Inc()
	return res, nil
}

// clientInfo describes the session in presence.
func (s *Session) clientInfo() broker.ClientInfo {
	return broker.ClientInfo{Client: s.id, User: s.User(), Transport: s.transport.Name()}
}

func (s *Session) history(ctx context.Context, cmd *protocol.Command) ([]byte, *protocol.Error) {
	if perr := s.canRead(cmd.Channel); perr != nil {
		return nil, perr
	}
	limit := s.hub.cfg.HistoryMaxLimit
	if cmd.Limit != nil {
		limit = *cmd.Limit
	}
	var since *broker.Position
	if cmd.Since != nil {
		since = &broker.Position{Offset: cmd.Since.Offset, Epoch: cmd.Since.Epoch}
	}
	r, err := s.hub.History(ctx, cmd.Channel, since, limit, cmd.Reverse)
	if err != nil {
		return nil, s.clientError(err)
	}
	out := HistoryJSON(cmd.Channel, r)
	if len(out) > s.hub.cfg.QueueMaxBytes/2 {
		return nil, protocol.ErrTooLarge.WithMessage("history result of %d bytes is over this connection's limit: ask for fewer publications", len(out))
	}
	return out, nil
}

// HistoryJSON encodes a history result as the protocol's history result:
// {"publications":[pushes],"offset":N,"epoch":E}.
func HistoryJSON(channel string, r broker.HistoryResult) []byte {
	out := historyReply{Offset: r.Position.Offset, Epoch: r.Position.Epoch, Publications: make([]json.RawMessage, 0, len(r.Publications))}
	for _, p := range r.Publications {
		out.Publications = append(out.Publications, protocol.AppendPublication(nil, channel, p.Data, p.Offset))
	}
	return mustJSON(out)
}

type historyReply struct {
	Publications []json.RawMessage `json:"publications"`
	Offset       uint64            `json:"offset"`
	Epoch        string            `json:"epoch"`
}

func (s *Session) presence(ctx context.Context, cmd *protocol.Command) ([]byte, *protocol.Error) {
	if perr := s.canRead(cmd.Channel); perr != nil {
		return nil, perr
	}
	list, err := s.hub.Presence(ctx, cmd.Channel)
	if err != nil {
		return nil, s.clientError(err)
	}
	return PresenceJSON(list), nil
}

// PresenceJSON encodes a presence list as the protocol's presence result:
// {"clients":[...],"num_clients":N,"num_users":M}.
func PresenceJSON(list []broker.ClientInfo) []byte {
	users := map[string]bool{}
	for _, c := range list {
		if c.User != "" {
			users[c.User] = true
		}
	}
	if list == nil {
		list = []broker.ClientInfo{}
	}
	return mustJSON(struct {
		Clients []broker.ClientInfo `json:"clients"`
		broker.PresenceStats
	}{list, broker.PresenceStats{Clients: len(list), Users: len(users)}})
}

func (s *Session) presenceStats(ctx context.Context, cmd *protocol.Command) ([]byte, *protocol.Error) {
	if perr := s.canRead(cmd.Channel); perr != nil {
		return nil, perr
	}
	st, err := s.hub.PresenceStats(ctx, cmd.Channel)
	if err != nil {
		return nil, s.clientError(err)
	}
	return mustJSON(st), nil
}

// clientError turns an error from a hub method into what the client sees:
// protocol errors as they are, anything else as "unavailable".
func (s *Session) clientError(err error) *protocol.Error {
	var perr *protocol.Error
	if errors.As(err, &perr) {
		return perr
	}
	s.hub.log.Warn("command failed", "client", s.id, "err", err)
	return protocol.ErrUnavailable.WithMessage("temporarily unavailable, retry")
}

// errReplied is an internal marker: the command queued its own reply.
var errReplied = &protocol.Error{Code: -1}

func (s *Session) unsubscribe(cmd *protocol.Command) ([]byte, *protocol.Error) {
	if perr := protocol.ValidateChannel(cmd.Channel); perr != nil {
		return nil, perr
	}
	s.mu.Lock()
	var sub *subscription
	for _, have := range s.subs {
		if have.channel == cmd.Channel {
			sub = have
		}
	}
	s.mu.Unlock()
	if sub == nil {
		return nil, protocol.ErrNotSubscribed.WithMessage("not subscribed to %q", cmd.Channel)
	}
	s.dropSubscription(sub)
	s.hub.removeSubscription(sub)
	s.mu.Lock()
	present := sub.present
	s.mu.Unlock()
	if present {
		s.hub.left(sub.channel, s.clientInfo())
	}
	return nil, nil
}

func (s *Session) publish(ctx context.Context, cmd *protocol.Command) ([]byte, *protocol.Error) {
	if perr := s.hub.CanPublish(cmd.Channel, s.User()); perr != nil {
		return nil, perr
	}
	if cmd.Data == nil {
		return nil, protocol.ErrBadRequest.WithMessage(`missing "data"`)
	}
	pos, err := s.hub.Publish(ctx, cmd.Channel, cmd.Data, "client")
	if err != nil {
		s.hub.log.Warn("client publish failed", "channel", cmd.Channel, "err", err)
		return nil, protocol.ErrUnavailable.WithMessage("cannot publish now, retry")
	}
	if !cmd.HasID {
		return nil, nil
	}
	return append(strconv.AppendUint([]byte(`{"offset":`), pos.Offset, 10), '}'), nil
}

// dropSubscription removes sub from the session's list.
func (s *Session) dropSubscription(sub *subscription) {
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

// presentChannels lists the channels where the session is in presence.
func (s *Session) presentChannels() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, sub := range s.subs {
		if sub.present {
			out = append(out, sub.channel)
		}
	}
	return out
}

// takeSubscriptions empties the session's list and returns what it held.
func (s *Session) takeSubscriptions() []*subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	subs := s.subs
	s.subs = nil
	return subs
}

func (s *Session) replyError(id int64, hasID bool, perr *protocol.Error) {
	if perr == errReplied {
		return
	}
	s.hub.metrics.Error(perr.Code)
	s.enqueue(Message{Data: protocol.AppendError(nil, id, hasID, perr)})
}

// deliver queues a publication for sub, or buffers it while sub's subscribe
// is in progress. Called with the channel's shard read-locked.
func (s *Session) deliver(sub *subscription, m Message, epoch string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sub.pending {
		if m.Offset != 0 { // events (join, leave) during a subscribe are dropped
			m.Epoch = epoch
			sub.buf = append(sub.buf, m)
		}
		return
	}
	s.deliverLiveLocked(sub, m, epoch)
}

// deliverLiveLocked queues a publication for a live subscription, once and
// in order. A remote broker may deliver a publication after the position
// the subscription started from already covered it (history is written
// before the live copy travels), so anything at or below the last offset
// queued is dropped. A publication of another epoch means the channel's
// history was lost: the subscriber gets a reset push first. s.mu must be
// held.
func (s *Session) deliverLiveLocked(sub *subscription, m Message, epoch string) {
	if m.Offset == 0 { // an event
		s.enqueueLocked(m)
		return
	}
	if epoch != "" && sub.epoch != "" && epoch != sub.epoch {
		s.hub.metrics.Resets.Inc()
		reset := protocol.AppendPushEvent(nil, sub.channel, "reset", mustJSON(struct {
			Offset uint64 `json:"offset"`
			Epoch  string `json:"epoch"`
		}{m.Offset - 1, epoch}))
		s.enqueueLocked(Message{Data: reset, Channel: sub.channel, Epoch: epoch})
		sub.epoch, sub.last = epoch, m.Offset-1
	}
	if m.Offset <= sub.last {
		return
	}
	sub.last = m.Offset
	s.enqueueLocked(m)
}

func (s *Session) enqueue(m Message) {
	s.mu.Lock()
	s.enqueueLocked(m)
	s.mu.Unlock()
}

// EnqueueControl queues bytes the transport prepared (a ping, a pong) to be
// written in order with the session's messages. It is dropped when the
// session is closing.
func (s *Session) EnqueueControl(frame []byte) {
	s.enqueue(Message{Data: frame, Control: true})
}

// enqueueLocked adds m to the outbound queue, starting the writer if it is
// not running. A queue over its bounds closes the session as a slow
// consumer. s.mu must be held.
func (s *Session) enqueueLocked(m Message) {
	if s.closing {
		return
	}
	if s.queueLen >= s.hub.cfg.QueueMaxMessages || s.queueBytes+len(m.Data) > s.hub.cfg.QueueMaxBytes {
		s.overflowLocked()
		return
	}
	if s.queue == nil {
		s.qbox = queuePool.Get().(*[]Message)
		s.queue = (*s.qbox)[:0]
	}
	s.queue = append(s.queue, m)
	s.queueBytes += len(m.Data)
	s.queueLen++
	switch {
	case m.At == 0 && !m.Control:
		s.urgent = true
		s.wakeLocked()
	case 2*s.queueLen >= s.hub.cfg.QueueMaxMessages || 2*s.queueBytes >= s.hub.cfg.QueueMaxBytes:
		s.wakeLocked() // waiting out write_delay must not make a reader look slow
	}
	s.startWriterLocked()
}

// queuePool recycles the outbound queues of sessions that went idle, so a
// burst does not allocate a new queue for every subscriber.
var queuePool = sync.Pool{New: func() any { q := make([]Message, 0, 16); return &q }}

// releaseQueueLocked gives the session's queue buffers back to the pool.
// s.mu must be held.
func (s *Session) releaseQueueLocked() {
	for _, q := range [][]Message{s.queue, s.spare} {
		if q == nil || cap(q) > 1024 {
			continue
		}
		clear(q[:cap(q)])
		if s.qbox == nil {
			s.qbox = new([]Message)
		}
		*s.qbox = q[:0]
		queuePool.Put(s.qbox)
		s.qbox = nil
	}
	s.queue, s.spare, s.qbox = nil, nil, nil
}

// forcedQueueFactor: what a session may queue past its bounds (a subscribe's
// recovered publications) is at most this many times QueueMaxBytes between
// two writes.
const forcedQueueFactor = 16

// enqueueForcedLocked queues m outside the queue's bounds: recovered
// publications, which are bounded by the channel's history, must not make a
// client that reads at full speed look slow, or it could never recover. They
// are capped by forcedQueueFactor × QueueMaxBytes so a client that does not
// read cannot pile them up. s.mu must be held.
func (s *Session) enqueueForcedLocked(m Message) {
	if s.closing {
		return
	}
	if s.forced+len(m.Data) > forcedQueueFactor*s.hub.cfg.QueueMaxBytes {
		s.overflowLocked()
		return
	}
	s.queue = append(s.queue, m)
	s.forced += len(m.Data)
	s.startWriterLocked()
}

// overflowLocked drops the queue and closes the session as a slow consumer.
func (s *Session) overflowLocked() {
	s.hub.metrics.QueueOverflows.Inc()
	s.queue, s.queueBytes, s.queueLen, s.forced = nil, 0, 0, 0
	s.closeLocked(protocol.DisconnectSlowConsumer)
}

func (s *Session) startWriterLocked() {
	if !s.writing {
		s.writing = true
		go s.writeLoop()
	}
}

// Close closes the session from the server side: what is already queued is
// written, then the transport closes the connection with d. It is
// idempotent; the first reason wins.
func (s *Session) Close(d protocol.Disconnect) {
	s.mu.Lock()
	s.closeLocked(d)
	s.mu.Unlock()
}

func (s *Session) closeLocked(d protocol.Disconnect) {
	if s.closing {
		return
	}
	s.closing = true
	s.disconnect = d
	s.hub.metrics.Disconnect(d.Code)
	s.wakeLocked()
	s.startWriterLocked()
}

// PeerGone tells the session its connection was closed by the peer or
// failed; nothing more is written and the session is removed.
func (s *Session) PeerGone() {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		s.disconnect = protocol.DisconnectNormal
		s.queue, s.queueBytes, s.queueLen, s.forced = nil, 0, 0, 0
		s.wakeLocked()
		s.startWriterLocked()
	}
	s.mu.Unlock()
}

// writeLoop drains the queue in batches until it is empty, then exits, so an
// idle session has no goroutine. When the session is closing it closes the
// transport and unregisters the session.
func (s *Session) writeLoop() {
	m := s.hub.metrics
	for {
		s.holdBack()
		s.mu.Lock()
		if len(s.queue) == 0 {
			if s.closing && !s.finished {
				s.finished = true
				d := s.disconnect
				s.spare = nil
				s.mu.Unlock()
				_ = s.transport.Close(d)
				s.hub.unregister(s)
				return
			}
			s.writing = false
			s.releaseQueueLocked() // an idle session keeps no buffer
			s.mu.Unlock()
			return
		}
		batch := s.queue
		s.queue, s.spare = s.spare, nil
		s.queueBytes, s.queueLen, s.forced = 0, 0, 0
		s.urgent = false
		s.mu.Unlock()

		err := s.transport.WriteMessages(batch)
		now := nanotime()
		if s.lastWrite != 0 {
			s.lastGap = now - s.lastWrite
		}
		s.lastWrite = now
		var n, bytes int
		for i := range batch {
			if !batch[i].Control {
				n++
				bytes += len(batch[i].Data)
				if at := batch[i].At; at != 0 {
					m.DeliveryLatency.Observe(float64(now-at) / 1e9)
				}
			}
		}
		m.MessagesSent.Add(float64(n))
		m.BytesSent.Add(float64(bytes))
		m.SocketWrites.Inc()
		clear(batch)

		s.mu.Lock()
		s.spare = batch[:0]
		if err != nil {
			s.queue, s.queueBytes, s.queueLen, s.forced = nil, 0, 0, 0
			if !s.closing {
				s.closing = true
				s.disconnect = protocol.DisconnectWriteTimeout
				if !errors.Is(err, ErrTransportClosed) {
					s.hub.metrics.Disconnect(s.disconnect.Code)
				}
			}
		}
		s.mu.Unlock()
	}
}

// wakeLocked ends the writer's wait for write_delay, if it is waiting: a
// reply or a close must not wait. s.mu must be held.
func (s *Session) wakeLocked() {
	if s.holding {
		s.holding = false
		s.wake <- struct{}{} // room for one; only holdBack receives
	}
}

// holdBack delays the next write of a busy connection: when the previous
// write was less than WriteDelay ago, and the one before it came soon
// before that, the writer waits out the rest, so that what arrives meanwhile goes out in the
// same write. A connection written to less often is never delayed. The
// delay in force is 0 while the node is quiet (WriteDelayMinRate). Called
// by the writer.
func (s *Session) holdBack() {
	wait := holdFor(time.Duration(s.hub.holdDelay.Load()), s.lastWrite, s.lastGap, nanotime())
	if wait <= 0 {
		return
	}
	s.mu.Lock()
	if s.closing || s.urgent { // replies are never held back
		s.mu.Unlock()
		return
	}
	if s.wake == nil {
		s.wake = make(chan struct{}, 1)
	}
	s.holding = true
	s.mu.Unlock()
	if s.holdTimer == nil {
		s.holdTimer = time.NewTimer(wait)
	} else {
		s.holdTimer.Reset(wait) // stopped or fired: no stale tick since Go 1.23
	}
	select {
	case <-s.holdTimer.C:
	case <-s.wake: // a reply was queued
	}
	s.holdTimer.Stop()
	s.mu.Lock()
	if !s.holding { // woken, or a wake-up raced the timer: drain it
		select {
		case <-s.wake:
		default:
		}
	}
	s.holding = false
	s.mu.Unlock()
}

// holdFor is how long a writer waits before its next write, with delay d
// in force, its last write at lastWrite, the gap before that lastGap, and
// the time now (all nanotime). Only a stream waits: a connection whose
// last two writes were also close (within 2d, as a held write comes d
// after the one before it). One that gets a message now and then would
// wait for nothing to share its write with.
func holdFor(d time.Duration, lastWrite, lastGap, now int64) time.Duration {
	if d <= 0 || lastWrite == 0 || lastGap > 2*int64(d) {
		return 0
	}
	return max(time.Duration(lastWrite+int64(d)-now), 0)
}

// ErrTransportClosed may be returned by Transport.WriteMessages when the
// connection is already closed; the session then closes without counting a
// server-side disconnect.
var ErrTransportClosed = errors.New("hub: transport closed")

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only fixed struct types are marshaled
	}
	return b
}

// randomID returns n random base32 characters (lower case).
func randomID(n int) string {
	b := make([]byte, (n*5+7)/8)
	_, _ = rand.Read(b)
	id := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)
	out := []byte(id[:n])
	for i, c := range out {
		if c >= 'A' && c <= 'Z' {
			out[i] = c + 'a' - 'A'
		}
	}
	return string(out)
}

// nanotime returns a monotonic clock reading in nanoseconds.
func nanotime() int64 { return time.Since(epoch).Nanoseconds() }

var epoch = time.Now()
