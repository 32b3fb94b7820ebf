package origin

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Hosts decides which Host header values the server answers. It is the
// defence against DNS rebinding: a page on an attacker's domain whose name
// is made to resolve to the server's address is, for the browser, on the
// same origin as the server, so the Origin check lets it in; only its Host
// header, the attacker's name, gives it away.
//
// Always allowed, whatever the list says:
//   - no Host at all (an HTTP/1.0 client, not a browser);
//   - localhost and any name under .localhost, which browsers resolve to
//     the loopback address themselves and nobody can own in public DNS;
//   - IP address literals (127.0.0.1, [::1], 10.0.0.5, ...): a rebinding
//     page is reached by a name, never by an address, since an address does
//     not resolve to anything else.
//
// Any other name must be listed. The zero value lists none.
type Hosts struct {
	any      bool
	patterns []hostPattern
}

// hostPattern is one parsed allowed_hosts entry.
type hostPattern struct {
	// name is the lower-case host name without a trailing dot; for a
	// wildcard, the suffix that follows "*", leading dot included.
	name     string
	wildcard bool
	// port is the port the entry requires, empty for any.
	port string
}

// ParseHosts parses allowed_hosts entries: a host name (app.example.com), a
// wildcard for the names under a domain (*.example.com, which does not
// match example.com itself), an IP address, or "*" for any host; each may
// end with ":port", which then must match too (an entry without a port
// matches any port; browsers leave out :80 and :443). Names compare without
// regard to case or a trailing dot.
func ParseHosts(entries []string) (Hosts, error) {
	var h Hosts
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "*" {
			h.any = true
			continue
		}
		p, err := parseHostPattern(e)
		if err != nil {
			return Hosts{}, err
		}
		h.patterns = append(h.patterns, p)
	}
	return h, nil
}

func parseHostPattern(e string) (hostPattern, error) {
	bad := func(why string) (hostPattern, error) {
		return hostPattern{}, fmt.Errorf("origin: host %q: %s (want a name like app.example.com or *.example.com, with an optional :port)", e, why)
	}
	if e == "" {
		return bad("empty")
	}
	name, port, bracketed, ok := splitHost(e)
	if !ok {
		return bad("not a host[:port]")
	}
	var p hostPattern
	p.port = port
	if bracketed {
		a, err := netip.ParseAddr(name)
		if err != nil || !a.Is6() {
			return bad("brackets hold an IPv6 address only")
		}
		p.name = a.String()
		return p, nil
	}
	name = normalizeName(name)
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		p.wildcard = true
		name = rest
	}
	if name == "" {
		return bad("no name")
	}
	for _, label := range strings.Split(name, ".") {
		if !validLabel(label) {
			return bad("names are dot-separated labels of letters, digits, '-' and '_'")
		}
	}
	if p.wildcard {
		p.name = "." + name
	} else {
		p.name = name
	}
	return p, nil
}

func validLabel(l string) bool {
	if l == "" || len(l) > 63 {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// normalizeName lower-cases a host name and drops one trailing dot
// ("example.com." is the same name as "example.com").
func normalizeName(n string) string {
	return strings.TrimSuffix(strings.ToLower(n), ".")
}

// splitHost splits "name", "name:port", "[v6]" or "[v6]:port". ok is false
// when s has none of these shapes or the port is not a number from 0 to
// 65535. An empty port after the colon counts as none.
func splitHost(s string) (name, port string, bracketed, ok bool) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", false, false
		}
		name, rest := s[1:end], s[end+1:]
		if rest != "" {
			p, found := strings.CutPrefix(rest, ":")
			if !found {
				return "", "", false, false
			}
			port = p
		}
		if !validPort(port) {
			return "", "", false, false
		}
		return name, port, true, true
	}
	name, port, found := strings.Cut(s, ":")
	if found && strings.Contains(port, ":") {
		return "", "", false, false // an IPv6 address needs brackets
	}
	if !validPort(port) || strings.ContainsAny(name, "[]") {
		return "", "", false, false
	}
	return name, port, false, true
}

func validPort(p string) bool {
	if p == "" {
		return true
	}
	if len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n <= 65535
}

// Allows reports whether a request whose Host header is host may be
// served.
func (h Hosts) Allows(host string) bool {
	if h.any || host == "" {
		return true
	}
	name, port, bracketed, ok := splitHost(host)
	if !ok {
		return false
	}
	if bracketed {
		a, err := netip.ParseAddr(name)
		if err != nil || !a.Is6() {
			return false
		}
		return true // an IPv6 literal
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return true // an IPv4 literal (an unbracketed IPv6 one fails splitHost)
	}
	name = normalizeName(name)
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return true
	}
	for _, p := range h.patterns {
		if p.port != "" && p.port != port {
			continue
		}
		if p.wildcard {
			if len(name) > len(p.name) && strings.HasSuffix(name, p.name) {
				return true
			}
		} else if name == p.name {
			return true
		}
	}
	return false
}

// Any reports whether the list allows every host ("*").
func (h Hosts) Any() bool { return h.any }

// Empty reports whether nothing besides the always-allowed hosts is listed.
func (h Hosts) Empty() bool { return !h.any && len(h.patterns) == 0 }

// suggestHost returns the allowed_hosts entry that would allow host (its
// name without the port, which then matches any port), or "" when host is
// not a well-formed name.
func suggestHost(host string) string {
	name, _, bracketed, ok := splitHost(host)
	if !ok || bracketed {
		return ""
	}
	if _, err := parseHostPattern(name); err != nil || strings.HasPrefix(name, "*") {
		return ""
	}
	return normalizeName(name)
}

// IsLoopbackAddr reports whether a listen address (host:port, as in the
// addr setting) only accepts connections from this machine: its host is
// localhost or a loopback IP address. An empty host (":8000") listens on
// every interface.
func IsLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
