// Package httpx is the preamble that Switchboard's plain-HTTP endpoints
// (Server-Sent Events, long polling, client publish) run before their own
// work, so that they check the same things in the same order and answer
// refusals alike:
//
//  1. the Host header (421) and the browser Origin (403), with CORS
//     headers for an allowed cross-origin request (origin.Guard);
//  2. a CORS preflight (OPTIONS) is answered there (204);
//  3. answers are never cached;
//  4. a method the endpoint does not serve gets 405 with Allow;
//  5. while the node shuts down, 503 with Retry-After, or, for endpoints
//     whose clients retry only a dropped connection (EventSource gives up
//     on any error status), no answer at all.
//
// Every refusal carries the project's JSON error object.
package httpx

import (
	"log/slog"
	"net/http"
	"net/url"

	"github.com/switchboardhq/switchboard/internal/httpauth"
	"github.com/switchboardhq/switchboard/internal/origin"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// Gate is one endpoint's preamble. Its fields are read only; one Gate
// serves concurrent requests.
type Gate struct {
	// Guard checks Host and Origin and answers CORS. Required.
	Guard *origin.Guard
	// Method is the one method the endpoint serves, besides OPTIONS
	// (preflights).
	Method string
	// Draining reports whether the node is shutting down. Nil: never.
	Draining func() bool
	// DropWhileDraining makes a request that arrives while the node shuts
	// down end with a dropped connection (http.ErrAbortHandler) instead of
	// a 503, for clients that retry a dropped connection only.
	DropWhileDraining bool
}

// Admit runs the preamble. It returns true when the endpoint must serve
// the request, false when it has been answered. With DropWhileDraining it
// panics with http.ErrAbortHandler while the node shuts down, which makes
// net/http drop the connection without logging.
func (g *Gate) Admit(w http.ResponseWriter, r *http.Request) bool {
	if !g.Guard.CORS(w, r, g.Method) {
		return false
	}
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != g.Method {
		w.Header().Set("Allow", g.Method+", OPTIONS")
		httpauth.WriteError(w, http.StatusMethodNotAllowed, protocol.ErrBadRequest.WithMessage("%s takes %s, not %s", r.URL.Path, g.Method, r.Method))
		return false
	}
	if g.Draining != nil && g.Draining() {
		if g.DropWhileDraining {
			panic(http.ErrAbortHandler)
		}
		httpauth.WriteError(w, http.StatusServiceUnavailable, protocol.ErrUnavailable.WithMessage("server shutting down, retry"))
		return false
	}
	return true
}

// Defaults fills the Logger and Guard options every endpoint takes, when
// they are unset: slog.Default(), and a Guard that allows same-origin and
// non-browser requests to loopback names and IP addresses only.
func Defaults(log **slog.Logger, guard **origin.Guard) {
	if *log == nil {
		*log = slog.Default()
	}
	if *guard == nil {
		*guard = origin.New(origin.Config{Logger: *log})
	}
}

// Query parses r's query string. A malformed one is answered with 400
// (bad request) and ok is false.
func Query(w http.ResponseWriter, r *http.Request) (q url.Values, ok bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		httpauth.WriteError(w, http.StatusBadRequest, protocol.ErrBadRequest.WithMessage("malformed query string"))
		return nil, false
	}
	return q, true
}
