package realip_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"unicode"

	"github.com/switchboardhq/switchboard/internal/realip"
)

func mustTrust(t testing.TB, list ...string) realip.Trusted {
	t.Helper()
	tr, err := realip.ParseTrusted(list)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestParseTrusted(t *testing.T) {
	for name, tc := range map[string]struct {
		list    []string
		ok      bool
		in, out []string // addresses Contains must accept, and refuse
	}{
		"none":           {list: nil, ok: true, out: []string{"127.0.0.1", "::1"}},
		"ipv4 address":   {list: []string{"10.0.0.5"}, ok: true, in: []string{"10.0.0.5", "::ffff:10.0.0.5"}, out: []string{"10.0.0.6"}},
		"ipv4 prefix":    {list: []string{" 10.0.0.0/8 "}, ok: true, in: []string{"10.255.1.2"}, out: []string{"11.0.0.1"}},
		"unmasked":       {list: []string{"192.168.1.77/24"}, ok: true, in: []string{"192.168.1.1"}, out: []string{"192.168.2.1"}},
		"ipv6":           {list: []string{"::1", "fd00::/8"}, ok: true, in: []string{"::1", "fd12::3", "fd00::1"}, out: []string{"::2", "fe80::1"}},
		"mapped prefix":  {list: []string{"::ffff:10.0.0.0/104"}, ok: true, in: []string{"10.1.2.3"}, out: []string{"11.1.2.3"}},
		"mapped address": {list: []string{"::ffff:127.0.0.1"}, ok: true, in: []string{"127.0.0.1"}},
		"everyone":       {list: []string{"0.0.0.0/0", "::/0"}, ok: true, in: []string{"1.2.3.4", "2001:db8::1"}},
		"empty entry":    {list: []string{"10.0.0.1", ""}},
		"host name":      {list: []string{"proxy.example.com"}},
		"bad prefix":     {list: []string{"10.0.0.0/33"}},
		"with port":      {list: []string{"10.0.0.1:80"}},
		"zone":           {list: []string{"fe80::1%eth0"}},
		"short mapped":   {list: []string{"::ffff:0:0/80"}},
		"garbage":        {list: []string{"10.0.0.0/8/8"}},
	} {
		t.Run(name, func(t *testing.T) {
			tr, err := realip.ParseTrusted(tc.list)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseTrusted(%q): err %v, want ok=%v", tc.list, err, tc.ok)
			}
			for _, s := range tc.in {
				if !tr.Contains(netip.MustParseAddr(s)) {
					t.Errorf("%s not trusted", s)
				}
			}
			for _, s := range tc.out {
				if tr.Contains(netip.MustParseAddr(s)) {
					t.Errorf("%s trusted", s)
				}
			}
		})
	}
}

func TestClientAddr(t *testing.T) {
	proxies := mustTrust(t, "127.0.0.1", "10.0.0.0/8", "fd00::/8")
	for name, tc := range map[string]struct {
		trusted realip.Trusted // zero: proxies
		none    bool           // trust nobody
		peer    string
		xff     []string // X-Forwarded-For lines
		realIP  string
		want    string
		fwd     bool
	}{
		"no headers":             {peer: "127.0.0.1:5000", want: "127.0.0.1:5000"},
		"one hop":                {peer: "127.0.0.1:5000", xff: []string{"203.0.113.7"}, want: "203.0.113.7", fwd: true},
		"untrusted peer ignored": {peer: "198.51.100.1:5000", xff: []string{"203.0.113.7"}, want: "198.51.100.1:5000"},
		"untrusted peer real ip": {peer: "198.51.100.1:5000", realIP: "203.0.113.7", want: "198.51.100.1:5000"},
		"trust nobody":           {none: true, peer: "127.0.0.1:5000", xff: []string{"203.0.113.7"}, want: "127.0.0.1:5000"},
		// The client sent its own X-Forwarded-For; nginx appended the
		// address it really came from.
		"spoofed left part":       {peer: "127.0.0.1:1", xff: []string{"1.1.1.1, 203.0.113.7"}, want: "203.0.113.7", fwd: true},
		"spoofed trusted address": {peer: "127.0.0.1:1", xff: []string{"10.0.0.9, 203.0.113.7"}, want: "203.0.113.7", fwd: true},
		"spoofed separate line":   {peer: "127.0.0.1:1", xff: []string{"1.1.1.1", "203.0.113.7"}, want: "203.0.113.7", fwd: true},
		"chain of proxies":        {peer: "127.0.0.1:1", xff: []string{"1.1.1.1, 203.0.113.7, 10.0.0.2, 10.0.0.3"}, want: "203.0.113.7", fwd: true},
		"chain over lines":        {peer: "127.0.0.1:1", xff: []string{"1.1.1.1, 203.0.113.7", "10.0.0.2", "10.0.0.3"}, want: "203.0.113.7", fwd: true},
		"all trusted":             {peer: "127.0.0.1:1", xff: []string{"10.0.0.1, 10.0.0.2"}, want: "10.0.0.1", fwd: true},
		"ipv6 client":             {peer: "127.0.0.1:1", xff: []string{"2001:DB8::1"}, want: "2001:db8::1", fwd: true},
		"ipv6 brackets":           {peer: "127.0.0.1:1", xff: []string{"[2001:db8::1]"}, want: "2001:db8::1", fwd: true},
		"ipv6 with port":          {peer: "127.0.0.1:1", xff: []string{"[2001:db8::1]:443"}, want: "2001:db8::1", fwd: true},
		"ipv6 zone dropped":       {peer: "127.0.0.1:1", xff: []string{"fe80::1%eth0"}, want: "fe80::1", fwd: true},
		"ipv6 peer":               {peer: "[fd00::5]:80", xff: []string{"203.0.113.7, fd00::6"}, want: "203.0.113.7", fwd: true},
		"ipv6 untrusted peer":     {peer: "[2001:db8::5]:80", xff: []string{"203.0.113.7"}, want: "[2001:db8::5]:80"},
		"mapped peer":             {peer: "[::ffff:127.0.0.1]:80", xff: []string{"203.0.113.7"}, want: "203.0.113.7", fwd: true},
		"mapped client":           {peer: "127.0.0.1:1", xff: []string{"::ffff:203.0.113.7"}, want: "203.0.113.7", fwd: true},
		"mapped trusted hop":      {peer: "127.0.0.1:1", xff: []string{"203.0.113.7, ::ffff:10.0.0.2"}, want: "203.0.113.7", fwd: true},
		"ipv4 with port":          {peer: "127.0.0.1:1", xff: []string{"203.0.113.7:61234"}, want: "203.0.113.7", fwd: true},
		"blank entries skipped":   {peer: "127.0.0.1:1", xff: []string{" , 203.0.113.7 ,, ", ""}, want: "203.0.113.7", fwd: true},
		"malformed left ignored":  {peer: "127.0.0.1:1", xff: []string{"garbage, 203.0.113.7"}, want: "203.0.113.7", fwd: true},
		"malformed right":         {peer: "127.0.0.1:1", xff: []string{"203.0.113.7, unknown"}, want: "127.0.0.1:1"},
		"malformed after hop":     {peer: "127.0.0.1:1", xff: []string{"203.0.113.7, _hidden, 10.0.0.2"}, want: "10.0.0.2", fwd: true},
		"host name":               {peer: "127.0.0.1:1", xff: []string{"client.example.com"}, want: "127.0.0.1:1"},
		"ipv4 in brackets":        {peer: "127.0.0.1:1", xff: []string{"[203.0.113.7]"}, want: "127.0.0.1:1"},
		"port out of range":       {peer: "127.0.0.1:1", xff: []string{"203.0.113.7:70000"}, want: "127.0.0.1:1"},
		"cidr as entry":           {peer: "127.0.0.1:1", xff: []string{"203.0.113.0/24"}, want: "127.0.0.1:1"},
		"xff wins over real ip":   {peer: "127.0.0.1:1", xff: []string{"203.0.113.7"}, realIP: "198.51.100.9", want: "203.0.113.7", fwd: true},
		"malformed xff no realip": {peer: "127.0.0.1:1", xff: []string{"nope"}, realIP: "198.51.100.9", want: "127.0.0.1:1"},
		"real ip":                 {peer: "127.0.0.1:1", realIP: " 198.51.100.9 ", want: "198.51.100.9", fwd: true},
		"real ip blank xff":       {peer: "127.0.0.1:1", xff: []string{" , "}, realIP: "198.51.100.9", want: "198.51.100.9", fwd: true},
		"real ip ipv6":            {peer: "127.0.0.1:1", realIP: "2001:db8::9", want: "2001:db8::9", fwd: true},
		"real ip malformed":       {peer: "127.0.0.1:1", realIP: "1.2.3", want: "127.0.0.1:1"},
		"peer not an address":     {peer: "@", xff: []string{"203.0.113.7"}, want: "@"},
		"peer without port":       {peer: "127.0.0.1", xff: []string{"203.0.113.7"}, want: "127.0.0.1"},
	} {
		t.Run(name, func(t *testing.T) {
			tr := proxies
			if tc.none {
				tr = realip.Trusted{}
			}
			h := http.Header{}
			for _, v := range tc.xff {
				h.Add(realip.HeaderForwardedFor, v)
			}
			if tc.realIP != "" {
				h.Set(realip.HeaderRealIP, tc.realIP)
			}
			got, fwd := tr.ClientAddr(tc.peer, h)
			if got != tc.want || fwd != tc.fwd {
				t.Fatalf("ClientAddr(%q, %q, %q) = %q, %v; want %q, %v", tc.peer, tc.xff, tc.realIP, got, fwd, tc.want, tc.fwd)
			}
		})
	}
}

// TestHandler: the middleware rewrites RemoteAddr for trusted peers only,
// and leaves the caller's request untouched.
func TestHandler(t *testing.T) {
	var seen string
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r.RemoteAddr })
	if h := (realip.Trusted{}).Handler(next); h == nil {
		t.Fatal("nil handler")
	}
	h := mustTrust(t, "192.0.2.1").Handler(next)
	for _, tc := range []struct{ peer, want string }{
		{"192.0.2.1:4000", "203.0.113.7"},
		{"192.0.2.2:4000", "192.0.2.2:4000"},
	} {
		r := httptest.NewRequest("GET", "/ws", nil)
		r.RemoteAddr = tc.peer
		r.Header.Set("X-Forwarded-For", "203.0.113.7")
		h.ServeHTTP(httptest.NewRecorder(), r)
		if seen != tc.want || r.RemoteAddr != tc.peer {
			t.Errorf("peer %s: handler saw %q (want %q), request now %q", tc.peer, seen, tc.want, r.RemoteAddr)
		}
	}
}

// FuzzClientAddr feeds arbitrary X-Forwarded-For and X-Real-IP values from
// a trusted peer. The answer is the peer or a canonical address that was
// written in one of the headers, never a trusted proxy unless every named
// hop is one, and the same header from an untrusted peer is ignored.
func FuzzClientAddr(f *testing.F) {
	for _, s := range []string{
		"203.0.113.7", "1.1.1.1, 203.0.113.7, 10.0.0.2", "[2001:db8::1]:443", "::ffff:10.0.0.1",
		"fe80::1%eth0", ", ,", "unknown, 10.0.0.2", "203.0.113.7:8080", "10.0.0.1,10.0.0.2",
		"1.2.3.4\t,\t5.6.7.8", strings.Repeat("10.0.0.1,", 50) + "x",
	} {
		f.Add(s, "198.51.100.9")
	}
	f.Add("", "2001:db8::9")
	f.Add("", "garbage")
	tr := mustTrust(f, "127.0.0.1", "10.0.0.0/8", "fd00::/8")
	f.Fuzz(func(t *testing.T, xff, realIP string) {
		h := http.Header{}
		h.Set(realip.HeaderForwardedFor, xff)
		h.Set(realip.HeaderRealIP, realIP)
		const peer = "127.0.0.1:9"
		got, fwd := tr.ClientAddr(peer, h)
		if !fwd {
			if got != peer {
				t.Fatalf("not forwarded but %q", got)
			}
		} else {
			a, err := netip.ParseAddr(got)
			if err != nil || a.String() != got || a.Zone() != "" || a.Is4In6() {
				t.Fatalf("forwarded address %q is not canonical", got)
			}
			if !named(got, xff+","+realIP) {
				t.Fatalf("%q is not named in %q or %q", got, xff, realIP)
			}
			// What a client writes left of the address nginx appended
			// never changes the answer.
			if strings.TrimFunc(xff, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }) != "" && !tr.Contains(a) {
				if got2, _ := tr.ClientAddr(peer, http.Header{realip.HeaderForwardedFor: {"10.0.0.1, 6.6.6.6, " + xff}}); got2 != got {
					t.Fatalf("a prefix changed the answer from %q to %q", got, got2)
				}
			}
		}
		if got2, fwd2 := tr.ClientAddr("198.51.100.1:9", h); fwd2 || got2 != "198.51.100.1:9" {
			t.Fatalf("untrusted peer's headers used: %q", got2)
		}
	})
}

// named reports whether addr is the canonical form of one of the
// comma-separated entries of list.
func named(addr, list string) bool {
	for _, e := range strings.Split(list, ",") {
		e = strings.TrimSpace(e)
		a, err := netip.ParseAddr(e) // as it is: a zone may hold brackets ("::%[")
		if err != nil && len(e) > 2 && e[0] == '[' && e[len(e)-1] == ']' {
			a, err = netip.ParseAddr(e[1 : len(e)-1]) // one pair only: "[::%]]" has zone "]"
		}
		if err != nil {
			ap, err := netip.ParseAddrPort(e)
			if err != nil {
				continue
			}
			a = ap.Addr()
		}
		if a.Unmap().WithZone("").String() == addr {
			return true
		}
	}
	return false
}
