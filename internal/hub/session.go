package hub

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"time"

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
}

// SessionInfo describes a connection when it is opened.
type SessionInfo struct {
	// RemoteAddr is the client's address as the transport sees it.
	RemoteAddr string
}

// Session is one client connection's state in the engine.
type Session struct {
	hub       *Hub
	id        string
	transport Transport
	info      SessionInfo

	mu         sync.Mutex // guards the fields below
	subs       []*subscription
	queue      []Message
	spare      []Message // the writer's last batch, reused while busy
	queueBytes int
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
	bufOffs []uint64
}

// NewSession registers a new connection on the hub.
func (h *Hub) NewSession(t Transport, info SessionInfo) *Session {
	s := &Session{hub: h, id: h.newClientID(), transport: t, info: info}
	h.register(s)
	if h.closing.Load() { // raced with Shutdown's snapshot of sessions
		s.Close(protocol.DisconnectShutdown)
	}
	return s
}

// ID returns the session's client id, unique across nodes.
func (s *Session) ID() string { return s.id }

// HandleMessage handles one message (a protocol command) from the client,
// queueing its reply.
func (s *Session) HandleMessage(ctx context.Context, frame []byte) {
	s.hub.metrics.MessagesReceived.Inc()
	s.hub.metrics.BytesReceived.Add(float64(len(frame)))
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
	case protocol.CmdSubscribe:
		return s.subscribe(ctx, cmd)
	case protocol.CmdUnsubscribe:
		return s.unsubscribe(cmd)
	case protocol.CmdPublish:
		return s.publish(ctx, cmd)
	case protocol.CmdPing:
		return nil, nil
	case protocol.CmdConnect:
		return mustJSON(struct {
			Client  string `json:"client"`
			Node    string `json:"node"`
			Version string `json:"version"`
		}{s.id, s.hub.cfg.NodeID, s.hub.cfg.Version}), nil
	default:
		return nil, protocol.ErrUnknownCommand.WithMessage("unknown command %q", cmd.Command)
	}
}

func (s *Session) subscribe(ctx context.Context, cmd *protocol.Command) ([]byte, *protocol.Error) {
	if perr := protocol.ValidateChannel(cmd.Channel); perr != nil {
		return nil, perr
	}
	sub := &subscription{sess: s, channel: cmd.Channel, pending: true}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil, protocol.ErrUnavailable.WithMessage("connection is closing")
	}
	for _, have := range s.subs {
		if have.channel == cmd.Channel {
			s.mu.Unlock()
			return nil, protocol.ErrAlreadySubscribed.WithMessage("already subscribed to %q", cmd.Channel)
		}
	}
	if len(s.subs) >= s.hub.cfg.MaxChannelsPerConnection {
		s.mu.Unlock()
		return nil, protocol.ErrLimitExceeded.WithMessage("at most %d channels per connection", s.hub.cfg.MaxChannelsPerConnection)
	}
	s.subs = append(s.subs, sub)
	s.mu.Unlock()

	fail := func(perr *protocol.Error) ([]byte, *protocol.Error) {
		s.dropSubscription(sub)
		s.hub.removeSubscription(sub)
		return nil, perr
	}
	// Subscribe first, then read the position: publications that arrive in
	// between are buffered in sub and released after the reply, so none is
	// lost or duplicated at the seam.
	if err := s.hub.addSubscription(ctx, sub); err != nil {
		s.hub.log.Warn("subscribe failed", "channel", cmd.Channel, "err", err)
		return fail(protocol.ErrUnavailable.WithMessage("cannot subscribe now, retry"))
	}
	s.mu.Lock()
	gone := s.finished
	s.mu.Unlock()
	if gone { // the session ended while we subscribed: undo
		s.hub.removeSubscription(sub)
		return nil, errReplied
	}
	hist, err := s.hub.broker.History(ctx, cmd.Channel, broker.HistoryQuery{})
	if err != nil {
		s.hub.log.Warn("read position failed", "channel", cmd.Channel, "err", err)
		return fail(protocol.ErrUnavailable.WithMessage("cannot subscribe now, retry"))
	}
	result := mustJSON(struct {
		Channel string `json:"channel"`
		Offset  uint64 `json:"offset"`
		Epoch   string `json:"epoch"`
	}{cmd.Channel, hist.Position.Offset, hist.Position.Epoch})

	s.mu.Lock()
	defer s.mu.Unlock()
	if cmd.HasID {
		s.enqueueLocked(Message{Data: protocol.AppendResult(nil, cmd.ID, result)})
	}
	for i, m := range sub.buf {
		if sub.bufOffs[i] > hist.Position.Offset {
			s.enqueueLocked(m)
		}
	}
	sub.pending, sub.buf, sub.bufOffs = false, nil, nil
	// The reply is already queued; tell HandleMessage not to queue another.
	return nil, errReplied
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
	return nil, nil
}

func (s *Session) publish(ctx context.Context, cmd *protocol.Command) ([]byte, *protocol.Error) {
	if !s.hub.cfg.ClientPublish {
		return nil, protocol.ErrPermissionDenied.WithMessage("clients may not publish on this server")
	}
	if perr := protocol.ValidateChannel(cmd.Channel); perr != nil {
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
func (s *Session) deliver(sub *subscription, m Message, offset uint64) {
	s.mu.Lock()
	if sub.pending {
		sub.buf = append(sub.buf, m)
		sub.bufOffs = append(sub.bufOffs, offset)
	} else {
		s.enqueueLocked(m)
	}
	s.mu.Unlock()
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
	if len(s.queue) >= s.hub.cfg.QueueMaxMessages || s.queueBytes+len(m.Data) > s.hub.cfg.QueueMaxBytes {
		s.hub.metrics.QueueOverflows.Inc()
		s.queue, s.queueBytes = nil, 0
		s.closeLocked(protocol.DisconnectSlowConsumer)
		return
	}
	s.queue = append(s.queue, m)
	s.queueBytes += len(m.Data)
	s.startWriterLocked()
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
	s.startWriterLocked()
}

// PeerGone tells the session its connection was closed by the peer or
// failed; nothing more is written and the session is removed.
func (s *Session) PeerGone() {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		s.disconnect = protocol.DisconnectNormal
		s.queue, s.queueBytes = nil, 0
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
			s.queue, s.spare = nil, nil // an idle session keeps no buffer
			s.mu.Unlock()
			return
		}
		batch := s.queue
		s.queue, s.spare = s.spare, nil
		s.queueBytes = 0
		s.mu.Unlock()

		err := s.transport.WriteMessages(batch)
		now := nanotime()
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
			s.queue, s.queueBytes = nil, 0
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
