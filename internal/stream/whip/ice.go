package whip

import (
	"net/http"
	"strings"
)

// ICEServer is a STUN or TURN server announced to WHIP and WHEP clients.
type ICEServer struct {
	URLs                 []string
	Username, Credential string
}

// ICEServersFunc returns the servers for a request made to host.
type ICEServersFunc func(host string) ([]ICEServer, error)

// SetICEServers makes the answers (201) and the pre-flight (OPTIONS) of
// the offer endpoints announce the servers fn returns, as Link headers
// with rel="ice-server" (RFC 9725 section 4.6), so that a client behind a
// strict firewall can use TURN. nil stops the announcements.
func (s *Server) SetICEServers(fn ICEServersFunc) {
	if fn == nil {
		s.iceServers.Store(nil)
		return
	}
	s.iceServers.Store(&fn)
}

// linkICEServers adds the Link headers, if any are configured; a failure
// to make credentials only leaves them out (the client can still connect
// directly).
func (s *Server) linkICEServers(h http.Header, r *http.Request) {
	fn := s.iceServers.Load()
	if fn == nil {
		return
	}
	list, err := (*fn)(r.Host)
	if err != nil {
		s.log.Warn("ice servers for the Link header", "err", err)
		return
	}
	for _, srv := range list {
		for _, u := range srv.URLs {
			v := "<" + u + `>; rel="ice-server"`
			if srv.Username != "" {
				v += `; username="` + quote(srv.Username) + `"; credential="` + quote(srv.Credential) + `"; credential-type="password"`
			}
			h.Add("Link", v)
		}
	}
}

// quote escapes s for a quoted-string.
func quote(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}
