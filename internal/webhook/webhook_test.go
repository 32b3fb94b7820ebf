package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/switchboardhq/switchboard/internal/broker/memory"
	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/webhook"
)

var secret = []byte("test-secret")

// receiver is a webhook endpoint that keeps each event once, in the order
// of first arrival, and checks every request's signature.
type receiver struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	seen     map[string]bool
	events   []webhook.Event
	requests int
	// fail, when set, answers a request instead of the receiver (n is
	// the request's number from 1) and reports whether it did.
	fail func(w http.ResponseWriter, r *http.Request, n int) bool
}

func newReceiver(t testing.TB) *receiver {
	rc := &receiver{t: t, seen: map[string]bool{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	rc.requests++
	n, fail := rc.requests, rc.fail
	rc.mu.Unlock()
	if fail != nil && fail(w, r, n) {
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if err := webhook.Verify(secret, body, r.Header.Get(webhook.SignatureHeader)); err != nil {
		rc.t.Errorf("request %d: %v", n, err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var b webhook.Batch
	if err := json.Unmarshal(body, &b); err != nil {
		rc.t.Errorf("request %d: %v", n, err)
		return
	}
	rc.mu.Lock()
	for _, e := range b.Events {
		if !rc.seen[e.ID] {
			rc.seen[e.ID] = true
			rc.events = append(rc.events, e)
		}
	}
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// got returns the events received so far.
func (rc *receiver) got() []webhook.Event {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]webhook.Event(nil), rc.events...)
}

// wait waits until n events arrived and returns them.
func (rc *receiver) wait(n int) []webhook.Event {
	rc.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if ev := rc.got(); len(ev) >= n {
			return ev
		}
		if time.Now().After(deadline) {
			rc.t.Fatalf("%d events arrived, want %d: %+v", len(rc.got()), n, rc.got())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dispatcher starts a dispatcher on q for node, sending to rc.
func dispatcher(t testing.TB, q webhook.Queue, node string, rc *receiver, mutate func(*webhook.Options)) (*webhook.Dispatcher, *metrics.Metrics) {
	t.Helper()
	m := metrics.New(prometheus.NewRegistry())
	opts := webhook.Options{
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Endpoint: rc.srv.URL, Secret: secret, Queue: q, NodeID: node, Metrics: m,
		Partitions: 4, BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond,
		LeaseTTL: 300 * time.Millisecond, PollInterval: 5 * time.Millisecond,
		Timeout: 2 * time.Second,
	}
	if mutate != nil {
		mutate(&opts)
	}
	d, err := webhook.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	return d, m
}

// summary is an event's type, channel, user and client, for comparison.
func summary(evs []webhook.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = strings.Join([]string{e.Type, e.Channel, e.User, e.Client, e.Reason}, " ")
	}
	return out
}

func equal(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestMembership: two tabs of one user make one member.added, and the user
// is removed when the last tab leaves; an anonymous client occupies a
// channel but is no member; events come in order per channel.
func TestMembership(t *testing.T) {
	ctx := context.Background()
	rc := newReceiver(t)
	d, _ := dispatcher(t, memory.New(memory.Options{}), "n1", rc, nil)
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	d.ClientConnected(ctx, "n1-1", "alice", "websocket")
	must(d.Joined(ctx, "room", "n1-1", "alice"))
	must(d.Joined(ctx, "room", "n1-2", "alice")) // second tab
	must(d.Joined(ctx, "room", "n1-3", ""))      // anonymous
	d.Left(ctx, "room", "n1-1", "alice")
	d.Left(ctx, "room", "n1-2", "alice")
	d.Left(ctx, "room", "n1-3", "")
	d.Left(ctx, "room", "n1-3", "") // twice: no effect
	d.ClientDisconnected(ctx, "n1-1", "alice", "websocket")
	evs := rc.wait(6)
	var room []webhook.Event
	for _, e := range evs {
		if e.Channel == "room" {
			room = append(room, e)
		}
	}
	equal(t, summary(room), []string{
		"channel.occupied room alice n1-1 ",
		"member.added room alice n1-1 ",
		"member.removed room alice n1-2 ",
		"channel.vacated room  n1-3 ",
	})
	ids := map[string]bool{}
	for _, e := range evs {
		if e.ID == "" || ids[e.ID] || e.Time.IsZero() || e.Node != "n1" {
			t.Fatalf("event %+v: id missing or repeated, or no time or node", e)
		}
		ids[e.ID] = true
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(rc.got()); n != 6 {
		t.Fatalf("%d events, want 6: %v", n, summary(rc.got()))
	}
}

// TestSelection: events not selected are not sent, and a channel whose
// namespace selects no channel event writes nothing.
func TestSelection(t *testing.T) {
	ctx := context.Background()
	rc := newReceiver(t)
	d, m := dispatcher(t, memory.New(memory.Options{}), "n1", rc, func(o *webhook.Options) {
		o.Selected = func(ch, typ string) bool {
			return !strings.HasPrefix(ch, "quiet:") && typ != webhook.MemberAdded && typ != webhook.ClientConnected
		}
	})
	d.ClientConnected(ctx, "c1", "u", "sse")
	_ = d.Joined(ctx, "quiet:x", "c1", "u")
	_ = d.Joined(ctx, "loud", "c1", "u")
	d.Left(ctx, "loud", "c1", "u")
	equal(t, summary(rc.wait(3)), []string{
		"channel.occupied loud u c1 ",
		"member.removed loud u c1 ",
		"channel.vacated loud u c1 ",
	})
	if n := value(m.WebhookEmitted.WithLabelValues("join")); n != 1 {
		t.Fatalf("%v joins written, want 1 (quiet:x not)", n)
	}
}

// TestRetriedUntilDelivered: a receiver that fails the first 3 requests
// gets every event in the end, each id once after dedupe.
func TestRetriedUntilDelivered(t *testing.T) {
	ctx := context.Background()
	rc := newReceiver(t)
	rc.fail = func(w http.ResponseWriter, _ *http.Request, n int) bool {
		if n <= 3 {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	d, m := dispatcher(t, memory.New(memory.Options{}), "n1", rc, func(o *webhook.Options) { o.Partitions = 1 })
	for _, c := range []string{"a", "b", "c"} {
		d.ClientConnected(ctx, c, "", "websocket")
		if err := d.Joined(ctx, "ch-"+c, c, "u-"+c); err != nil {
			t.Fatal(err)
		}
	}
	evs := rc.wait(9)
	if len(evs) != 9 {
		t.Fatalf("%d events: %v", len(evs), summary(evs))
	}
	if r := value(m.WebhookRetries); r < 3 {
		t.Fatalf("%v retries, want at least 3", r)
	}
	if f := value(m.WebhookFailures.WithLabelValues("status")); f != 3 {
		t.Fatalf("%v failures, want 3", f)
	}
}

// TestBadReceiver: redirects, huge or garbage answers and answers slower
// than the timeout are failures, retried until a good answer; nothing
// leaks (TestMain checks goroutines).
func TestBadReceiver(t *testing.T) {
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		t.Error("the redirect was followed")
	}))
	defer elsewhere.Close()
	stop := make(chan struct{})
	defer close(stop)
	cases := map[string]func(w http.ResponseWriter, r *http.Request){
		"redirect": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, elsewhere.URL, http.StatusTemporaryRedirect)
		},
		"huge answer": func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
			chunk := []byte(strings.Repeat("x", 64<<10))
			for range 256 { // 16 MiB, more than is ever read
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		},
		"garbage": func(w http.ResponseWriter, r *http.Request) {
			conn, buf, err := w.(http.Hijacker).Hijack()
			if err != nil {
				return
			}
			_, _ = buf.WriteString("HTTP/1.1 2OO NOT HTTP\r\n\x00\x01\x02")
			_ = buf.Flush()
			_ = conn.Close()
		},
		"slow beyond the timeout": func(w http.ResponseWriter, r *http.Request) {
			// With the body read, the server notices the client leave.
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-stop:
			}
		},
		"reset": func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		},
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			rc := newReceiver(t)
			rc.fail = func(w http.ResponseWriter, r *http.Request, n int) bool {
				if n <= 2 {
					bad(w, r)
					return true
				}
				return false
			}
			d, m := dispatcher(t, memory.New(memory.Options{}), "n1", rc, func(o *webhook.Options) {
				o.Timeout = 200 * time.Millisecond
				o.Partitions = 1
			})
			_ = d.Joined(context.Background(), "x", "c", "u")
			equal(t, summary(rc.wait(2)), []string{"channel.occupied x u c ", "member.added x u c "})
			if f := value(m.WebhookRetries); f < 2 {
				t.Fatalf("%v retries, want 2", f)
			}
			d.Stop()
		})
	}
}

// TestNodeGone: when a node stops marking itself alive, another node's
// sender removes its clients: channel.vacated and member.removed with
// reason node_gone, once.
func TestNodeGone(t *testing.T) {
	ctx := context.Background()
	q := memory.New(memory.Options{})
	rc := newReceiver(t)
	dead, _ := dispatcher(t, q, "dead", rc, nil)
	live, _ := dispatcher(t, q, "live", rc, nil)
	if err := dead.Joined(ctx, "ch", "dead-1", "bob"); err != nil {
		t.Fatal(err)
	}
	if err := live.Joined(ctx, "ch", "live-1", "carol"); err != nil {
		t.Fatal(err)
	}
	if err := dead.Joined(ctx, "other", "dead-1", "bob"); err != nil {
		t.Fatal(err)
	}
	if err := dead.ClientConnected(ctx, "dead-1", "bob", "websocket"); err != nil {
		t.Fatal(err)
	}
	rc.wait(6)
	dead.Stop() // no leaves, no disconnection: as if killed
	evs := rc.wait(10)
	var gone []string
	for _, e := range evs[6:] {
		gone = append(gone, e.Type+" "+e.Channel+" "+e.Reason)
	}
	equal(t, sortStrings(gone), []string{
		"channel.vacated other node_gone",
		"client.disconnected  node_gone",
		"member.removed ch node_gone",
		"member.removed other node_gone",
	})
	time.Sleep(100 * time.Millisecond) // nothing more comes
	if n := len(rc.got()); n != 10 {
		t.Fatalf("%d events, want 10: %v", n, summary(rc.got()))
	}
}

// TestConnections: a client.disconnected is sent once per
// client.connected: a repeated connection fact adds nothing, and a
// disconnection of a client not connected (already removed with its node,
// or undoing a refused connection) sends nothing. A new sender of the
// partition knows the connected clients from the stored state.
func TestConnections(t *testing.T) {
	ctx := context.Background()
	q := memory.New(memory.Options{})
	rc := newReceiver(t)
	d, _ := dispatcher(t, q, "n1", rc, func(o *webhook.Options) { o.Partitions = 1 })
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(d.ClientConnected(ctx, "n1-1", "alice", "websocket"))
	must(d.ClientConnected(ctx, "n1-1", "alice", "websocket")) // reported again (a rejoin)
	d.ClientDisconnected(ctx, "n1-9", "", "sse")               // never connected
	must(d.ClientConnected(ctx, "n1-2", "", "sse"))
	rc.wait(2)
	d.Stop() // another sender takes the partition, with the stored state
	d2, _ := dispatcher(t, q, "n1", rc, func(o *webhook.Options) { o.Partitions = 1 })
	d2.ClientDisconnected(ctx, "n1-1", "alice", "websocket")
	d2.ClientDisconnected(ctx, "n1-1", "alice", "websocket") // twice: no effect
	d2.ClientDisconnected(ctx, "n1-2", "", "sse")
	evs := rc.wait(4)
	time.Sleep(100 * time.Millisecond) // nothing more comes
	equal(t, summary(rc.got()), []string{
		"client.connected  alice n1-1 ",
		"client.connected   n1-2 ",
		"client.disconnected  alice n1-1 ",
		"client.disconnected   n1-2 ",
	})
	if evs[2].Transport != "websocket" || evs[3].Transport != "sse" {
		t.Fatalf("transports of the disconnections: %+v", evs[2:])
	}
}

func sortStrings(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

// TestVerify: the documented check accepts the signature Switchboard
// sends and refuses forged ones.
func TestVerify(t *testing.T) {
	body := []byte(`{"events":[{"id":"1","type":"channel.occupied"}]}`)
	good := webhook.Sign(secret, body)
	if err := webhook.Verify(secret, body, good); err != nil {
		t.Fatalf("genuine signature refused: %v", err)
	}
	cases := map[string]struct {
		body   []byte
		header string
	}{
		"body changed":     {[]byte(strings.Replace(string(body), "occupied", "vacated", 1)), good},
		"other secret":     {body, webhook.Sign([]byte("guess"), body)},
		"no header":        {body, ""},
		"no prefix":        {body, strings.TrimPrefix(good, "sha256=")},
		"not hex":          {body, "sha256=" + strings.Repeat("zz", 32)},
		"short":            {body, good[:len(good)-2]},
		"upper-case algo":  {body, "SHA256=" + strings.TrimPrefix(good, "sha256=")},
		"one digit off":    {body, good[:len(good)-1] + flip(good[len(good)-1])},
		"empty signature":  {body, "sha256="},
		"sha1 of the body": {body, "sha1=" + strings.TrimPrefix(good, "sha256=")},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if err := webhook.Verify(secret, tc.body, tc.header); !errors.Is(err, webhook.ErrBadSignature) {
				t.Fatalf("forged request accepted (%v)", err)
			}
		})
	}
}

func flip(c byte) string {
	if c == '0' {
		return "1"
	}
	return "0"
}

// value reads a counter.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// TestRejoin: a node whose liveness mark expired (it was cut off from the
// broker) and whose clients another node removed reports its live
// subscriptions again when its mark is back, so the channel is occupied
// again.
func TestRejoin(t *testing.T) {
	ctx := context.Background()
	q := memory.New(memory.Options{})
	rc := newReceiver(t)
	cut, _ := dispatcher(t, q, "a", rc, nil)
	dispatcher(t, q, "b", rc, nil)
	if err := cut.Joined(ctx, "ch", "a-1", "ann"); err != nil {
		t.Fatal(err)
	}
	rc.wait(2)
	cut.Stop() // no beats: b removes a's client
	rc.wait(4)
	// a's connection lived on; its node reaches the broker again.
	var back *webhook.Dispatcher
	back, err := webhook.New(webhook.Options{
		Endpoint: rc.srv.URL, Secret: secret, Queue: q, NodeID: "a", Metrics: metrics.New(prometheus.NewRegistry()),
		Partitions: 4, LeaseTTL: 300 * time.Millisecond, PollInterval: 5 * time.Millisecond,
		Rejoin: func(ctx context.Context) {
			if err := back.Joined(ctx, "ch", "a-1", "ann"); err != nil {
				t.Error(err)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := back.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer back.Stop()
	equal(t, summary(rc.wait(6)), []string{
		"channel.occupied ch ann a-1 ",
		"member.added ch ann a-1 ",
		"member.removed ch ann a-1 node_gone",
		"channel.vacated ch ann a-1 node_gone",
		"channel.occupied ch ann a-1 ",
		"member.added ch ann a-1 ",
	})
}
