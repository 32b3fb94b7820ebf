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
// A browser's EventSource gives up for good on a non-200 answer, so a
// malformed request gets a 400 (that is a bug to fix, not to retry), while a
// node that is shutting down or cannot reach its broker drops the connection
// without an answer, which EventSource retries.
package sse

import (
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
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
	// AllowedOrigins lists the browser origins (scheme://host[:port])
	// allowed besides the server's own; "*" allows any. Allowed cross-origin
	// requests get CORS headers with credentials, so an EventSource created
	// with withCredentials works.
	AllowedOrigins []string
	// Logger receives the endpoint's logs. Default slog.Default().
	Logger *slog.Logger
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
}

// Handler serves the SSE endpoint. Create it with NewHandler and stop it
// with Close after the hub has shut down.
type Handler struct {
	hub    *hub.Hub
	opts   Options
	policy origin.Policy
	log    *slog.Logger
	hb     *heartbeat
}

// NewHandler returns the endpoint's handler, to be mounted at /sse. It
// starts the heartbeat goroutine, which Close stops.
func NewHandler(h *hub.Hub, opts Options) *Handler {
	opts.setDefaults()
	return &Handler{
		hub:    h,
		opts:   opts,
		policy: origin.Policy{Origins: opts.AllowedOrigins},
		log:    opts.Logger.With("component", "sse"),
		hb:     newHeartbeat(opts.PingInterval),
	}
}

// Close stops the heartbeats. Streams still open get no more of them.
func (h *Handler) Close() { h.hb.stop() }

// ServeHTTP serves one stream until its session closes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.hub.Draining() {
		// No answer at all: a 5xx would stop EventSource for good, while
		// a dropped connection makes it retry (on another node).
		panic(http.ErrAbortHandler)
	}
	if !h.policy.CORS(w, r, http.MethodGet) {
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, http.StatusMethodNotAllowed, protocol.ErrBadRequest.WithMessage("/sse takes GET, not %s", r.Method))
		return
	}
	req, perr := parseRequest(r.URL.RawQuery, r.Header.Get("Last-Event-ID"), h.opts.MaxChannels)
	if perr != nil {
		writeError(w, http.StatusBadRequest, perr)
		return
	}
	ctx := r.Context()

	// Where each channel is now. A resume position is only usable when its
	// check matches these epochs: otherwise it belongs to another epoch of
	// some channel (a restarted broker) or to another list of channels.
	now := make([]broker.Position, len(req.channels))
	epochs := make([]string, len(req.channels))
	for i, ch := range req.channels {
		pos, err := h.hub.Position(ctx, ch)
		if err != nil {
			h.log.Warn("stream refused: no channel position", "channel", ch, "err", err)
			panic(http.ErrAbortHandler) // the client retries
		}
		now[i], epochs[i] = pos, pos.Epoch
	}
	rejected := req.resume != nil && req.resume.check != protocol.CursorCheck(req.channels, epochs)
	start := now
	if req.resume != nil && !rejected {
		start = make([]broker.Position, len(now))
		for i := range now {
			start[i] = broker.Position{Offset: req.resume.offsets[i], Epoch: epochs[i]}
		}
	}

	st := newStream(h, w, req.channels, start)
	sess := h.hub.NewSession(st, hub.SessionInfo{RemoteAddr: r.RemoteAddr})
	st.sess = sess

	// The server's read timeout covers reading the request; the stream
	// outlives it, and on HTTP/1.1 an expired read deadline would cancel
	// the request's context.
	_ = st.rc.SetReadDeadline(time.Time{})
	if err := st.writePreamble(h.preamble(sess.ID(), req.channels, start, rejected)); err != nil {
		if errors.Is(err, errClosed) { // closed (shutdown) before anything was sent
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

	for i, ch := range req.channels {
		since := start[i]
		if _, perr := sess.Subscribe(ctx, ch, &since, st.firstHook(ch)); perr != nil {
			if ctx.Err() == nil && perr.Code > 0 {
				h.log.Warn("stream subscribe failed", "client", sess.ID(), "channel", ch, "err", perr)
			}
			// End the stream; the client reconnects with the id it
			// holds, which covers nothing of this channel yet.
			sess.Close(protocol.DisconnectInternal)
			break
		}
	}

	select {
	case <-st.done:
	case <-ctx.Done():
		sess.PeerGone()
		<-st.done
	}
}

// preamble returns the first bytes of a stream: the retry hint, one
// unrecovered event per channel when the client's position was rejected as
// a whole, then the connected event, whose id covers start so that the
// client holds a position even if no publication comes before it
// disconnects.
func (h *Handler) preamble(client string, channels []string, start []broker.Position, rejected bool) []byte {
	retry := h.opts.Retry + rand.N(h.opts.Retry)
	b := appendRetry(nil, retry)
	if rejected {
		// Before any id: if the stream broke between these events and the
		// connected event, the client would come back with its old,
		// rejected position and be told again.
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
