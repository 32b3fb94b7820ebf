package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/protocol"
	"github.com/switchboardhq/switchboard/internal/proxy"
)

// TestMain fails the run when a test leaves a goroutine behind: every
// backend is closed and every client's idle connections released.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// backend serves handler on loopback and returns its URL; the server and
// the client's connections are closed when the test ends.
func backend(t *testing.T, c *proxy.Client, handler http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(func() {
		c.Close()
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv.URL
}

func jsonAnswer(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}
}

// TestAnswers runs one publish call per kind of answer a backend may give,
// well-formed or not, and checks what the caller gets: a result, the
// backend's mapped error or disconnect, or a failure that the client sees
// as 503.
func TestAnswers(t *testing.T) {
	huge := `{"result":{"data":"` + strings.Repeat("x", 2<<20) + `"}}`
	tests := map[string]struct {
		handler  http.HandlerFunc
		wantData string          // the result's data, when allowed
		wantErr  *protocol.Error // the client-visible error
		wantDisc *protocol.Disconnect
		wantIs   error // the failure, when the backend failed
	}{
		"allowed":   {handler: jsonAnswer(`{"result":{}}`)},
		"rewritten": {handler: jsonAnswer(`{"result":{"data":{"text":"HELLO"}}}`), wantData: `{"text":"HELLO"}`},
		"charset in type": {handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			_, _ = io.WriteString(w, `{"result":{}}`)
		}},
		"refused with 403":        {handler: jsonAnswer(`{"error":{"code":403,"message":"not a member"}}`), wantErr: &protocol.Error{Code: 403, Message: "not a member"}},
		"refused with app code":   {handler: jsonAnswer(`{"error":{"code":3001,"message":"muted"}}`), wantErr: &protocol.Error{Code: 3001, Message: "muted"}},
		"refused with a 409":      {handler: jsonAnswer(`{"error":{"code":409,"message":"x"}}`), wantErr: &protocol.Error{Code: 403, Message: "x"}},
		"refused without text":    {handler: jsonAnswer(`{"error":{"code":3002}}`), wantErr: &protocol.Error{Code: 3002, Message: "refused by the application backend"}},
		"disconnect":              {handler: jsonAnswer(`{"disconnect":{"code":4600,"reason":"banned"}}`), wantDisc: &protocol.Disconnect{Code: 4600, Reason: "banned"}},
		"disconnect out of range": {handler: jsonAnswer(`{"disconnect":{"code":1000,"reason":"x"}}`), wantDisc: &protocol.Disconnect{Code: 4500, Reason: "x"}},
		"garbage":                 {handler: jsonAnswer(`{"result":`), wantIs: proxy.ErrBadAnswer},
		"not an object":           {handler: jsonAnswer(`[1,2]`), wantIs: proxy.ErrBadAnswer},
		"empty object":            {handler: jsonAnswer(`{}`), wantIs: proxy.ErrBadAnswer},
		"result and error":        {handler: jsonAnswer(`{"result":{},"error":{"code":403}}`), wantIs: proxy.ErrBadAnswer},
		"wrong field type":        {handler: jsonAnswer(`{"error":{"code":"403"}}`), wantIs: proxy.ErrBadAnswer},
		"huge body":               {handler: jsonAnswer(huge), wantIs: proxy.ErrBadAnswer},
		"huge body, no length": {handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			for i := 0; i < 40; i++ { // chunked: no Content-Length to refuse early
				_, _ = io.WriteString(w, strings.Repeat(" ", 64<<10))
				w.(http.Flusher).Flush()
			}
		}, wantIs: proxy.ErrBadAnswer},
		"wrong content type": {handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = io.WriteString(w, `{"result":{}}`)
		}, wantIs: proxy.ErrBadAnswer},
		"no content type": {handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = nil
			_, _ = io.WriteString(w, `{"result":{}}`)
		}, wantIs: proxy.ErrBadAnswer},
		"redirect": {handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://127.0.0.1:1/elsewhere", http.StatusTemporaryRedirect)
		}, wantIs: proxy.ErrBadAnswer},
		"HTTP 500": {handler: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "boom", http.StatusInternalServerError)
		}, wantIs: proxy.ErrUnavailable},
		"connection cut": {handler: func(w http.ResponseWriter, r *http.Request) {
			conn, _, _ := w.(http.Hijacker).Hijack()
			_ = conn.Close()
		}, wantIs: proxy.ErrUnavailable},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := proxy.New(proxy.Options{Timeout: 2 * time.Second})
			url := backend(t, c, tc.handler)
			res, err := c.Publish(context.Background(), url, proxy.PublishRequest{Client: "c1", User: "alice", Channel: "chat", Data: json.RawMessage(`{"text":"hello"}`)})
			switch {
			case tc.wantErr != nil:
				var perr *protocol.Error
				if !errors.As(err, &perr) || *perr != *tc.wantErr {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			case tc.wantDisc != nil:
				var d protocol.Disconnect
				if !errors.As(err, &d) || d != *tc.wantDisc {
					t.Fatalf("err = %v, want %v", err, *tc.wantDisc)
				}
				if proxy.PublicError(err) != nil {
					t.Fatal("a disconnect has a public error")
				}
			case tc.wantIs != nil:
				if !errors.Is(err, tc.wantIs) {
					t.Fatalf("err = %v, want %v", err, tc.wantIs)
				}
				if pe := proxy.PublicError(err); pe.Code != protocol.ErrUnavailable.Code {
					t.Fatalf("public error %v, want 503", pe)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if string(res.Data) != tc.wantData {
					t.Fatalf("data = %s, want %s", res.Data, tc.wantData)
				}
			}
		})
	}
}

// TestRequest checks what the backend receives: a JSON POST with the
// request's fields, and for connect the client's headers both in the body
// and as HTTP headers.
func TestRequest(t *testing.T) {
	c := proxy.New(proxy.Options{})
	var got *http.Request
	var body []byte
	url := backend(t, c, func(w http.ResponseWriter, r *http.Request) {
		got = r
		body, _ = io.ReadAll(r.Body)
		jsonAnswer(`{"result":{"user":"alice","expire_at":1900000000,"channels":["news"],"info":{"name":"Alice"},"data":{"hi":1}}}`)(w, r)
	})
	res, err := c.Connect(context.Background(), url, proxy.ConnectRequest{
		Client: "c1", Transport: "websocket", RemoteAddr: "127.0.0.1:5000",
		Headers: map[string]string{"Cookie": "session=abc", "User-Agent": "test-browser"},
		Data:    json.RawMessage(`{"x":1}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.User != "alice" || res.ExpireAt != 1900000000 || len(res.Channels) != 1 || string(res.Info) != `{"name":"Alice"}` || string(res.Data) != `{"hi":1}` {
		t.Fatalf("result %+v", res)
	}
	if got.Method != http.MethodPost || got.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%s with content type %q", got.Method, got.Header.Get("Content-Type"))
	}
	if got.Header.Get("Cookie") != "session=abc" || got.Header.Get("User-Agent") != "test-browser" {
		t.Fatalf("headers %v", got.Header)
	}
	var req map[string]any
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatal(err)
	}
	want := `{"client":"c1","data":{"x":1},"headers":{"Cookie":"session=abc","User-Agent":"test-browser"},"remote_addr":"127.0.0.1:5000","transport":"websocket"}`
	if b, _ := json.Marshal(req); string(b) != want {
		t.Fatalf("body %s, want %s", b, want)
	}
}

// TestDownAndSlow: a backend that is not listening, or that answers after
// the timeout, fails the call within the timeout (plus scheduling slack),
// never later.
func TestDownAndSlow(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downURL := "http://" + ln.Addr().String()
	_ = ln.Close()

	const timeout = 300 * time.Millisecond
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	c := proxy.New(proxy.Options{Timeout: timeout, Metrics: m})
	release := make(chan struct{})
	slowURL := backend(t, c, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	// A backend that sends its headers and the start of a body, then
	// stalls: the timeout covers reading the body too.
	stallURL := backend(t, c, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"result":`)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)

	for name, tc := range map[string]struct {
		url  string
		want error
	}{"down": {downURL, proxy.ErrUnavailable}, "slow": {slowURL, proxy.ErrTimeout}, "stalled body": {stallURL, proxy.ErrTimeout}} {
		start := time.Now()
		_, err := c.RPC(context.Background(), tc.url, proxy.RPCRequest{Client: "c1", Method: "m"})
		if !errors.Is(err, tc.want) {
			t.Fatalf("%s: err = %v, want %v", name, err, tc.want)
		}
		if d := time.Since(start); d > timeout+2*time.Second {
			t.Fatalf("%s: failed after %s, timeout %s", name, d, timeout)
		}
	}
	if v := metrics.Value(m.ProxyCalls.WithLabelValues("rpc", proxy.ResultTimeout)); v != 2 {
		t.Fatalf("rpc timeouts counted %v, want 2", v)
	}
	if v := metrics.Value(m.ProxyCalls.WithLabelValues("rpc", proxy.ResultUnavailable)); v != 1 {
		t.Fatalf("rpc unavailable counted %v, want 1", v)
	}
}

// TestConcurrencyLimit: with one slot per hook, a second call waits for
// the first; when the first outlives the timeout the second fails with
// ErrBusy. Other hooks have their own slots.
func TestConcurrencyLimit(t *testing.T) {
	c := proxy.New(proxy.Options{Timeout: 300 * time.Millisecond, MaxConcurrency: 1})
	entered := make(chan struct{}, 4)
	release := make(chan struct{})
	url := backend(t, c, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/slow") {
			entered <- struct{}{}
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		jsonAnswer(`{"result":{}}`)(w, r)
	})
	defer close(release)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = c.Subscribe(context.Background(), url+"/slow", proxy.SubscribeRequest{Channel: "a"})
	}()
	<-entered
	// A shorter deadline than the first call's, so that its slot is not
	// freed by its own timeout first.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Subscribe(ctx, url+"/fast", proxy.SubscribeRequest{Channel: "b"})
	if !errors.Is(err, proxy.ErrBusy) {
		t.Fatalf("second subscribe: err = %v, want ErrBusy", err)
	}
	if _, err := c.Publish(context.Background(), url+"/fast", proxy.PublishRequest{Channel: "b"}); err != nil {
		t.Fatalf("publish has its own slots: %v", err)
	}
	wg.Wait()
}

func TestBackendError(t *testing.T) {
	long := strings.Repeat("é", 300)
	for _, tc := range []struct {
		code     int
		msg      string
		wantCode int
	}{{400, "m", 400}, {401, "m", 401}, {403, "m", 403}, {404, "m", 403}, {413, "m", 413}, {429, "m", 429}, {500, "m", 403}, {503, "m", 503}, {2999, "m", 403}, {3000, "m", 3000}, {3999, "m", 3999}, {4000, "m", 403}, {-1, "m", 403}, {403, long, 403}, {403, "a\nb\x00", 403}} {
		e := proxy.BackendError(tc.code, tc.msg)
		if e.Code != tc.wantCode || len(e.Message) > proxy.MaxMessageLen || strings.ContainsAny(e.Message, "\n\x00") {
			t.Errorf("BackendError(%d, %.10q) = %d %.10q", tc.code, tc.msg, e.Code, e.Message)
		}
	}
	if d := proxy.BackendDisconnect(4999, strings.Repeat("x", 200)); d.Code != 4999 || len(d.Reason) != proxy.MaxReasonLen {
		t.Errorf("disconnect %v", d)
	}
}

func TestPickHeaders(t *testing.T) {
	h := http.Header{}
	h.Add("Cookie", "a=1")
	h.Add("Cookie", "b=2")
	h.Set("Authorization", "Bearer x")
	h.Set("X-Secret", "no")
	got := proxy.PickHeaders(h, []string{"cookie", "Authorization", "Origin"})
	if len(got) != 2 || got["Cookie"] != "a=1; b=2" || got["Authorization"] != "Bearer x" {
		t.Fatalf("got %v", got)
	}
	if proxy.PickHeaders(h, []string{"Origin"}) != nil {
		t.Fatal("no header picked must be nil")
	}
	for _, bad := range []string{"Host", "content-length", "Connection", ""} {
		if proxy.CheckPassHeader(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if proxy.CheckPassHeader("X-Tenant") != nil {
		t.Error("X-Tenant refused")
	}
	for _, u := range []string{"ftp://x", "/relative", "http://", ":"} {
		if proxy.CheckEndpoint(u) == nil {
			t.Errorf("endpoint %q accepted", u)
		}
	}
	if err := proxy.CheckEndpoint("http://127.0.0.1:3000/switchboard/connect"); err != nil {
		t.Error(err)
	}
}

// FuzzAnswer feeds arbitrary answers to a call: it must return a result
// or an error, never panic, and any error must have a public form or be a
// disconnect.
func FuzzAnswer(f *testing.F) {
	for _, s := range []string{`{"result":{}}`, `{"result":{"data":[1]}}`, `{"error":{"code":3001,"message":"x"}}`, `{"disconnect":{"code":4500,"reason":"y"}}`, `{}`, `null`, `{"result":null}`, `{"result":1}`, `{"error":{"code":1e99}}`, "\xff"} {
		f.Add([]byte(s))
	}
	rt := &fixedTransport{}
	c := proxy.New(proxy.Options{Transport: rt, Logger: slog.New(slog.DiscardHandler)})
	f.Fuzz(func(t *testing.T, body []byte) {
		rt.body = body
		_, err := c.Publish(context.Background(), "http://backend.invalid/publish", proxy.PublishRequest{Channel: "x"})
		if err == nil {
			return
		}
		var d protocol.Disconnect
		if !errors.As(err, &d) && proxy.PublicError(err) == nil {
			t.Fatalf("error %v has no public form", err)
		}
		if d.Code != 0 && (d.Code < 4000 || d.Code > 4999) {
			t.Fatalf("disconnect code %d", d.Code)
		}
	})
}

// fixedTransport answers every request with body as JSON, without a
// network.
type fixedTransport struct{ body []byte }

func (ft *fixedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(string(ft.body))), ContentLength: int64(len(ft.body)), Request: r,
	}, nil
}
