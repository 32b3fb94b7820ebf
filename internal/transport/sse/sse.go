// Package sse serves Switchboard's channels as Server-Sent Events, for the
// browser's plain EventSource: GET /sse?channel=a&channel=b answers a
// text/event-stream in which every publication is an event whose data is
// the same JSON object as a WebSocket push and whose id is a cursor covering
// the position of every channel of the stream. On reconnect the browser
// sends that id back as Last-Event-ID, and the stream resumes with nothing
// missed and nothing repeated, or says which channel it could not recover.
//
// Each stream is a hub session: the session's writer goroutine renders the
// queued messages as events and flushes them (http.ResponseController, with
// a write deadline), while the handler goroutine stays in ServeHTTP until the
// session closes, since the ResponseWriter is only valid until then.
//
// A stream is authorized like a WebSocket connection: a connection token
// (the token query parameter, since an EventSource cannot set headers, or an
// "Authorization: Bearer" header) and, for each channel, the subscribe rules
// of its namespace (Session.Subscribe checks nothing by itself).
//
// A browser's EventSource gives up for good on a non-200 answer, so a
// malformed or unauthorized request gets a 4xx (that is a bug or a missing
// token to fix, not to retry), while a node that is shutting down, over its
// connection limits or unable to reach its broker drops the connection
// without an answer, which EventSource retries.
package sse

import (
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/httpx"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/origin"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// Options configure the SSE endpoint. Zero fields take the defaults
// documented on them.
type Options struct {
	// PingInterval is how often an idle stream gets a comment line, which
	// keeps proxies from timing it out and reveals a peer that is gone.
	// Default 25s.
	PingInterval time.Duration
	// WriteTimeout bounds one write and flush; a client that does not take
	// its data within it is disconnected (4004) and reconnects. Default 10s.
	WriteTimeout time.Duration
	// Retry is the reconnection delay hinted to the browser. Each stream
	// gets a random value between Retry and twice Retry, so that the clients
	// of a node that shuts down do not all come back at once. Default 1s.
	Retry time.Duration
	// MaxChannels bounds the channels of one stream; it cannot exceed
	// protocol.MaxCursorChannels (16), which keeps event ids within 128
	// bytes. Default 16.
	MaxChannels int
	// Guard checks each request's Host and Origin (allowed_hosts,
	// allowed_origins) and logs refusals; the server shares one among its
	// endpoints. Allowed cross-origin requests get CORS headers with
	// credentials, so an EventSource created with withCredentials works.
	// Default: a Guard that allows same-origin and non-browser requests to
	// loopback names and IP addresses only.
	Guard *origin.Guard
	// Logger receives the endpoint's logs. Default slog.Default().
	Logger *slog.Logger
	// Clock is the time source of the heartbeats. Default: the real clock;
	// tests pass a fake one.
	Clock clockwork.Clock
}

func (o *Options) setDefaults() {
	if o.PingInterval <= 0 {
		o.PingInterval = 25 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.Retry <= 0 {
		o.Retry = time.Second
	}
	if o.MaxChannels <= 0 || o.MaxChannels > protocol.MaxCursorChannels {
		o.MaxChannels = protocol.MaxCursorChannels
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Guard == nil {
		o.Guard = origin.New(origin.Config{Logger: o.Logger})
	}
}

// Handler serves the SSE endpoint. Create it with NewHandler and stop it
// with Close after the hub has shut down.
type Handler struct {
	hub  *hub.Hub
	opts Options
	gate httpx.Gate
	log  *slog.Logger
	hb   *heartbeat
}

// NewHandler returns the endpoint's handler, to be mounted at /sse. It
// starts the heartbeat goroutine, which Close stops.
func NewHandler(h *hub.Hub, opts Options) *Handler {
	opts.setDefaults()
	return &Handler{
		hub:  h,
		opts: opts,
		// While the node shuts down: no answer at all. A 5xx would stop
		// EventSource for good, while a dropped connection makes it retry
		// (on another node).
		gate: httpx.Gate{Guard: opts.Guard, Method: http.MethodGet, Draining: h.Draining, DropWhileDraining: true},
		log:  opts.Logger.With("component", "sse"),
		hb:   newHeartbeat(opts.Clock, opts.PingInterval),
	}
}

// Close stops the heartbeats. Streams still open get no more of them.
func (h *Handler) Close() { h.hb.stop() }

// ServeHTTP serves one stream until its session closes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.gate.Admit(w, r) {
		return
	}
	req, perr := parseRequest(r.URL.RawQuery, r.Header.Get("Last-Event-ID"), r.Header.Get("Authorization"), h.opts.MaxChannels)
	if perr != nil {
		writeError(w, http.StatusBadRequest, perr)
		return
	}
	creds, status, perr := h.authorize(req)
	if perr != nil {
		writeError(w, status, perr)
		return
	}
	ctx := r.Context()

	// A resume position is only usable when its check matches the channels'
	// current epochs: otherwise it belongs to another epoch of some channel
	// (the broker lost its history) or to another list of channels.
	var epochs []string
	resume := false
	if req.resume != nil {
		epochs = make([]string, len(req.channels))
		for i, ch := range req.channels {
			pos, err := h.hub.Position(ctx, ch)
			if err != nil {
				h.log.Warn("stream dropped: no channel position", "channel", ch, "err", err)
				panic(http.ErrAbortHandler) // the client retries
			}
			epochs[i] = pos.Epoch
		}
		resume = req.resume.check == protocol.CursorCheck(req.channels, epochs)
	}

	st := newStream(h, w, req.channels)
	sess := h.hub.NewSession(st, hub.SessionInfo{RemoteAddr: r.RemoteAddr, Credentials: creds})
	st.sess = sess

	// Subscribe every channel: from the client's position when it resumes
	// (what it missed is queued first, or an unrecovered notice), else from
	// its "since" position when it gave one, else from now. The stream
	// begins after, so its connected event says exactly where each channel
	// starts.
	start := make([]broker.Position, len(req.channels))
	for i, ch := range req.channels {
		var since *broker.Position
		var first func(hub.SubscribeResult) []hub.Message
		switch {
		case resume:
			since = &broker.Position{Offset: req.resume.offsets[i], Epoch: epochs[i]}
		case req.since != nil && req.since[i] != nil:
			// A position of another epoch is not recovered: the hook
			// queues an unrecovered event, as for a resume.
			since = &broker.Position{Offset: req.since[i].Offset, Epoch: req.since[i].Epoch}
		}
		if since != nil {
			first = st.firstHook(ch)
		}
		res, perr := sess.Subscribe(ctx, ch, since, first)
		if perr != nil {
			// The hub logs broker failures; the rest is the session
			// closing (shutdown, connection limits) or the client leaving.
			h.log.Debug("stream dropped: subscribe failed", "client", sess.ID(), "channel", ch, "err", perr)
			sess.Close(protocol.DisconnectInternal)
			<-st.done
			panic(http.ErrAbortHandler) // nothing was sent: the client retries
		}
		start[i] = res.Position
		if since != nil {
			start[i] = *since
		}
	}

	if err := st.begin(h.preamble(sess.ID(), req.channels, start, req.resume != nil && !resume), start); err != nil {
		if errors.Is(err, errClosed) {
			// Closed before anything was sent (shutdown, connection
			// limit): no answer, so that the client retries.
			<-st.done
			panic(http.ErrAbortHandler)
		}
		sess.PeerGone()
		<-st.done
		return
	}
	st.mu.Lock()
	if !st.closed {
		h.hb.add(st)
	}
	st.mu.Unlock()

	select {
	case <-st.done:
	case <-ctx.Done():
		sess.PeerGone()
		<-st.done
	}
}

// authorize checks the request's connection token, if any, and whether it
// may subscribe to each of its channels. It returns the credentials (nil
// for an anonymous client), or the HTTP status and error to answer.
func (h *Handler) authorize(req request) (*hub.Credentials, int, *protocol.Error) {
	var creds *hub.Credentials
	if req.token != "" {
		c, perr := h.hub.Authenticate(req.token)
		if perr != nil {
			return nil, http.StatusUnauthorized, perr
		}
		creds = c
	} else if h.hub.RequireAuth() {
		return nil, http.StatusUnauthorized, protocol.ErrUnauthorized.WithMessage(`a connection token is required ("token" query parameter or "Authorization: Bearer" header)`)
	}
	user := ""
	if creds != nil {
		user = creds.User
	}
	for _, ch := range req.channels {
		if creds != nil && slices.Contains(creds.Channels, ch) {
			continue // the token grants it, as for a WebSocket connect
		}
		if perr := h.hub.CanSubscribe(ch, user, ""); perr != nil {
			if perr.Code == protocol.ErrInvalidChannel.Code {
				return nil, http.StatusBadRequest, perr
			}
			return nil, http.StatusForbidden, perr
		}
	}
	return creds, 0, nil
}

// preamble returns the first bytes of a stream: the retry hint, one
// unrecovered event per channel when the client's position was rejected as
// a whole, then the connected event, whose id covers start so that the
// client holds a position even if no publication comes before it
// disconnects (a reconnect then brings what was published meanwhile).
func (h *Handler) preamble(client string, channels []string, start []broker.Position, rejected bool) []byte {
	retry := h.opts.Retry + rand.N(h.opts.Retry)
	b := appendRetry(nil, retry)
	if rejected {
		// Before any id: if the stream broke between these events and the
		// connected event, the client would come back with its old,
		// rejected position and be told again, never skip silently.
		for i, ch := range channels {
			data, _ := json.Marshal(unrecoveredNotice{ch, start[i].Offset, start[i].Epoch})
			b = append(b, "event: unrecovered\n"...)
			b = appendData(b, data)
		}
	}
	type position struct {
		Channel string `json:"channel"`
		Offset  uint64 `json:"offset"`
		Epoch   string `json:"epoch"`
	}
	connected := struct {
		Client   string     `json:"client"`
		Channels []position `json:"channels"`
	}{Client: client, Channels: make([]position, len(channels))}
	for i, ch := range channels {
		connected.Channels[i] = position{ch, start[i].Offset, start[i].Epoch}
	}
	data, _ := json.Marshal(connected)
	b = append(b, "event: connected\nid: "...)
	b = append(b, protocol.EncodeCursor(protocol.CursorCheck(channels, epochsOf(start)), offsetsOf(start))...)
	b = append(b, '\n')
	return appendData(b, data)
}

func epochsOf(ps []broker.Position) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Epoch
	}
	return out
}

func offsetsOf(ps []broker.Position) []uint64 {
	out := make([]uint64, len(ps))
	for i, p := range ps {
		out[i] = p.Offset
	}
	return out
}

// writeError answers a refused request with {"error":{"code","message"}}.
func writeError(w http.ResponseWriter, status int, perr *protocol.Error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	b := append([]byte(`{"error":`), protocol.AppendErrorObject(nil, perr)...)
	_, _ = w.Write(append(b, "}\n"...))
}
