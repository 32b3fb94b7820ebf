// Package realip finds the address of the client behind a request when
// Switchboard runs behind reverse proxies (nginx, a load balancer). Only a
// request whose TCP peer is a trusted proxy has its X-Forwarded-For or
// X-Real-IP header read; anyone else's forwarding headers are ignored, so a
// client cannot choose the address that connection limits and logs see.
//
// It imports only the standard library, so that every HTTP transport and
// the configuration can use it.
package realip

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Header names read from a trusted proxy.
const (
	HeaderForwardedFor = "X-Forwarded-For"
	HeaderRealIP       = "X-Real-IP"
)

// Trusted is the set of proxies whose forwarding headers are believed. The
// zero value trusts nobody. It is safe for concurrent use.
type Trusted struct {
	prefixes []netip.Prefix
}

// ParseTrusted parses a list of IP addresses ("10.0.0.5", "::1") and CIDR
// prefixes ("10.0.0.0/8", "fd00::/8"). IPv4-mapped IPv6 entries are taken
// as the IPv4 ones they map.
func ParseTrusted(list []string) (Trusted, error) {
	var t Trusted
	var errs []error
	for _, s := range list {
		s = strings.TrimSpace(s)
		p, err := parsePrefix(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%q: %w", s, err))
			continue
		}
		t.prefixes = append(t.prefixes, p)
	}
	if err := errors.Join(errs...); err != nil {
		return Trusted{}, fmt.Errorf("realip: %w", err)
	}
	return t, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, errors.New("empty entry")
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, errors.New("not an IP address or CIDR prefix")
		}
		if a.Zone() != "" {
			return netip.Prefix{}, errors.New("an IPv6 zone is not allowed")
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, errors.New("not an IP address or CIDR prefix")
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, errors.New("an IPv4-mapped prefix must be /96 or longer")
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// Empty reports whether no proxy is trusted.
func (t Trusted) Empty() bool { return len(t.prefixes) == 0 }

// Contains reports whether a is a trusted proxy.
func (t Trusted) Contains(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range t.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientAddr returns the client address of a request that came from the
// TCP peer remoteAddr (an http.Request's RemoteAddr, "host:port") with
// headers h. When the peer is a trusted proxy and its headers name a
// client, it returns that client's IP address (canonical form, no port)
// and true. Otherwise it returns remoteAddr unchanged and false.
//
// X-Forwarded-For is read from the right, each proxy having appended the
// address it received the request from: the client is the right-most
// address that is not itself a trusted proxy (the left-most one when every
// address is trusted). Entries to the left of that address were written by
// the client or its own proxies and are never used. A malformed entry ends
// the walk: what stands left of it cannot be attributed, so the last
// trusted address passed (or the peer) is taken. Blank entries are
// skipped; "1.2.3.4:5678", "[2001:db8::1]" and "[2001:db8::1]:443" are
// accepted. Only when X-Forwarded-For is absent or blank is X-Real-IP read.
func (t Trusted) ClientAddr(remoteAddr string, h http.Header) (string, bool) {
	if len(t.prefixes) == 0 {
		return remoteAddr, false
	}
	peer, err := netip.ParseAddrPort(remoteAddr)
	if err != nil || !t.Contains(peer.Addr()) {
		return remoteAddr, false
	}
	if xff := h.Values(HeaderForwardedFor); len(xff) > 0 {
		if a, found, blank := t.walk(xff); !blank {
			if !found {
				return remoteAddr, false
			}
			return a.String(), true
		}
	}
	if v := strings.TrimSpace(h.Get(HeaderRealIP)); v != "" {
		if a, ok := parseEntry(v); ok {
			return a.String(), true
		}
	}
	return remoteAddr, false
}

// walk finds the client in the X-Forwarded-For header lines, which form
// one comma-separated list in order. blank is true when they hold no entry
// at all; found is false when the right-most entry is malformed.
func (t Trusted) walk(lines []string) (client netip.Addr, found, blank bool) {
	var last netip.Addr // the nearest trusted proxy named so far
	blank = true
	for i := len(lines) - 1; i >= 0; i-- {
		rest := lines[i]
		for rest != "" {
			var entry string
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				rest, entry = rest[:j], rest[j+1:]
			} else {
				rest, entry = "", rest
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			blank = false
			a, ok := parseEntry(entry)
			if !ok {
				return last, last.IsValid(), false
			}
			if !t.Contains(a) {
				return a, true, false
			}
			last = a
		}
	}
	return last, last.IsValid(), blank
}

// parseEntry parses one forwarded address: an IP address, optionally in
// brackets (IPv6) and with a port. Zones are dropped and IPv4-mapped
// addresses unmapped, so that one client always has one spelling.
func parseEntry(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		switch {
		case perr == nil:
			a = ap.Addr()
		case len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']':
			if a, err = netip.ParseAddr(s[1 : len(s)-1]); err != nil || !a.Is6() {
				return netip.Addr{}, false
			}
		default:
			return netip.Addr{}, false
		}
	}
	return a.Unmap().WithZone(""), true
}

// Handler returns next with each request's RemoteAddr replaced by the
// client address that ClientAddr finds; a request from an untrusted peer,
// or without forwarding headers, keeps its RemoteAddr. With no trusted
// proxy it returns next itself.
func (t Trusted) Handler(next http.Handler) http.Handler {
	if len(t.prefixes) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a, ok := t.ClientAddr(r.RemoteAddr, r.Header); ok {
			r = r.WithContext(r.Context()) // a shallow copy: handlers must not change r
			r.RemoteAddr = a
		}
		next.ServeHTTP(w, r)
	})
}
