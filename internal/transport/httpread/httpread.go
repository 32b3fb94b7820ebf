// Package httpread is GET /history, GET /presence and GET /presence_stats:
// the history, presence and presence_stats commands of a WebSocket client,
// for clients whose connection carries data only to them (an EventSource
// stream, long polling). The answers are those of the commands, as
// {"result":...}, and errors are {"error":{"code","message"}} with the
// HTTP status of the code, as for POST /publish.
//
// A request is authorized like the command on a WebSocket connection with
// the same connection token ("Authorization: Bearer <token>", required when
// the server refuses anonymous clients): the channel's namespace must let
// the token's user subscribe, and a channel limited to users needs one of
// them. A WebSocket client reads a channel of a subscription-token
// namespace once it is subscribed to it; a plain HTTP request has no
// subscription, so such a channel is readable only when the connection
// token's "channels" claim lists it (as a stream may then carry it).
//
// Unlike the server API (/api/history, /api/presence) these endpoints take
// no API key: they are for browsers, guarded like the other browser
// endpoints by the Host and Origin checks (see package httpx).
package httpread

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"

	"github.com/switchboardhq/switchboard/internal/httpauth"
	"github.com/switchboardhq/switchboard/internal/httpx"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/origin"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// Op is what an endpoint reads.
type Op int

// The endpoints.
const (
	History       Op = iota // GET /history
	Presence                // GET /presence
	PresenceStats           // GET /presence_stats
)

// Options configure the endpoints. Zero fields take the defaults documented
// on them.
type Options struct {
	// Guard checks each request's Host and Origin (allowed_hosts,
	// allowed_origins) and logs refusals; the server shares one among its
	// endpoints. Default: a Guard that allows same-origin and non-browser
	// requests to loopback names and IP addresses only.
	Guard *origin.Guard
	// Logger receives the endpoints' logs. Default slog.Default().
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Guard == nil {
		o.Guard = origin.New(origin.Config{Logger: o.Logger})
	}
}

// Handler is the http.Handler of one of the endpoints.
type Handler struct {
	hub  *hub.Hub
	op   Op
	gate httpx.Gate
	log  *slog.Logger
}

// NewHandler returns the handler of the endpoint op.
func NewHandler(h *hub.Hub, op Op, opts Options) *Handler {
	opts.setDefaults()
	return &Handler{
		hub:  h,
		op:   op,
		gate: httpx.Gate{Guard: opts.Guard, Method: http.MethodGet, Draining: h.Draining},
		log:  opts.Logger.With("component", "httpread"),
	}
}

// ServeHTTP answers one request.
func (hd *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !hd.gate.Admit(w, r) {
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		httpauth.WriteError(w, http.StatusBadRequest, protocol.ErrBadRequest.WithMessage("malformed query string"))
		return
	}
	req, perr := parseRequest(q, hd.op == History)
	if perr != nil {
		httpauth.WriteError(w, protocol.HTTPStatus(perr), perr)
		return
	}
	id, perr := httpauth.Credentials(hd.hub, r)
	if perr != nil {
		httpauth.WriteError(w, protocol.HTTPStatus(perr), perr)
		return
	}
	if perr := hd.canRead(id, req.channel); perr != nil {
		httpauth.WriteError(w, protocol.HTTPStatus(perr), perr)
		return
	}
	var body []byte
	switch hd.op {
	case History:
		res, err := hd.hub.History(r.Context(), req.channel, hub.SincePosition(req.since), hd.hub.HistoryLimit(req.limit), req.reverse)
		if err != nil {
			hd.fail(w, err)
			return
		}
		body = hub.HistoryJSON(req.channel, res)
	case Presence:
		list, err := hd.hub.Presence(r.Context(), req.channel)
		if err != nil {
			hd.fail(w, err)
			return
		}
		body = hub.PresenceJSON(list)
	case PresenceStats:
		st, err := hd.hub.PresenceStats(r.Context(), req.channel)
		if err != nil {
			hd.fail(w, err)
			return
		}
		body = hub.PresenceStatsJSON(st)
	}
	w.Header().Set("Content-Type", "application/json")
	out := make([]byte, 0, len(body)+12)
	out = append(out, `{"result":`...)
	out = append(out, body...)
	_, _ = w.Write(append(out, "}\n"...))
}

// canRead applies the rules of the commands (see the package comment).
func (hd *Handler) canRead(id httpauth.Identity, channel string) *protocol.Error {
	if id.Creds != nil && slices.Contains(id.Creds.Channels, channel) {
		return nil
	}
	return hd.hub.CanSubscribe(channel, id.User(), "")
}

// fail answers an error of the hub: protocol errors with their status,
// anything else (the broker failed) as 503.
func (hd *Handler) fail(w http.ResponseWriter, err error) {
	var perr *protocol.Error
	if errors.As(err, &perr) {
		httpauth.WriteError(w, protocol.HTTPStatus(perr), perr)
		return
	}
	hd.log.Warn("read failed", "err", err)
	httpauth.WriteError(w, http.StatusServiceUnavailable, protocol.ErrUnavailable.WithMessage("temporarily unavailable, retry"))
}
