// Package httppublish is POST /publish: how a client whose connection only
// carries data to it (an EventSource stream, long polling) publishes. A
// WebSocket client publishes with the publish command on its connection;
// this endpoint applies the same rules to a plain HTTP request: the
// channel's namespace must let clients publish (client_publish for channels
// without a namespace), a channel limited to users needs one of their
// tokens, data is required and the body is bounded by max_message_size.
// The connection token, when the client has one (or the server requires
// one), comes as "Authorization: Bearer <token>".
//
// An idempotency key makes a retried request safe: it comes as the body's
// "idempotency_key" or as an "Idempotency-Key" header (the name HTTP
// clients and proxies use for it), or both when they are equal. A repeat
// within the idempotency window answers the original offset and epoch with
// "duplicate":true and publishes nothing.
//
// It is a package of its own, not a part of the SSE or polling transport,
// because both kinds of clients use it and transports never import each
// other. Unlike the server API (/api/publish) it takes no API key: it is
// for browsers, and is guarded like the other browser endpoints by the
// Host and Origin checks (see package httpx).
package httppublish

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"

	"github.com/switchboardhq/switchboard/internal/httpauth"
	"github.com/switchboardhq/switchboard/internal/httpx"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/origin"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// Options configure the publish endpoint. Zero fields take the defaults
// documented on them.
type Options struct {
	// MaxMessageSize caps the request body in bytes, as it caps a
	// WebSocket client's message; a larger body gets 413. Default 65536.
	MaxMessageSize int
	// Guard checks each request's Host and Origin (allowed_hosts,
	// allowed_origins) and logs refusals; the server shares one among its
	// endpoints. Every request is checked, including those a browser sends
	// without a preflight. Default: a Guard that allows same-origin and
	// non-browser requests to loopback names and IP addresses only.
	Guard *origin.Guard
	// Logger receives the endpoint's logs. Default slog.Default().
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = 65536
	}
	httpx.Defaults(&o.Logger, &o.Guard)
}

// Handler is the http.Handler of POST /publish.
type Handler struct {
	hub  *hub.Hub
	opts Options
	gate httpx.Gate
	log  *slog.Logger
}

// NewHandler returns the publish endpoint's handler.
func NewHandler(h *hub.Hub, opts Options) *Handler {
	opts.setDefaults()
	return &Handler{
		hub:  h,
		opts: opts,
		gate: httpx.Gate{Guard: opts.Guard, Method: http.MethodPost, Draining: h.Draining},
		log:  opts.Logger.With("component", "httppublish"),
	}
}

// publishRequest is the body of POST /publish.
type publishRequest struct {
	Channel        string          `json:"channel"`
	Data           json.RawMessage `json:"data"`
	IdempotencyKey *string         `json:"idempotency_key"`
}

// HeaderIdempotencyKey is the request header that may carry the
// idempotency key instead of the body.
const HeaderIdempotencyKey = "Idempotency-Key"

// idempotencyKey returns the request's idempotency key ("" for none) from
// the body field and the header, refusing an invalid one or two that
// differ.
func idempotencyKey(r *http.Request, body *string) (string, *protocol.Error) {
	key := ""
	if vs, ok := r.Header[HeaderIdempotencyKey]; ok {
		if len(vs) != 1 {
			return "", protocol.ErrBadRequest.WithMessage("%s header given %d times", HeaderIdempotencyKey, len(vs))
		}
		if perr := protocol.ValidateIdempotencyKey(vs[0]); perr != nil {
			return "", perr.WithMessage("%s header: %s", HeaderIdempotencyKey, perr.Message)
		}
		key = vs[0]
	}
	if body != nil {
		if perr := protocol.ValidateIdempotencyKey(*body); perr != nil {
			return "", perr.WithMessage(`"idempotency_key": %s`, perr.Message)
		}
		if key != "" && key != *body {
			return "", protocol.ErrBadRequest.WithMessage(`the %s header and "idempotency_key" differ`, HeaderIdempotencyKey)
		}
		key = *body
	}
	return key, nil
}

// ServeHTTP publishes one message and answers
// {"result":{"offset":N,"epoch":E}}, with "duplicate":true added for a
// repeat of an idempotency key.
func (hd *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !hd.gate.Admit(w, r) {
		return
	}
	id, perr := httpauth.Credentials(hd.hub, r, "publish")
	if perr != nil {
		httpauth.WriteError(w, protocol.HTTPStatus(perr), perr)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(hd.opts.MaxMessageSize)))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			httpauth.WriteError(w, http.StatusRequestEntityTooLarge, protocol.ErrTooLarge.WithMessage("request body over %d bytes", hd.opts.MaxMessageSize))
			return
		}
		httpauth.WriteError(w, http.StatusBadRequest, protocol.ErrBadRequest.WithMessage("cannot read body"))
		return
	}
	var req publishRequest
	if err := json.Unmarshal(body, &req); err != nil {
		httpauth.WriteError(w, http.StatusBadRequest, protocol.ErrBadRequest.WithMessage("body must be a JSON object: %s", protocol.JSONProblem(err)))
		return
	}
	if perr := hd.hub.CanPublish(req.Channel, id.User()); perr != nil {
		httpauth.WriteError(w, protocol.HTTPStatus(perr), perr)
		return
	}
	if req.Data == nil {
		httpauth.WriteError(w, http.StatusBadRequest, protocol.ErrBadRequest.WithMessage(`missing "data"`))
		return
	}
	// The namespace's publish hook, if any, allows and may rewrite.
	data, perr := hd.hub.CheckPublish(r.Context(), req.Channel, id.User(), req.Data)
	if perr != nil {
		httpauth.WriteError(w, protocol.HTTPStatus(perr), perr)
		return
	}
	req.Data = data
	key, perr := idempotencyKey(r, req.IdempotencyKey)
	if perr != nil {
		httpauth.WriteError(w, http.StatusBadRequest, perr)
		return
	}
	res, err := hd.hub.PublishOnce(r.Context(), req.Channel, req.Data, "client", key)
	if err != nil {
		var perr *protocol.Error
		if errors.As(err, &perr) {
			httpauth.WriteError(w, protocol.HTTPStatus(perr), perr)
			return
		}
		hd.log.Warn("client publish failed", "channel", req.Channel, "err", err)
		httpauth.WriteError(w, http.StatusServiceUnavailable, protocol.ErrUnavailable.WithMessage("cannot publish now, retry"))
		return
	}
	b := hub.AppendPublished([]byte(`{"result":`), res)
	writeJSON(w, http.StatusOK, append(b, "}\n"...))
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
