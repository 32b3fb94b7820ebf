package origin_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/switchboardhq/switchboard/internal/origin"
)

func TestAllowed(t *testing.T) {
	p := origin.Policy{Origins: []string{"https://app.example/"}}
	tests := []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{"http://sb.example:8000", true}, // same origin (Host below)
		{"https://app.example", true},
		{"https://APP.example", true},
		{"https://evil.example", false},
		{"null", false},
		{"file://x", false},
		{"https://app.example.evil", false},
	}
	for _, tc := range tests {
		r := httptest.NewRequest("GET", "http://sb.example:8000/sse", nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if got := p.Allowed(r); got != tc.ok {
			t.Errorf("%q: %v, want %v", tc.origin, got, tc.ok)
		}
	}
	any := origin.Policy{Origins: []string{"*"}}
	r := httptest.NewRequest("GET", "http://sb.example/", nil)
	r.Header.Set("Origin", "https://whoever.example")
	if !any.Allowed(r) {
		t.Error("* does not allow any origin")
	}
}

// syncBuffer is a log destination safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// guardServer serves "ok" behind g.CORS on a loopback port.
func guardServer(t *testing.T, cfg origin.Config) (*httptest.Server, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	g := origin.New(cfg)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.CORS(w, r, "GET, POST") {
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv, logs
}

type answer struct {
	status int
	header http.Header
	body   string
}

// do sends method to srv with the given Host and Origin (empty: none).
func do(t *testing.T, srv *httptest.Server, method, host, origin string) answer {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+"/sse", nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func TestGuard(t *testing.T) {
	hosts, err := origin.ParseHosts([]string{"sb.example"})
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := guardServer(t, origin.Config{Origins: []string{"https://app.example"}, Hosts: hosts})
	tests := []struct {
		name, method, host, origin string
		status                     int
		body                       string
		acao                       string
	}{
		{"no origin", "GET", "", "", 200, "ok", ""},
		{"loopback name", "GET", "localhost:8000", "", 200, "ok", ""},
		{"listed host", "GET", "sb.example:8000", "", 200, "ok", ""},
		{"same origin", "GET", "sb.example:8000", "http://sb.example:8000", 200, "ok", "http://sb.example:8000"},
		{"allowed origin", "POST", "sb.example", "https://app.example", 200, "ok", "https://app.example"},
		{"foreign origin", "POST", "sb.example", "https://evil.example", 403, `"origin not allowed`, ""},
		{"rebinding page", "GET", "evil.example:8000", "http://evil.example:8000", 421, `"host not allowed`, ""},
		{"unlisted host", "GET", "evil.example:8000", "", 421, `{"error":{"code":403,`, ""},
		{"unlisted host, allowed origin", "GET", "evil.example", "https://app.example", 421, `"host not allowed`, ""},
		{"preflight", "OPTIONS", "", "https://app.example", 204, "", "https://app.example"},
		{"preflight, foreign origin", "OPTIONS", "", "https://evil.example", 403, `"origin not allowed`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, srv, tc.method, tc.host, tc.origin)
			if a.status != tc.status || !strings.Contains(a.body, tc.body) || a.header.Get("Access-Control-Allow-Origin") != tc.acao {
				t.Fatalf("got %d %q %v", a.status, a.body, a.header)
			}
			if a.status >= 400 && (a.header.Get("Content-Type") != "application/json" || !strings.HasPrefix(a.body, `{"error":{"code":403,"message":`)) {
				t.Fatalf("refusal is not the JSON error object: %v %q", a.header, a.body)
			}
			if tc.method == "OPTIONS" && a.status == 204 && (a.header.Get("Access-Control-Allow-Methods") != "GET, POST" ||
				a.header.Get("Access-Control-Allow-Credentials") != "true") {
				t.Fatalf("preflight headers: %v", a.header)
			}
		})
	}
}

// TestGuardLogsOnce: each refused origin and host is logged once, at warn,
// with the setting that would allow it.
func TestGuardLogsOnce(t *testing.T) {
	srv, logs := guardServer(t, origin.Config{})
	for range 3 {
		do(t, srv, "GET", "", "http://localhost:3000")
		do(t, srv, "GET", "evil.example:8000", "")
	}
	do(t, srv, "GET", "", "null")
	do(t, srv, "GET", "", "null")
	out := logs.String()
	for _, want := range []string{
		"allowed_origins: [http://localhost:3000]", "SWITCHBOARD_ALLOWED_ORIGINS=http://localhost:3000", "--allowed-origins=http://localhost:3000",
		"allowed_hosts: [evil.example]", "SWITCHBOARD_ALLOWED_HOSTS=evil.example", "--allowed-hosts=evil.example",
		`origin=null`,
	} {
		if strings.Count(out, want) != 1 {
			t.Errorf("log has %q %d times, want once:\n%s", want, strings.Count(out, want), out)
		}
	}
	if n := strings.Count(out, "level=WARN"); n != 3 {
		t.Errorf("%d warnings, want 3:\n%s", n, out)
	}
	// A second distinct origin gets its own line.
	do(t, srv, "GET", "", "http://localhost:5173")
	if !strings.Contains(logs.String(), "allowed_origins: [http://localhost:5173]") {
		t.Errorf("second origin not logged:\n%s", logs.String())
	}
}

// TestGuardLogIsBounded: past the bound, new refusals are no longer
// remembered or logged, and that is said once.
func TestGuardLogIsBounded(t *testing.T) {
	srv, logs := guardServer(t, origin.Config{})
	const n = 300 // over the bound of 256
	for i := range n {
		do(t, srv, "GET", "", "http://localhost:"+strconv.Itoa(3000+i))
	}
	out := logs.String()
	if got := strings.Count(out, "refused a request from a browser origin"); got != 256 {
		t.Errorf("%d origins logged, want 256", got)
	}
	if got := strings.Count(out, "refused silently"); got != 1 {
		t.Errorf("the bound was reported %d times, want once", got)
	}
}
