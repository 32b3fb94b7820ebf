package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/ssetest"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

// appBackend is an application backend on loopback, as docs/backend.md
// describes one: it admits the cookie "session=alice-secret" as alice,
// refuses the channel "secret", gives presence info in "room", upper-cases
// the text of publications, and adds numbers over RPC.
type appBackend struct {
	*httptest.Server
	mu       sync.Mutex
	requests map[string][]map[string]any // by hook, the bodies received
	headers  map[string][]http.Header    // by hook, the HTTP headers received
	expireAt int64                       // the connect hook's expire_at
	refresh  string                      // the refresh hook's answer
}

func newAppBackend(t *testing.T) *appBackend {
	b := &appBackend{requests: map[string][]map[string]any{}, headers: map[string][]http.Header{}}
	answer := func(w http.ResponseWriter, v string) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, v)
	}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hook := strings.TrimPrefix(r.URL.Path, "/")
		var req map[string]any
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		b.mu.Lock()
		b.requests[hook] = append(b.requests[hook], req)
		b.headers[hook] = append(b.headers[hook], r.Header.Clone())
		expireAt, refresh := b.expireAt, b.refresh
		b.mu.Unlock()
		switch hook {
		case "connect":
			c, err := r.Cookie("session")
			if err != nil || c.Value != "alice-secret" {
				answer(w, `{"error":{"code":401,"message":"no valid session cookie"}}`)
				return
			}
			answer(w, fmt.Sprintf(`{"result":{"user":"alice","expire_at":%d,"channels":["news"],"info":{"name":"Alice"},"data":{"welcome":"hi Alice"}}}`, expireAt))
		case "refresh":
			answer(w, refresh)
		case "subscribe":
			switch req["channel"] {
			case "secret":
				answer(w, `{"error":{"code":3403,"message":"members only"}}`)
			case "room":
				answer(w, `{"result":{"info":{"role":"admin"}}}`)
			case "banned":
				answer(w, `{"disconnect":{"code":4600,"reason":"banned"}}`)
			default:
				answer(w, `{"result":{}}`)
			}
		case "publish":
			var data struct {
				Text string `json:"text"`
			}
			raw, _ := json.Marshal(req["data"])
			_ = json.Unmarshal(raw, &data)
			if data.Text == "spam" {
				answer(w, `{"error":{"code":3429,"message":"no spam"}}`)
				return
			}
			out, _ := json.Marshal(map[string]any{"result": map[string]any{"data": map[string]any{"text": strings.ToUpper(data.Text), "by": req["user"]}}})
			answer(w, string(out))
		case "rpc":
			switch req["method"] {
			case "add":
				d, _ := req["data"].(map[string]any)
				a, _ := d["a"].(float64)
				bb, _ := d["b"].(float64)
				answer(w, fmt.Sprintf(`{"result":{"data":{"sum":%g,"user":%q}}}`, a+bb, req["user"]))
			default:
				answer(w, `{"error":{"code":3404,"message":"no such method"}}`)
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(func() {
		b.CloseClientConnections()
		b.Close()
	})
	return b
}

// last returns the last body the hook received.
func (b *appBackend) last(hook string) (map[string]any, http.Header) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.requests[hook])
	if n == 0 {
		return nil, nil
	}
	return b.requests[hook][n-1], b.headers[hook][n-1]
}

// count returns how many calls the hook received.
func (b *appBackend) count(hook string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.requests[hook])
}

// withBackend points every hook of the node at b.
func withBackend(b *appBackend, mutate func(*config.Config)) func(*config.Config) {
	return func(c *config.Config) {
		c.ProxyConnectEndpoint = b.URL + "/connect"
		c.ProxyRefreshEndpoint = b.URL + "/refresh"
		c.ProxySubscribeEndpoint = b.URL + "/subscribe"
		c.ProxyPublishEndpoint = b.URL + "/publish"
		c.ProxyRPCEndpoint = b.URL + "/rpc"
		c.ProxyTimeout = 2 * time.Second
		if mutate != nil {
			mutate(c)
		}
	}
}

func (ts *testServer) dialHeaders(h map[string]string) *wstest.Client {
	ts.t.Helper()
	c, err := wstest.DialErr(ts.t, ts.wsURL(), h)
	if err != nil {
		ts.t.Fatalf("dial: %v", err)
	}
	return c
}

// TestBackendConnectByCookie: with allow_anonymous off and no token key, a
// browser's session cookie is enough: the connect hook sees it (and the
// other allowlisted headers, not the rest) and names the user, whose
// channels are subscribed and whose data comes back in the reply. A
// client without the cookie is refused and closed with 4502.
func TestBackendConnectByCookie(t *testing.T) {
	b := newAppBackend(t)
	ts := start(t, withBackend(b, func(c *config.Config) { c.AllowAnonymous = false }))

	c := ts.dialHeaders(map[string]string{"Cookie": "session=alice-secret", "Origin": "http://" + ts.Addr(), "X-Internal": "not for the backend"})
	res := c.MustCall(map[string]any{"command": "connect", "data": map[string]any{"app": "test"}})
	if res["user"] != "alice" {
		t.Fatalf("connect result %v", res)
	}
	if d, _ := res["data"].(map[string]any); d["welcome"] != "hi Alice" {
		t.Fatalf("connect data %v", res["data"])
	}
	if subs, _ := res["subscriptions"].([]any); len(subs) != 1 || subs[0].(map[string]any)["channel"] != "news" {
		t.Fatalf("server-side subscriptions %v", res["subscriptions"])
	}
	body, hdr := b.last("connect")
	headers, _ := body["headers"].(map[string]any)
	if headers["Cookie"] != "session=alice-secret" || headers["Origin"] == nil || headers["X-Internal"] != nil {
		t.Fatalf("headers in the body: %v", headers)
	}
	if hdr.Get("Cookie") != "session=alice-secret" || hdr.Get("X-Internal") != "" {
		t.Fatalf("HTTP headers: %v", hdr)
	}
	if body["transport"] != "websocket" || body["client"] == "" || !strings.HasPrefix(body["remote_addr"].(string), "127.0.0.1:") {
		t.Fatalf("connect body %v", body)
	}
	if d, _ := body["data"].(map[string]any); d["app"] != "test" {
		t.Fatalf("connect data to the backend %v", body["data"])
	}
	ts.publish("news", map[string]any{"n": 1})
	expectPub(t, c.Next(), "news", 1)

	bad := ts.dialHeaders(map[string]string{"Cookie": "session=forged"})
	r := bad.Call(map[string]any{"command": "connect"})
	if errorCode(r) != 401 {
		t.Fatalf("bad cookie: %v", r)
	}
	if code := bad.ExpectClose(); code != 4502 {
		t.Fatalf("bad cookie closed with %d, want 4502", code)
	}
	if v := ts.metric(`switchboard_proxy_calls_total{hook="connect",result="ok"}`); v != 1 {
		t.Fatalf("connect calls ok = %v", v)
	}
	if v := ts.metric(`switchboard_proxy_calls_total{hook="connect",result="error"}`); v != 1 {
		t.Fatalf("connect calls refused = %v", v)
	}
}

// TestBackendSubscribe: the backend refuses with its own code, allows with
// presence info, or closes the connection; a namespace with the hook
// "off" does not call it.
func TestBackendSubscribe(t *testing.T) {
	b := newAppBackend(t)
	ts := start(t, withBackend(b, func(c *config.Config) {
		c.Namespaces = []auth.Namespace{{Name: "open", ProxySubscribe: auth.ProxyOff}}
	}))
	c := ts.dialHeaders(map[string]string{"Cookie": "session=alice-secret"})
	c.MustCall(map[string]any{"command": "connect"})

	r := c.Call(map[string]any{"command": "subscribe", "channel": "secret"})
	if e, _ := r["error"].(map[string]any); errorCode(r) != 3403 || e["message"] != "members only" {
		t.Fatalf("refused subscribe: %v", r)
	}
	c.Subscribe("room")
	body, _ := b.last("subscribe")
	if body["user"] != "alice" || body["channel"] != "room" {
		t.Fatalf("subscribe body %v", body)
	}
	p := c.MustCall(map[string]any{"command": "presence", "channel": "room"})
	clients, _ := p["clients"].([]any)
	if len(clients) != 1 {
		t.Fatalf("presence %v", p)
	}
	if info, _ := clients[0].(map[string]any)["info"].(map[string]any); info["role"] != "admin" {
		t.Fatalf("presence info %v", clients[0])
	}
	// Reading a hooked channel's history needs a subscription: the hook
	// is not asked on every read.
	if r := c.Call(map[string]any{"command": "history", "channel": "other"}); errorCode(r) != 403 {
		t.Fatalf("history without subscription: %v", r)
	}

	calls := b.count("subscribe")
	c.Subscribe("open:lobby")
	if b.count("subscribe") != calls {
		t.Fatal("the hook was called for a namespace that turns it off")
	}

	c.Send(map[string]any{"id": 99, "command": "subscribe", "channel": "banned"})
	if code := c.ExpectClose(); code != 4600 {
		t.Fatalf("closed with %d, want the backend's 4600", code)
	}
}

// TestBackendPublishRewritten: the backend replaces a publication's data
// (subscribers get its version, over WebSocket and HTTP publish alike) or
// refuses it with its code.
func TestBackendPublishRewritten(t *testing.T) {
	b := newAppBackend(t)
	ts := start(t, withBackend(b, nil))
	sub := ts.dial()
	sub.Subscribe("chat")
	pub := ts.dialHeaders(map[string]string{"Cookie": "session=alice-secret"})
	pub.MustCall(map[string]any{"command": "connect"})

	pub.MustCall(map[string]any{"command": "publish", "channel": "chat", "data": map[string]any{"text": "hello"}})
	m := sub.Next()
	expectPub(t, m, "chat", 1)
	if d, _ := m["data"].(map[string]any); d["text"] != "HELLO" || d["by"] != "alice" {
		t.Fatalf("published data %v", m["data"])
	}
	if r := pub.Call(map[string]any{"command": "publish", "channel": "chat", "data": map[string]any{"text": "spam"}}); errorCode(r) != 3429 {
		t.Fatalf("spam: %v", r)
	}

	resp, err := http.Post("http://"+ts.Addr()+"/publish", "application/json", strings.NewReader(`{"channel":"chat","data":{"text":"over http"}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("HTTP publish: %d", resp.StatusCode)
	}
	m = sub.Next()
	if d, _ := m["data"].(map[string]any); d["text"] != "OVER HTTP" {
		t.Fatalf("HTTP-published data %v", m["data"])
	}
	sub.Silent(100 * time.Millisecond)
}

// TestBackendRPC: an rpc command is answered by the backend's data, or its
// error; a bad method name never reaches it; a namespace without the hook
// answers 404.
func TestBackendRPC(t *testing.T) {
	b := newAppBackend(t)
	ts := start(t, withBackend(b, func(c *config.Config) {
		c.Namespaces = []auth.Namespace{{Name: "local", ProxyRPC: auth.ProxyOff}}
	}))
	c := ts.dialHeaders(map[string]string{"Cookie": "session=alice-secret"})
	c.MustCall(map[string]any{"command": "connect"})

	res := c.MustCall(map[string]any{"command": "rpc", "method": "add", "data": map[string]any{"a": 2, "b": 3}})
	if d, _ := res["data"].(map[string]any); d["sum"] != 5.0 || d["user"] != "alice" {
		t.Fatalf("rpc result %v", res)
	}
	if body, _ := b.last("rpc"); body["method"] != "add" || body["user"] != "alice" || body["client"] == "" {
		t.Fatalf("rpc body %v", body)
	}
	if r := c.Call(map[string]any{"command": "rpc", "method": "nope"}); errorCode(r) != 3404 {
		t.Fatalf("unknown method: %v", r)
	}
	calls := b.count("rpc")
	for _, m := range []string{"", "a b", strings.Repeat("x", 129), "é"} {
		if r := c.Call(map[string]any{"command": "rpc", "method": m}); errorCode(r) != 400 {
			t.Fatalf("method %q: %v", m, r)
		}
	}
	for _, m := range []string{"local:x", "unknown:x"} {
		if r := c.Call(map[string]any{"command": "rpc", "method": m}); errorCode(r) != 404 {
			t.Fatalf("method %q: %v", m, r)
		}
	}
	if b.count("rpc") != calls {
		t.Fatal("invalid or unhandled methods reached the backend")
	}
	if v := ts.metric(`switchboard_proxy_calls_total{hook="rpc",result="ok"}`); v != 1 {
		t.Fatalf("rpc calls ok = %v", v)
	}
}

// TestBackendRefresh: credentials the connect hook gave are extended by
// the refresh hook when they expire, and end (4005) when it says so.
func TestBackendRefresh(t *testing.T) {
	b := newAppBackend(t)
	b.expireAt = time.Now().Add(1500 * time.Millisecond).Unix()
	b.refresh = fmt.Sprintf(`{"result":{"expire_at":%d}}`, time.Now().Add(time.Hour).Unix())
	ts := start(t, withBackend(b, nil))
	c := ts.dialHeaders(map[string]string{"Cookie": "session=alice-secret"})
	c.MustCall(map[string]any{"command": "connect"})
	deadline := time.Now().Add(5 * time.Second)
	for {
		if body, _ := b.last("refresh"); body != nil {
			if body["user"] != "alice" {
				t.Fatalf("refresh body %v", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the refresh hook was not called at expiry")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // past two sweeps: still open
	c.MustCall(map[string]any{"command": "ping"})

	// A refresh command without a token asks the hook too.
	b.mu.Lock()
	b.refresh = `{"result":{"expired":true}}`
	b.mu.Unlock()
	c.Send(map[string]any{"id": 7, "command": "refresh"})
	if code := c.ExpectClose(); code != 4005 {
		t.Fatalf("closed with %d, want 4005", code)
	}
}

// TestBackendDownOrSlow: a backend that is not listening, or that answers
// after proxy_timeout, gives every hooked command a 503 within bounded
// time, and the connection stays usable (connect may be retried).
func TestBackendDownOrSlow(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	_ = ln.Close()
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer func() {
		close(release)
		slow.CloseClientConnections()
		slow.Close()
	}()
	const timeout = 300 * time.Millisecond
	for name, url := range map[string]string{"down": down, "slow": slow.URL} {
		t.Run(name, func(t *testing.T) {
			ts := start(t, func(c *config.Config) {
				c.ProxyConnectEndpoint = url + "/connect"
				c.ProxySubscribeEndpoint = url + "/subscribe"
				c.ProxyPublishEndpoint = url + "/publish"
				c.ProxyRPCEndpoint = url + "/rpc"
				c.ProxyTimeout = timeout
			})
			c := ts.dial()
			for _, cmd := range []map[string]any{
				{"command": "connect"},
				{"command": "subscribe", "channel": "a"},
				{"command": "publish", "channel": "a", "data": 1},
				{"command": "rpc", "method": "m"},
			} {
				begin := time.Now()
				r := c.Call(cmd)
				if errorCode(r) != 503 {
					t.Fatalf("%v: %v", cmd["command"], r)
				}
				if msg := r["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "application backend") {
					t.Fatalf("%v: message %q", cmd["command"], msg)
				}
				if d := time.Since(begin); d > timeout+2*time.Second {
					t.Fatalf("%v answered after %s (proxy_timeout %s)", cmd["command"], d, timeout)
				}
			}
			c.MustCall(map[string]any{"command": "ping"})
			result := "unavailable"
			if name == "slow" {
				result = "timeout"
			}
			if v := ts.metric(`switchboard_proxy_calls_total{hook="subscribe",result="` + result + `"}`); v != 1 {
				t.Fatalf("subscribe %s counted %v", result, v)
			}
		})
	}
}

// TestBackendBadAnswers: a backend that answers garbage JSON, a huge body,
// the wrong content type or a redirect gives the client the documented 503
// and no crash; once the node stops, no goroutine is left behind.
func TestBackendBadAnswers(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	huge := strings.Repeat(" ", 2<<20) + `{"result":{}}`
	answers := map[string]http.HandlerFunc{
		"garbage": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"result":{"data":`)
		},
		"huge": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, huge)
		},
		"content type": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = io.WriteString(w, `{"result":{}}`)
		},
		"redirect": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://127.0.0.1:1/", http.StatusFound)
		},
	}
	for name, h := range answers {
		t.Run(name, func(t *testing.T) {
			backend := httptest.NewServer(h)
			ts := start(t, func(c *config.Config) {
				c.ProxyConnectEndpoint = backend.URL
				c.ProxyRPCEndpoint = backend.URL
				c.ProxySubscribeEndpoint = backend.URL
			})
			c := ts.dialHeaders(map[string]string{"Cookie": "a=b"})
			for _, cmd := range []map[string]any{
				{"command": "connect"},
				{"command": "subscribe", "channel": "a"},
				{"command": "rpc", "method": "m"},
			} {
				r := c.Call(cmd)
				if errorCode(r) != 503 || !strings.Contains(r["error"].(map[string]any)["message"].(string), "answered invalidly") {
					t.Fatalf("%v: %v", cmd["command"], r)
				}
			}
			c.MustCall(map[string]any{"command": "ping"})
			_ = c.Conn.Close()
			if err := ts.Stop(); err != nil {
				t.Fatal(err)
			}
			backend.CloseClientConnections()
			backend.Close()
		})
	}
	http.DefaultClient.CloseIdleConnections()
}

// TestAPIDisconnectUser: POST /api/disconnect {"user"} closes every
// connection of the user (here admitted by the connect hook), and no one
// else's.
func TestAPIDisconnectUser(t *testing.T) {
	b := newAppBackend(t)
	ts := start(t, withBackend(b, nil))
	var tabs []*wstest.Client
	for range 2 {
		c := ts.dialHeaders(map[string]string{"Cookie": "session=alice-secret"})
		c.MustCall(map[string]any{"command": "connect"})
		tabs = append(tabs, c)
	}
	other := ts.dial() // anonymous: the hook refuses it, anonymous clients may stay
	if r := other.Call(map[string]any{"command": "connect"}); errorCode(r) != 401 {
		t.Fatalf("anonymous connect: %v", r)
	}
	if status, m := ts.api("POST", "/api/disconnect", testKey, `{"user":"alice"}`); status != 200 {
		t.Fatalf("disconnect: %d %v", status, m)
	}
	for i, c := range tabs {
		if code := c.ExpectClose(); code != 4500 {
			t.Fatalf("tab %d closed with %d, want 4500", i, code)
		}
	}
	other.MustCall(map[string]any{"command": "ping"})
	if status, _ := ts.api("POST", "/api/disconnect", testKey, `{"user":"nobody","reconnect":true}`); status != 200 {
		t.Fatalf("disconnect of a user without connections: %d", status)
	}
}

// TestBackendHTTPTransportsByCookie: SSE, long polling and HTTP publish
// ask the connect hook too when a request has no token, so a session
// cookie works on every transport (allow_anonymous off, no token key);
// their subscriptions and publications go through the hooks.
func TestBackendHTTPTransportsByCookie(t *testing.T) {
	b := newAppBackend(t)
	ts := start(t, withBackend(b, func(c *config.Config) { c.AllowAnonymous = false }))
	cookie := http.Header{"Cookie": {"session=alice-secret"}}

	s := ssetest.Open(t, nil, "http://"+ts.Addr()+"/sse?channel=chat", cookie)
	defer s.Close()
	for ev := s.NextData(); ev.Type != "connected"; ev = s.NextData() {
	}
	if body, _ := b.last("connect"); body["transport"] != "sse" || body["client"] != "" {
		t.Fatalf("connect hook body for SSE: %v", body)
	}
	if body, _ := b.last("subscribe"); body["user"] != "alice" || body["channel"] != "chat" {
		t.Fatalf("subscribe hook body for SSE: %v", body)
	}
	for _, tc := range []struct {
		query, cookie string
		want          int
	}{{"channel=secret", "session=alice-secret", http.StatusForbidden}, {"channel=chat", "session=forged", http.StatusUnauthorized}} {
		_, resp, _ := ssetest.OpenErr(t, nil, "http://"+ts.Addr()+"/sse?"+tc.query, http.Header{"Cookie": {tc.cookie}})
		if resp == nil {
			t.Fatalf("SSE %s with %s: no answer", tc.query, tc.cookie)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Fatalf("SSE %s with %s: %d, want %d", tc.query, tc.cookie, resp.StatusCode, tc.want)
		}
	}

	a := ts.httpDo("POST", "/publish", map[string]string{"Cookie": "session=alice-secret", "Content-Type": "application/json"}, `{"channel":"chat","data":{"text":"from http"}}`)
	if a.status != 200 {
		t.Fatalf("HTTP publish with the cookie: %d %v", a.status, a.body)
	}
	ev := s.NextData()
	var pub map[string]any
	if err := json.Unmarshal([]byte(ev.Data), &pub); err != nil {
		t.Fatal(err)
	}
	if d, _ := pub["data"].(map[string]any); d["text"] != "FROM HTTP" || d["by"] != "alice" {
		t.Fatalf("SSE got %v", ev.Data)
	}
	if a := ts.httpDo("POST", "/publish", map[string]string{"Content-Type": "application/json"}, `{"channel":"chat","data":1}`); a.status != 401 {
		t.Fatalf("HTTP publish without the cookie: %d %v", a.status, a.body)
	}

	p := ts.pollOK("channel=chat&timeout=0", map[string]string{"Cookie": "session=alice-secret"})
	if body, _ := b.last("connect"); body["transport"] != "longpoll" {
		t.Fatalf("connect hook body for polling: %v (%v)", body, p.body)
	}
	if a := ts.httpDo("GET", "/poll?channel=chat&timeout=0", map[string]string{"Cookie": "session=forged"}, ""); a.status != 401 {
		t.Fatalf("poll with a forged cookie: %d %v", a.status, a.body)
	}
}
