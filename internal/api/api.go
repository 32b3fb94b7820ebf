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
}

// Hub is what the API needs from the engine.
type Hub interface {
	Publish(ctx context.Context, channel string, data []byte, source string) (broker.Position, error)
	History(ctx context.Context, channel string, since *broker.Position, limit int, reverse bool) (broker.HistoryResult, error)
	HistoryMaxLimit() int
	Presence(ctx context.Context, channel string) ([]broker.ClientInfo, error)
	PresenceStats(ctx context.Context, channel string) (broker.PresenceStats, error)
	Channels(ctx context.Context) []hub.ChannelInfo
	Disconnect(clientID, user string, reconnect bool) error
	Info() hub.Info
}

// API serves /api/.
type API struct {
	hub  Hub
	opts Options
	log  *slog.Logger
	mux  *http.ServeMux
}

// New returns the API handler, to be mounted at /api/.
func New(h Hub, opts Options) *API {
	if opts.MaxBodySize <= 0 {
		opts.MaxBodySize = 1 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a := &API{hub: h, opts: opts, log: opts.Logger.With("component", "api"), mux: http.NewServeMux()}
	routes := []struct {
		method, path string
		h            http.HandlerFunc
	}{
		{"POST", "/api/publish", a.publish},
		{"POST", "/api/broadcast", a.broadcast},
		{"GET", "/api/channels", a.channels},
		{"POST", "/api/disconnect", a.disconnect},
		{"GET", "/api/info", a.info},
		{"POST", "/api/history", a.history},
		{"POST", "/api/presence", a.presence},
		{"POST", "/api/presence_stats", a.presenceStats},
	}
	methods := map[string]string{}
	for _, rt := range routes {
		a.mux.HandleFunc(rt.method+" "+rt.path, rt.h)
		methods[rt.path] = rt.method
	}
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
}

func (a *API) publish(w http.ResponseWriter, r *http.Request) {
	var req publishRequest
	if !a.decode(w, r, &req) {
		return
	}
	if req.Data == nil {
		writeError(w, http.StatusBadRequest, protocol.ErrBadRequest.WithMessage(`missing "data"`))
		return
	}
	pos, err := a.hub.Publish(r.Context(), req.Channel, req.Data, "api")
	if err != nil {
		a.failed(w, err)
		return
	}
	writeResult(w, map[string]any{"offset": pos.Offset, "epoch": pos.Epoch})
}

type broadcastRequest struct {
	Channels []string        `json:"channels"`
	Data     json.RawMessage `json:"data"`
}

// broadcastResult is one channel's outcome in a broadcast.
type broadcastResult struct {
	Channel string          `json:"channel"`
	Offset  uint64          `json:"offset,omitempty"`
	Epoch   string          `json:"epoch,omitempty"`
	Error   *protocol.Error `json:"error,omitempty"`
}

func (a *API) broadcast(w http.ResponseWriter, r *http.Request) {
	var req broadcastRequest
	if !a.decode(w, r, &req) {
		return
	}
	if req.Data == nil {
		writeError(w, http.StatusBadRequest, protocol.ErrBadRequest.WithMessage(`missing "data"`))
		return
	}
	if len(req.Channels) == 0 {
		writeError(w, http.StatusBadRequest, protocol.ErrBadRequest.WithMessage(`"channels" must list at least one channel`))
		return
	}
	for _, ch := range req.Channels {
		if perr := protocol.ValidateChannel(ch); perr != nil {
			writeError(w, http.StatusBadRequest, perr)
			return
		}
	}
	out := make([]broadcastResult, 0, len(req.Channels))
	for _, ch := range req.Channels {
		res := broadcastResult{Channel: ch}
		pos, err := a.hub.Publish(r.Context(), ch, req.Data, "api")
		if err != nil {
			a.log.Warn("broadcast publish failed", "channel", ch, "err", err)
			res.Error = protocol.ErrUnavailable.WithMessage("publish failed, retry")
		} else {
			res.Offset, res.Epoch = pos.Offset, pos.Epoch
		}
		out = append(out, res)
	}
	writeResult(w, map[string]any{"results": out})
}

func (a *API) channels(w http.ResponseWriter, r *http.Request) {
	list := a.hub.Channels(r.Context())
	sort.Slice(list, func(i, j int) bool { return list[i].Channel < list[j].Channel })
	if list == nil {
		list = []hub.ChannelInfo{}
	}
	writeResult(w, map[string]any{"channels": list})
}

type disconnectRequest struct {
	Client    string `json:"client"`
	User      string `json:"user"`
	Reconnect bool   `json:"reconnect"`
}

func (a *API) disconnect(w http.ResponseWriter, r *http.Request) {
	var req disconnectRequest
	if !a.decode(w, r, &req) {
		return
	}
	if req.Client == "" && req.User == "" {
		writeError(w, http.StatusBadRequest, protocol.ErrBadRequest.WithMessage(`give "client" or "user"`))
		return
	}
	if err := a.hub.Disconnect(req.Client, req.User, req.Reconnect); err != nil {
		if errors.Is(err, hub.ErrNotFound) {
			writeError(w, http.StatusNotFound, &protocol.Error{Code: 404, Message: fmt.Sprintf("no client %q on any live node", req.Client)})
			return
		}
		writeError(w, http.StatusInternalServerError, protocol.ErrInternal)
		return
	}
	writeResult(w, map[string]any{})
}

type historyRequest struct {
	Channel string                   `json:"channel"`
	Since   *protocol.StreamPosition `json:"since"`
	Limit   *int                     `json:"limit"`
	Reverse bool                     `json:"reverse"`
}

func (a *API) history(w http.ResponseWriter, r *http.Request) {
	var req historyRequest
	if !a.decode(w, r, &req) {
		return
	}
	limit := a.hub.HistoryMaxLimit()
	if req.Limit != nil {
		limit = *req.Limit
	}
	var since *broker.Position
	if req.Since != nil {
		since = &broker.Position{Offset: req.Since.Offset, Epoch: req.Since.Epoch}
	}
	res, err := a.hub.History(r.Context(), req.Channel, since, limit, req.Reverse)
	if err != nil {
		a.failed(w, err)
		return
	}
	writeResult(w, json.RawMessage(hub.HistoryJSON(req.Channel, res)))
}

type channelRequest struct {
	Channel string `json:"channel"`
}

func (a *API) presence(w http.ResponseWriter, r *http.Request) {
	var req channelRequest
	if !a.decode(w, r, &req) {
		return
	}
	list, err := a.hub.Presence(r.Context(), req.Channel)
	if err != nil {
		a.failed(w, err)
		return
	}
	writeResult(w, json.RawMessage(hub.PresenceJSON(list)))
}

func (a *API) presenceStats(w http.ResponseWriter, r *http.Request) {
	var req channelRequest
	if !a.decode(w, r, &req) {
		return
	}
	st, err := a.hub.PresenceStats(r.Context(), req.Channel)
	if err != nil {
		a.failed(w, err)
		return
	}
	writeResult(w, st)
}

func (a *API) info(w http.ResponseWriter, r *http.Request) {
	writeResult(w, a.hub.Info())
}

// decode reads a JSON object body into v, answering 400 or 413 itself when
// it cannot.
func (a *API) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.opts.MaxBodySize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, protocol.ErrTooLarge.WithMessage("request body over %d bytes", a.opts.MaxBodySize))
			return false
		}
		writeError(w, http.StatusBadRequest, protocol.ErrBadRequest.WithMessage("cannot read body"))
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		writeError(w, http.StatusBadRequest, protocol.ErrBadRequest.WithMessage("body must be a JSON object: %s", protocol.JSONProblem(err)))
		return false
	}
	return true
}

// failed answers an error from the hub: client-visible protocol errors with
// their HTTP status, anything else as 503.
func (a *API) failed(w http.ResponseWriter, err error) {
	var perr *protocol.Error
	if errors.As(err, &perr) {
		writeError(w, protocol.HTTPStatus(perr), perr)
		return
	}
	a.log.Warn("request failed", "err", err)
	writeError(w, http.StatusServiceUnavailable, protocol.ErrUnavailable.WithMessage("temporarily unavailable, retry"))
}

func writeResult(w http.ResponseWriter, v any) {
	writeJSON(w, http.StatusOK, map[string]any{"result": v})
}

func writeError(w http.ResponseWriter, status int, perr *protocol.Error) {
	writeJSON(w, status, map[string]any{"error": perr})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
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
