package server_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/server"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

// logBuffer collects a node's logs; the node writes from many goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// hostAnswer is the status and body of one request sent with a given Host.
type hostAnswer struct {
	status int
	body   string
}

// upgradeWithHost sends a WebSocket handshake for /ws with the given Host
// header over a raw loopback connection and returns the answer's status
// (101 when upgraded) and body.
func upgradeWithHost(t *testing.T, addr, host string, header map[string]string) hostAnswer {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var req strings.Builder
	req.WriteString("GET /ws HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
	for k, v := range header {
		req.WriteString(k + ": " + v + "\r\n")
	}
	req.WriteString("\r\n")
	if _, err := io.WriteString(c, req.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return hostAnswer{status: resp.StatusCode}
	}
	b, _ := io.ReadAll(resp.Body)
	return hostAnswer{resp.StatusCode, string(b)}
}

// requestWithHost sends method path to the node at addr with the given
// Host header and returns the status and the beginning of the body (an
// SSE stream is not read to its end).
func requestWithHost(t *testing.T, addr, method, path, host, body string, header map[string]string) hostAnswer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") == "text/event-stream" {
		return hostAnswer{status: resp.StatusCode}
	}
	b, _ := io.ReadAll(resp.Body)
	return hostAnswer{resp.StatusCode, string(b)}
}

// sameOrigin in a header of TestHostCheck's table stands for the origin of
// a page served under the request's Host.
const sameOrigin = "(same origin)"

// TestHostCheck: with the default configuration, a request whose Host is
// a name other than localhost (what a DNS rebinding page sends) is refused
// by every transport, the server API and the demo pages with 421 and the
// JSON error object, while localhost and address Hosts are served. The
// operations endpoints answer any Host.
func TestHostCheck(t *testing.T) {
	logs := &logBuffer{}
	ts := startLogged(t, slog.New(slog.NewTextHandler(logs, nil)), nil)
	addr := ts.Addr()
	auth := map[string]string{"Authorization": "apikey " + testKey}
	json := map[string]string{"Content-Type": "application/json"}
	endpoints := []struct {
		name         string
		method, path string
		body         string
		header       map[string]string
		ok           int  // the status when the Host is allowed
		anyHost      bool // served whatever the Host
	}{
		{"websocket", "", "/ws", "", nil, 101, false},
		{"sse", "GET", "/sse?channel=a", "", nil, 200, false},
		{"long polling", "GET", "/poll?channel=a&timeout=0", "", nil, 200, false},
		{"publish", "POST", "/publish", `{"channel":"a","data":1}`, json, 200, false},
		{"publish preflight", "OPTIONS", "/publish", "", map[string]string{"Origin": sameOrigin}, 204, false},
		{"api", "GET", "/api/info", "", auth, 200, false},
		{"api publish", "POST", "/api/publish", `{"channel":"a","data":1}`, auth, 200, false},
		{"demo page", "GET", "/", "", nil, 200, false},
		{"healthz", "GET", "/healthz", "", nil, 200, true},
		{"readyz", "GET", "/readyz", "", nil, 200, true},
		{"metrics", "GET", "/metrics", "", nil, 200, true},
	}
	hosts := []struct {
		host    string
		allowed bool
	}{
		{"localhost:8000", true},
		{"127.0.0.1:8000", true},
		{"[::1]:8000", true},
		{"app.localhost:8000", true},
		{"evil.example:8000", false},
		{"EVIL.example", false},
	}
	for _, e := range endpoints {
		for _, h := range hosts {
			t.Run(e.name+"/"+h.host, func(t *testing.T) {
				header := map[string]string{}
				for k, v := range e.header {
					if v == sameOrigin {
						v = "http://" + h.host // the page's own origin
					}
					header[k] = v
				}
				var a hostAnswer
				if e.method == "" {
					a = upgradeWithHost(t, addr, h.host, header)
				} else {
					a = requestWithHost(t, addr, e.method, e.path, h.host, e.body, header)
				}
				if h.allowed || e.anyHost {
					if a.status != e.ok {
						t.Fatalf("status %d %q, want %d", a.status, a.body, e.ok)
					}
					return
				}
				if a.status != http.StatusMisdirectedRequest || !strings.HasPrefix(a.body, `{"error":{"code":403,"message":"host not allowed`) {
					t.Fatalf("got %d %q, want 421 with the JSON error", a.status, a.body)
				}
			})
		}
	}
	// Each refused host is logged once, at warn, with the setting to use.
	out := logs.String()
	if n := strings.Count(out, `host=evil.example:8000`); n != 1 {
		t.Errorf("evil.example:8000 logged %d times, want once:\n%s", n, out)
	}
	if n := strings.Count(out, `host=EVIL.example`); n != 1 {
		t.Errorf("EVIL.example logged %d times, want once:\n%s", n, out)
	}
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "SWITCHBOARD_ALLOWED_HOSTS=evil.example") {
		t.Errorf("refusal log does not name the setting:\n%s", out)
	}
}

// TestAllowedHosts: names listed in allowed_hosts are served on every
// endpoint, wildcards included, and "*" turns the check off.
func TestAllowedHosts(t *testing.T) {
	tests := map[string]struct {
		list  []string
		hosts map[string]bool
	}{
		"names": {[]string{"realtime.example.com", "*.apps.example.com:8000"}, map[string]bool{
			"realtime.example.com":       true,
			"realtime.example.com:443":   true,
			"eu.apps.example.com:8000":   true,
			"eu.apps.example.com:9000":   false,
			"apps.example.com:8000":      false,
			"evil.example:8000":          false,
			"realtime.example.com.evil":  false,
			"localhost:8000":             true,
			"127.0.0.1:8000":             true,
			"realtime.example.com:8000":  true,
			"REALTIME.EXAMPLE.COM.:8000": true,
		}},
		"any": {[]string{"*"}, map[string]bool{
			"evil.example:8000": true,
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ts := start(t, func(c *config.Config) { c.AllowedHosts = tc.list })
			for host, ok := range tc.hosts {
				ws := upgradeWithHost(t, ts.Addr(), host, nil)
				poll := requestWithHost(t, ts.Addr(), "GET", "/poll?channel=a&timeout=0", host, "", nil)
				api := requestWithHost(t, ts.Addr(), "GET", "/api/info", host, "", map[string]string{"Authorization": "apikey " + testKey})
				want := []int{101, 200, 200}
				if !ok {
					want = []int{421, 421, 421}
				}
				if got := []int{ws.status, poll.status, api.status}; got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
					t.Errorf("Host %q: websocket, poll, api answered %v, want %v", host, got, want)
				}
			}
		})
	}
}

// TestRefusedOriginLogged: a page on another origin (a dev server on
// localhost:3000) is refused with 403 and the JSON error, and the node logs
// it once, saying how to allow it.
func TestRefusedOriginLogged(t *testing.T) {
	logs := &logBuffer{}
	ts := startLogged(t, slog.New(slog.NewTextHandler(logs, nil)), nil)
	const dev = "http://localhost:3000"
	for range 2 {
		a := upgradeWithHost(t, ts.Addr(), "localhost:8000", map[string]string{"Origin": dev})
		if a.status != http.StatusForbidden || !strings.HasPrefix(a.body, `{"error":{"code":403,"message":"origin not allowed`) {
			t.Fatalf("websocket from %s: %d %q", dev, a.status, a.body)
		}
		for _, path := range []string{"/sse?channel=a", "/poll?channel=a&timeout=0"} {
			if a := requestWithHost(t, ts.Addr(), "GET", path, "localhost:8000", "", map[string]string{"Origin": dev}); a.status != http.StatusForbidden {
				t.Fatalf("%s from %s: %d %q", path, dev, a.status, a.body)
			}
		}
	}
	out := logs.String()
	if n := strings.Count(out, "origin="+dev); n != 1 {
		t.Fatalf("%s logged %d times, want once:\n%s", dev, n, out)
	}
	for _, want := range []string{"level=WARN", "allowed_origins: [" + dev + "]", "SWITCHBOARD_ALLOWED_ORIGINS=" + dev} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	// Allowed, the same page connects.
	ts = start(t, func(c *config.Config) { c.AllowedOrigins = []string{dev} })
	if _, err := wstest.DialErr(t, ts.wsURL(), map[string]string{"Origin": dev}); err != nil {
		t.Fatalf("allowed origin refused: %v", err)
	}
}

// TestNonLoopbackAddrWarns: a node listening beyond loopback without
// allowed_hosts starts (a container listens on 0.0.0.0 and is reached as
// localhost) but warns that host names will be refused; with allowed_hosts
// set, or on loopback, it says nothing. A bad entry stops it.
func TestNonLoopbackAddrWarns(t *testing.T) {
	tests := []struct {
		addr  string
		hosts []string
		warn  bool
	}{
		{"127.0.0.1:8000", nil, false},
		{"localhost:8000", nil, false},
		{"[::1]:8000", nil, false},
		{"0.0.0.0:8000", nil, true},
		{":8000", nil, true},
		{"10.0.0.5:8000", nil, true},
		{"0.0.0.0:8000", []string{"realtime.example.com"}, false},
		{"0.0.0.0:8000", []string{"*"}, false},
	}
	for _, tc := range tests {
		cfg := config.Default()
		cfg.Addr = tc.addr
		cfg.AllowedHosts = tc.hosts
		logs := &logBuffer{}
		if _, err := newServerLogged(t, cfg, slog.New(slog.NewTextHandler(logs, nil))); err != nil {
			t.Fatalf("%s %v: %v", tc.addr, tc.hosts, err)
		}
		got := strings.Contains(logs.String(), "allowed_hosts is empty")
		if got != tc.warn {
			t.Errorf("addr %s, allowed_hosts %v: warned %v, want %v:\n%s", tc.addr, tc.hosts, got, tc.warn, logs.String())
		}
	}
	cfg := config.Default()
	cfg.AllowedHosts = []string{"https://realtime.example.com"}
	if _, err := newServer(t, cfg); err == nil || !strings.Contains(err.Error(), "allowed_hosts") {
		t.Fatalf("a URL in allowed_hosts: %v", err)
	}
}

// newServerLogged builds (without starting) a node from cfg that logs to
// log, and shuts it down when the test ends.
func newServerLogged(t *testing.T, cfg config.Config, log *slog.Logger) (*server.Server, error) {
	srv, err := server.New(cfg, log, "test")
	if err == nil {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
		})
	}
	return srv, err
}
