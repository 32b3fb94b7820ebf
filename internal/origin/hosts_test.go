package origin_test

import (
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/origin"
)

func TestHostsAllows(t *testing.T) {
	tests := map[string]struct {
		list  []string
		hosts map[string]bool
	}{
		"default": {nil, map[string]bool{
			"":                    true, // HTTP/1.0, no browser
			"localhost":           true,
			"localhost:8000":      true,
			"LOCALHOST:8000":      true,
			"localhost.:8000":     true,
			"app.localhost:3000":  true,
			"a.b.localhost":       true,
			"127.0.0.1:8000":      true,
			"127.1.2.3":           true,
			"[::1]:8000":          true,
			"[::1]":               true,
			"10.0.0.5:8000":       true, // any address: rebinding needs a name
			"[2001:db8::1]:443":   true,
			"evil.example:8000":   false,
			"evil.example":        false,
			"localhost.evil:8000": false,
			"evillocalhost:8000":  false,
			"127.0.0.1.nip.io":    false,
			"2130706433:8000":     false, // not an address in dotted form: a name
			"0x7f.0.0.1":          false,
			"::1":                 false, // an IPv6 address needs brackets
			"[evil.example]:8000": false,
			"[::1":                false,
			"localhost:99999":     false,
			"localhost:80a":       false,
			"localhost:8000:1":    false,
		}},
		"names and wildcards": {[]string{"app.example.com", "*.example.org", "api.example.net:8443"}, map[string]bool{
			"app.example.com":       true,
			"APP.Example.COM:8000":  true,
			"app.example.com.":      true,
			"www.app.example.com":   false,
			"x.example.org":         true,
			"a.b.example.org:1":     true,
			"example.org":           false, // a wildcard is for names under it
			"xexample.org":          false,
			"api.example.net:8443":  true,
			"api.example.net":       false,
			"api.example.net:443":   false,
			"evil.example:8000":     false,
			"localhost:8000":        true,
			"app.example.com.evil":  false,
			"app.example.com:":      true,
			"app.example.com:65535": true,
		}},
		"any": {[]string{"*"}, map[string]bool{
			"evil.example:8000": true,
			"whatever":          true,
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			h, err := origin.ParseHosts(tc.list)
			if err != nil {
				t.Fatal(err)
			}
			for host, want := range tc.hosts {
				if got := h.Allows(host); got != want {
					t.Errorf("Allows(%q) = %v, want %v", host, got, want)
				}
			}
		})
	}
}

func TestParseHostsRefuses(t *testing.T) {
	for _, entry := range []string{
		"", " ", "http://app.example.com", "app.example.com/", "app.example.com/x", "*", // "*" alone is fine: below
		"*example.com", "a.*.example.com", "*.", "app..example.com", ".example.com", "app example.com",
		"app.example.com:x", "app.example.com:70000", "::1", "[app.example.com]", "[::1", "user@app.example.com",
	} {
		if entry == "*" {
			continue
		}
		if _, err := origin.ParseHosts([]string{entry}); err == nil {
			t.Errorf("ParseHosts(%q) accepted", entry)
		} else if !strings.Contains(err.Error(), "host") {
			t.Errorf("ParseHosts(%q): error %q does not say what is wrong", entry, err)
		}
	}
	for _, entry := range []string{"*", "app.example.com", "APP.example.com.", "*.example.com:8000", "[::1]:8000", "10.0.0.5", "under_score.example", " padded.example "} {
		if _, err := origin.ParseHosts([]string{entry}); err != nil {
			t.Errorf("ParseHosts(%q): %v", entry, err)
		}
	}
}

func TestIsLoopbackAddr(t *testing.T) {
	tests := map[string]bool{
		"127.0.0.1:8000":          true,
		"127.0.0.2:0":             true,
		"localhost:8000":          true,
		"[::1]:8000":              true,
		"[::ffff:127.0.0.1]:8000": true,
		"0.0.0.0:8000":            false,
		":8000":                   false,
		"[::]:8000":               false,
		"10.0.0.5:8000":           false,
		"switchboard:8000":        false,
		"127.0.0.1":               false, // not host:port
	}
	for addr, want := range tests {
		if got := origin.IsLoopbackAddr(addr); got != want {
			t.Errorf("IsLoopbackAddr(%q) = %v, want %v", addr, got, want)
		}
	}
}

// FuzzHosts feeds arbitrary allowed_hosts entries and Host headers to the
// parser and the matcher. Neither may panic, and what they accept must be
// consistent: a listed name matches itself whatever its case, "*" matches
// everything, and an upper-cased Host is judged like the original.
func FuzzHosts(f *testing.F) {
	for _, seed := range [][2]string{
		{"app.example.com", "app.example.com:8000"},
		{"*.example.com", "a.example.com"},
		{"*.example.com:8443", "a.b.example.com:8443"},
		{"api.example.net:8443", "api.example.net"},
		{"[::1]:8000", "[::1]:8000"},
		{"*", "evil.example:8000"},
		{"example.com.", "EXAMPLE.COM"},
		{"x", "localhost:8000"},
		{"x", "[fe80::1%25eth0]:80"},
		{"bad entry", "127.0.0.1:8000"},
		{"", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, entry, host string) {
		h, err := origin.ParseHosts([]string{entry})
		if err != nil {
			h = origin.Hosts{}
		}
		got := h.Allows(host)
		if h.Any() && !got {
			t.Fatalf("* refused %q", host)
		}
		if up := strings.ToUpper(host); isASCII(host) && !strings.Contains(host, "[") && h.Allows(up) != got {
			// Brackets hold addresses, whose zone may be case-sensitive;
			// non-ASCII letters may upper-case to ASCII ones.
			t.Fatalf("%q: Allows(%q) = %v but Allows(%q) = %v", entry, host, got, up, !got)
		}
		if err == nil && !strings.Contains(entry, "*") && !h.Allows(strings.TrimSpace(entry)) {
			t.Fatalf("entry %q does not allow itself", entry)
		}
		if err == nil && strings.HasPrefix(strings.TrimSpace(entry), "*.") {
			sub := "x" + strings.TrimPrefix(strings.TrimSpace(entry), "*")
			if !h.Allows(sub) {
				t.Fatalf("entry %q does not allow %q", entry, sub)
			}
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
