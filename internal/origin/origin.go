// Package origin decides which requests a browser may make to Switchboard's
// endpoints, and answers CORS for the HTTP transports. Two checks apply:
//
//   - the Host header must name this server (see Hosts): loopback names and
//     IP addresses always do, other names only when listed in
//     allowed_hosts. This stops DNS rebinding, where a page on an
//     attacker's domain that resolves to the server is same-origin with it.
//   - the Origin header, when there is one, must be the server's own origin
//     or listed in allowed_origins (see Policy). A request without Origin
//     (not from a browser) is allowed.
//
// A Guard applies both, answers the requests it refuses and logs each
// refused origin and host once, naming the setting that would allow it.
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

// Allowed reports whether r's Origin may use the server. Same-origin means
// that the Origin's host is r's Host, which is only safe together with the
// Host check (Hosts): the Guard applies both.
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

// wellFormed reports whether o is an origin that allowed_origins could
// list: scheme://host[:port] with an http or https scheme and nothing else.
func wellFormed(o string) bool {
	u, err := url.Parse(o)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" &&
		u.Path == "" && u.RawQuery == "" && u.Fragment == "" && u.User == nil
}
