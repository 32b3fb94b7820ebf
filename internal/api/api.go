// Package api is the server HTTP API that an application's backend calls to
// publish, broadcast, list channels, disconnect clients and read node info.
// Requests and answers are JSON; every request must carry
// "Authorization: apikey <key>".
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// Options configure the API. Keys must hold at least one key.
type Options struct {
	// Keys are the accepted API keys; several allow rotation.
	Keys []string
	// MaxBodySize caps a request body in bytes; larger ones get 413.
	// Default 1 MiB.
	MaxBodySize int64
	// Logger receives the API's logs. Default slog.Default().
	Logger *slog.Logger
	// Metrics counts requests. Required.
	Metrics *metrics.Metrics
	// Rooms serves /api/rooms, /api/rooms/kick and /api/rooms/mute; nil
	// when calls are off.
	Rooms Rooms
	// SelfTest serves GET /api/webrtc/selftest: it runs the calls'
	// self-test and returns its report; nil when calls are off.
	SelfTest func(ctx context.Context) any
	// Streams serves /api/streams, /api/streams/kick and
	// /api/streams/key; nil when live streams are off.
	Streams Streams
}

// Hub is what the API needs from the engine.
type Hub interface {
	PublishOnce(ctx context.Context, channel string, data []byte, source, key string) (hub.Published, error)
	History(ctx context.Context, channel string, since *broker.Position, limit int, reverse bool) (broker.HistoryResult, error)
	HistoryLimit(limit *int) int
	Presence(ctx context.Context, channel string) ([]broker.ClientInfo, error)
	PresenceStats(ctx context.Context, channel string) (broker.PresenceStats, error)
	Channels(ctx context.Context) []hub.ChannelInfo
	Connections(ctx context.Context, user string) []hub.ConnectionInfo
	Disconnect(clientID, user string, reconnect bool) error
	SubscribeServer(ctx context.Context, req hub.ServerSubscription) (int, error)
	UnsubscribeServer(ctx context.Context, clientID, user, channel string) (int, error)
	Info() hub.Info
}

// API serves /api/.
type API struct {
	hub  Hub
	opts Options
	log  *slog.Logger
	mux  *http.ServeMux
	// methods are the API calls by name, for the routes and for batches.
	methods map[string]method
	// streams are the open API streams (GET /api/stream).
	streams streams
}

// method is one API call: it decodes its parameters from body and returns
// a value to encode as the result, or an error whose code sets the HTTP
// status.
type method func(ctx context.Context, body []byte) (any, *protocol.Error)

// New returns the API handler, to be mounted at /api/.
func New(h Hub, opts Options) *API {
	if opts.MaxBodySize <= 0 {
		opts.MaxBodySize = 1 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a := &API{hub: h, opts: opts, log: opts.Logger.With("component", "api"), mux: http.NewServeMux()}
	a.methods = map[string]method{
		"publish":        a.publish,
		"broadcast":      a.broadcast,
		"channels":       a.channels,
		"connections":    a.connections,
		"disconnect":     a.disconnect,
		"subscribe":      a.subscribe,
		"unsubscribe":    a.unsubscribe,
		"info":           a.info,
		"history":        a.history,
		"presence":       a.presence,
		"presence_stats": a.presenceStats,
		"rooms":          a.rooms,
		"rooms/kick":     a.roomKick,
		"rooms/mute":     a.roomMute,
		"streams":        a.streamsList,
		"streams/kick":   a.streamKick,
		"streams/key":    a.streamKey,
	}
	methods := map[string]string{}
	for name, m := range a.methods {
		verb := "POST"
		if name == "channels" || name == "info" || name == "rooms" || name == "connections" || name == "streams" {
			verb = "GET"
		}
		a.mux.HandleFunc(verb+" /api/"+name, a.serve(m))
		methods["/api/"+name] = verb
	}
	a.mux.HandleFunc("POST /api/batch", a.serve(a.batch))
	methods["/api/batch"] = "POST"
	a.mux.HandleFunc("GET /api/stream", a.stream)
	methods["/api/stream"] = "GET"
	// Not in batches: it takes seconds.
	a.mux.HandleFunc("GET /api/webrtc/selftest", a.serve(a.webrtcSelfTest))
	methods["/api/webrtc/selftest"] = "GET"
	a.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		if m, ok := methods[r.URL.Path]; ok {
			w.Header().Set("Allow", m)
			writeError(w, http.StatusMethodNotAllowed, protocol.ErrBadRequest.WithMessage("%s takes %s, not %s", r.URL.Path, m, r.Method))
			return
		}
		writeError(w, http.StatusNotFound, protocol.ErrUnknownCommand.WithMessage("no API method %s %s", r.Method, r.URL.Path))
	})
	return a
}

// ServeHTTP checks the API key and routes the request.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		a.opts.Metrics.APIRequests.WithLabelValues(r.Method, strconv.Itoa(rec.status)).Inc()
	}()
	if status, perr := a.authorize(r); perr != nil {
		writeError(rec, status, perr)
		return
	}
	a.mux.ServeHTTP(rec, r)
}

// RequireKey wraps next so that it answers only requests with one of keys,
// as the server API does.
func RequireKey(keys []string, next http.Handler) http.Handler {
	a := &API{opts: Options{Keys: keys}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if status, perr := a.authorize(r); perr != nil {
			writeError(w, status, perr)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authorize checks "Authorization: apikey <key>" against every configured
// key in constant time.
func (a *API) authorize(r *http.Request) (int, *protocol.Error) {
	const scheme = "apikey "
	h := r.Header.Get("Authorization")
	if len(h) <= len(scheme) || !equalFold(h[:len(scheme)], scheme) {
		return http.StatusUnauthorized, protocol.ErrUnauthorized.WithMessage(`missing "Authorization: apikey <key>" header`)
	}
	given := []byte(h[len(scheme):])
	ok := 0
	for _, k := range a.opts.Keys {
		ok |= subtle.ConstantTimeCompare(given, []byte(k))
	}
	if ok != 1 {
		return http.StatusForbidden, protocol.ErrPermissionDenied.WithMessage("invalid API key")
	}
	return 0, nil
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i]|0x20, b[i]|0x20
		if x != y {
			return false
		}
	}
	return true
}

type publishRequest struct {
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
	// IdempotencyKey is nil when absent; an empty key is refused.
	IdempotencyKey *string `json:"idempotency_key"`
}

// publishResult is a publication's place in its channel's history.
// idempotencyKey checks an optional idempotency key and returns it, ""
// when absent.
func idempotencyKey(key *string) (string, *protocol.Error) {
	if key == nil {
		return "", nil
	}
	if perr := protocol.ValidateIdempotencyKey(*key); perr != nil {
		return "", perr.WithMessage(`"idempotency_key": %s`, perr.Message)
	}
	return *key, nil
}

func (a *API) publish(ctx context.Context, body []byte) (any, *protocol.Error) {
	var req publishRequest
	if perr := decodeParams(body, &req); perr != nil {
		return nil, perr
	}
	if req.Data == nil {
		return nil, protocol.ErrBadRequest.WithMessage(`missing "data"`)
	}
	key, perr := idempotencyKey(req.IdempotencyKey)
	if perr != nil {
		return nil, perr
	}
	r, err := a.hub.PublishOnce(ctx, req.Channel, req.Data, "api", key)
	if err != nil {
		return nil, a.failed(err)
	}
	// The hot path of the API: the answer is appended, not reflected.
	return rawResult(hub.AppendPublished(make([]byte, 0, 64), r)), nil
}

// rawResult is a result already encoded as JSON: written as it is by
// writeResult, and embedded as it is where results are encoded together
// (a batch).
type rawResult []byte

// MarshalJSON implements json.Marshaler.
func (r rawResult) MarshalJSON() ([]byte, error) { return r, nil }

type broadcastRequest struct {
	Channels []string        `json:"channels"`
	Data     json.RawMessage `json:"data"`
	// IdempotencyKey applies to each channel on its own.
	IdempotencyKey *string `json:"idempotency_key"`
}

// broadcastResult is one channel's outcome in a broadcast.
type broadcastResult struct {
	Channel   string          `json:"channel"`
	Offset    uint64          `json:"offset,omitempty"`
	Epoch     string          `json:"epoch,omitempty"`
	Duplicate bool            `json:"duplicate,omitempty"`
	Error     *protocol.Error `json:"error,omitempty"`
}

func (a *API) broadcast(ctx context.Context, body []byte) (any, *protocol.Error) {
	var req broadcastRequest
	if perr := decodeParams(body, &req); perr != nil {
		return nil, perr
	}
	if req.Data == nil {
		return nil, protocol.ErrBadRequest.WithMessage(`missing "data"`)
	}
	if len(req.Channels) == 0 {
		return nil, protocol.ErrBadRequest.WithMessage(`"channels" must list at least one channel`)
	}
	for _, ch := range req.Channels {
		if perr := protocol.ValidateChannel(ch); perr != nil {
			return nil, perr
		}
	}
	key, perr := idempotencyKey(req.IdempotencyKey)
	if perr != nil {
		return nil, perr
	}
	out := make([]broadcastResult, 0, len(req.Channels))
	for _, ch := range req.Channels {
		res := broadcastResult{Channel: ch}
		r, err := a.hub.PublishOnce(ctx, ch, req.Data, "api", key)
		if err != nil {
			a.log.Warn("broadcast publish failed", "channel", ch, "err", err)
			res.Error = protocol.ErrUnavailable.WithMessage("publish failed, retry")
		} else {
			res.Offset, res.Epoch, res.Duplicate = r.Offset, r.Epoch, r.Duplicate
		}
		out = append(out, res)
	}
	return map[string]any{"results": out}, nil
}

func (a *API) channels(ctx context.Context, _ []byte) (any, *protocol.Error) {
	list := a.hub.Channels(ctx)
	sort.Slice(list, func(i, j int) bool { return list[i].Channel < list[j].Channel })
	if list == nil {
		list = []hub.ChannelInfo{}
	}
	return map[string]any{"channels": list}, nil
}

type disconnectRequest struct {
	Client    string `json:"client"`
	User      string `json:"user"`
	Reconnect bool   `json:"reconnect"`
}

func (a *API) disconnect(_ context.Context, body []byte) (any, *protocol.Error) {
	var req disconnectRequest
	if perr := decodeParams(body, &req); perr != nil {
		return nil, perr
	}
	if req.Client == "" && req.User == "" {
		return nil, protocol.ErrBadRequest.WithMessage(`give "client" or "user"`)
	}
	if err := a.hub.Disconnect(req.Client, req.User, req.Reconnect); err != nil {
		if errors.Is(err, hub.ErrNotFound) {
			return nil, &protocol.Error{Code: 404, Message: fmt.Sprintf("no client %q on any live node", req.Client)}
		}
		return nil, protocol.ErrInternal
	}
	return struct{}{}, nil
}

type historyRequest struct {
	Channel string                   `json:"channel"`
	Since   *protocol.StreamPosition `json:"since"`
	Limit   *int                     `json:"limit"`
	Reverse bool                     `json:"reverse"`
}

func (a *API) history(ctx context.Context, body []byte) (any, *protocol.Error) {
	var req historyRequest
	if perr := decodeParams(body, &req); perr != nil {
		return nil, perr
	}
	res, err := a.hub.History(ctx, req.Channel, hub.SincePosition(req.Since), a.hub.HistoryLimit(req.Limit), req.Reverse)
	if err != nil {
		return nil, a.failed(err)
	}
	return json.RawMessage(hub.HistoryJSON(req.Channel, res)), nil
}

type channelRequest struct {
	Channel string `json:"channel"`
}

func (a *API) presence(ctx context.Context, body []byte) (any, *protocol.Error) {
	var req channelRequest
	if perr := decodeParams(body, &req); perr != nil {
		return nil, perr
	}
	list, err := a.hub.Presence(ctx, req.Channel)
	if err != nil {
		return nil, a.failed(err)
	}
	return json.RawMessage(hub.PresenceJSON(list)), nil
}

func (a *API) presenceStats(ctx context.Context, body []byte) (any, *protocol.Error) {
	var req channelRequest
	if perr := decodeParams(body, &req); perr != nil {
		return nil, perr
	}
	st, err := a.hub.PresenceStats(ctx, req.Channel)
	if err != nil {
		return nil, a.failed(err)
	}
	return st, nil
}

func (a *API) info(context.Context, []byte) (any, *protocol.Error) {
	return a.hub.Info(), nil
}

// serve adapts a method to HTTP: it reads the body (answering 413 past
// MaxBodySize), runs m and writes its result or its error with the error's
// HTTP status.
func (a *API) serve(m method) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(w, r, a.opts.MaxBodySize)
		if err == nil && r.Method == http.MethodGet && len(body) == 0 {
			// A GET's parameters come in its query; methods read them as
			// the JSON object a batch would give them.
			body = queryParams(r.URL.Query())
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeError(w, http.StatusRequestEntityTooLarge, protocol.ErrTooLarge.WithMessage("request body over %d bytes", a.opts.MaxBodySize))
				return
			}
			writeError(w, http.StatusBadRequest, protocol.ErrBadRequest.WithMessage("cannot read body"))
			return
		}
		res, perr := m(r.Context(), body)
		if perr != nil {
			writeError(w, protocol.HTTPStatus(perr), perr)
			return
		}
		writeResult(w, res)
	}
}

// readBody reads a request body of at most limit bytes, in one allocation
// of the announced length when there is one.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, limit)
	if n := r.ContentLength; n >= 0 && n <= limit {
		buf := make([]byte, n, n+1)
		if _, err := io.ReadFull(body, buf); err != nil {
			return nil, err
		}
		// Nothing may follow what Content-Length announced; net/http
		// enforces it, and the read of the end costs no allocation.
		if m, err := body.Read(buf[n : n+1]); m != 0 || (err != nil && err != io.EOF) {
			return nil, errors.Join(err, errors.New("body longer than Content-Length"))
		}
		return buf, nil
	}
	return io.ReadAll(body)
}

// queryParams turns a query string into a JSON object of its first
// values.
func queryParams(q url.Values) []byte {
	m := make(map[string]string, len(q))
	for k, v := range q {
		m[k] = v[0]
	}
	b, _ := json.Marshal(m) // strings only: cannot fail
	return b
}

// connections lists a user's connections on every node.
func (a *API) connections(ctx context.Context, body []byte) (any, *protocol.Error) {
	var req struct {
		User string `json:"user"`
	}
	if len(body) > 0 {
		if perr := decodeParams(body, &req); perr != nil {
			return nil, perr
		}
	}
	if req.User == "" {
		return nil, protocol.ErrBadRequest.WithMessage(`give "user" (GET /api/connections?user=alice)`)
	}
	list := a.hub.Connections(ctx, req.User)
	if list == nil {
		list = []hub.ConnectionInfo{}
	}
	return map[string]any{"connections": list}, nil
}

// decodeParams reads a JSON object into v.
func decodeParams(body []byte, v any) *protocol.Error {
	if err := json.Unmarshal(body, v); err != nil {
		return protocol.ErrBadRequest.WithMessage("body must be a JSON object: %s", protocol.JSONProblem(err))
	}
	return nil
}

// failed turns an error from the hub into the answer: client-visible
// protocol errors as they are, anything else as 503.
func (a *API) failed(err error) *protocol.Error {
	var perr *protocol.Error
	if errors.As(err, &perr) {
		return perr
	}
	a.log.Warn("request failed", "err", err)
	return protocol.ErrUnavailable.WithMessage("temporarily unavailable, retry")
}

func writeResult(w http.ResponseWriter, v any) {
	if raw, ok := v.(rawResult); ok {
		w.Header()["Content-Type"] = jsonContentType
		b := make([]byte, 0, len(raw)+12)
		b = append(append(append(b, `{"result":`...), raw...), "}\n"...)
		_, _ = w.Write(b)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"result": v})
}

// jsonContentType is the Content-Type header value of every answer,
// shared so that setting it allocates nothing.
var jsonContentType = []string{"application/json"}

func writeError(w http.ResponseWriter, status int, perr *protocol.Error) {
	writeJSON(w, status, map[string]any{"error": perr})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}
