// Package httpauth is what the plain HTTP transports (long polling, client
// publish) share: who a request comes from, from its
// "Authorization: Bearer <token>" header, and JSON error answers.
package httpauth

import (
	"net/http"
	"strings"

	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/protocol"
	"github.com/switchboardhq/switchboard/internal/proxy"
)

// Identity is who a request comes from: a verified connection token, or
// nobody (Creds nil).
type Identity struct {
	Creds *hub.Credentials
}

// User returns the token's user id, empty when anonymous.
func (id Identity) User() string {
	if id.Creds == nil {
		return ""
	}
	return id.Creds.User
}

// Credentials verifies the request's connection token, given as
// "Authorization: Bearer <token>". A request without one asks the connect
// hook, when one is configured, with transport as the transport's name;
// else it is anonymous, which the server may refuse (allow_anonymous off).
func Credentials(h *hub.Hub, r *http.Request, transport string) (Identity, *protocol.Error) {
	a := r.Header.Get("Authorization")
	if a == "" || !hasBearer(a) && h.PassHeaders() != nil {
		c, perr := h.ConnectHook(r.Context(), transport, r.RemoteAddr, proxy.PickHeaders(r.Header, h.PassHeaders()))
		if perr != nil {
			return Identity{}, perr
		}
		if c != nil {
			return Identity{Creds: c}, nil
		}
	}
	if a == "" {
		if h.RequireAuth() {
			return Identity{}, protocol.ErrUnauthorized.WithMessage(`a connection token is required ("Authorization: Bearer <token>")`)
		}
		return Identity{}, nil
	}
	const scheme = "bearer "
	if len(a) <= len(scheme) || !strings.EqualFold(a[:len(scheme)], scheme) {
		return Identity{}, protocol.ErrUnauthorized.WithMessage(`the Authorization header must be "Bearer <token>"`)
	}
	c, perr := h.Authenticate(strings.TrimSpace(a[len(scheme):]))
	if perr != nil {
		return Identity{}, perr
	}
	return Identity{Creds: c}, nil
}

// WriteError answers {"error":{"code":C,"message":M}} with status; a 503
// says when to retry, a 401 which scheme to authenticate with. The answer
// is never cached.
func WriteError(w http.ResponseWriter, status int, perr *protocol.Error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	switch status {
	case http.StatusServiceUnavailable:
		h.Set("Retry-After", "1")
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", "Bearer")
	}
	w.WriteHeader(status)
	b := append([]byte(`{"error":`), protocol.AppendErrorObject(nil, perr)...)
	_, _ = w.Write(append(b, "}\n"...))
}

// hasBearer reports whether an Authorization header value uses the Bearer
// scheme; other schemes are the connect hook's, when one is configured.
func hasBearer(a string) bool {
	const scheme = "bearer "
	return len(a) > len(scheme) && strings.EqualFold(a[:len(scheme)], scheme)
}
