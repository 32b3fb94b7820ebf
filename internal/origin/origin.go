// Package origin decides which browser origins may use Switchboard's
// endpoints, and answers CORS for the HTTP transports. A request without an
// Origin header (not from a browser) is allowed; the server's own origin is
// always allowed; others only when listed.
package origin

import (
	"net/http"
	"net/url"
	"strings"
)

// Policy is an origin allowlist. The zero value allows same-origin and
// non-browser requests only.
type Policy struct {
	// Origins lists origins (scheme://host[:port]) allowed besides the
	// server's own. "*" allows any origin.
	Origins []string
}

// Allowed reports whether r's Origin may use the server.
func (p Policy) Allowed(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, a := range p.Origins {
		if a == "*" || strings.EqualFold(strings.TrimSuffix(a, "/"), o) {
			return true
		}
	}
	return false
}

// CORS applies the policy to a plain HTTP endpoint. It sets the CORS
// response headers for an allowed cross-origin request (with credentials,
// echoing the origin), answers a preflight (OPTIONS) itself, and refuses a
// disallowed origin with 403. It returns false when the request has been
// answered and the handler must stop.
func (p Policy) CORS(w http.ResponseWriter, r *http.Request, methods string) bool {
	o := r.Header.Get("Origin")
	if !p.Allowed(r) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"error":{"code":403,"message":"origin not allowed"}}` + "\n"))
		return false
	}
	if o != "" {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", o)
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Add("Vary", "Origin")
	}
	if r.Method == http.MethodOptions {
		h := w.Header()
		h.Set("Access-Control-Allow-Methods", methods)
		h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization, Last-Event-ID")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return false
	}
	return true
}
