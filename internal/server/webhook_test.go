package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/webhook"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

const hookSecret = "webhook-test-secret"

// hookReceiver is a webhook endpoint: it checks signatures, keeps each
// event once (by id) in arrival order, and notes which node sent it.
type hookReceiver struct {
	t    *testing.T
	srv  *httptest.Server
	down atomic.Bool // answer 503 to everything

	mu      sync.Mutex
	seen    map[string]bool
	events  []webhook.Event
	senders map[string]int // requests by X-Switchboard-Node, while up
}

func newHookReceiver(t *testing.T) *hookReceiver {
	rc := &hookReceiver{t: t, seen: map[string]bool{}, senders: map[string]int{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		if rc.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if err := webhook.Verify([]byte(hookSecret), body, r.Header.Get(webhook.SignatureHeader)); err != nil {
			t.Errorf("webhook request: %v", err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var b webhook.Batch
		if err := json.Unmarshal(body, &b); err != nil {
			t.Errorf("webhook request: %v", err)
			return
		}
		rc.mu.Lock()
		rc.senders[r.Header.Get(webhook.NodeHeader)]++
		for _, e := range b.Events {
			if !rc.seen[e.ID] {
				rc.seen[e.ID] = true
				rc.events = append(rc.events, e)
			}
		}
		rc.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

// channel returns the events of one channel, as "type user", in order.
func (rc *hookReceiver) channel(ch string) []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for _, e := range rc.events {
		if e.Channel == ch {
			out = append(out, strings.TrimSpace(e.Type+" "+e.User+" "+e.Reason))
		}
	}
	return out
}

// count returns how many events of typ arrived.
func (rc *hookReceiver) count(typ string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	n := 0
	for _, e := range rc.events {
		if e.Type == typ {
			n++
		}
	}
	return n
}

func (rc *hookReceiver) waitChannel(ch string, want []string) {
	rc.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Join(rc.channel(ch), "|") != strings.Join(want, "|") {
		if time.Now().After(deadline) || len(rc.channel(ch)) > len(want) {
			rc.t.Fatalf("events of %s:\n%s\nwant:\n%s", ch, strings.Join(rc.channel(ch), "\n"), strings.Join(want, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// webhookConfig sends a node's webhooks to the receiver at url, with short
// leases and pauses.
func webhookConfig(url string) func(*config.Config) {
	return func(c *config.Config) {
		c.JWTSecret = jwtSecret
		c.WebhookEndpoint = url
		c.WebhookSecret = hookSecret
		c.WebhookLeaseTTL = time.Second
		c.WebhookBackoffMin = 10 * time.Millisecond
		c.WebhookBackoffMax = 200 * time.Millisecond
	}
}

// connectAs dials node and connects with a token for user.
func connectAs(t *testing.T, ts *testServer, user string) (*wstest.Client, map[string]any) {
	c := ts.dial()
	res := c.MustCall(map[string]any{"command": "connect", "token": token(t, user, time.Hour, nil)})
	return c, res
}

// TestWebhooksCluster: on two nodes sharing Redis, a Redis Cluster or NATS, channel and
// member events are emitted once for the cluster, in order: two tabs of a
// user (on different nodes) make one member.added, and one member.removed
// when both have left.
func TestWebhooksCluster(t *testing.T) {
	for _, be := range []backend{redisBackend(t), redisClusterBackend(t), natsBackend(t)} {
		t.Run(be.name, func(t *testing.T) {
			url, _ := be.fresh(t, false)
			rc := newHookReceiver(t)
			nodes := cluster(t, url, 2, webhookConfig(rc.srv.URL))
			a1, _ := connectAs(t, nodes[0], "alice")
			a1.Subscribe("room")
			a2, _ := connectAs(t, nodes[1], "alice") // second tab, other node
			a2.Subscribe("room")
			b, _ := connectAs(t, nodes[1], "bob")
			b.Subscribe("room")
			rc.waitChannel("room", []string{"channel.occupied alice", "member.added alice", "member.added bob"})
			_ = a1.Conn.Close()
			_ = a2.Conn.Close()
			rc.waitChannel("room", []string{"channel.occupied alice", "member.added alice", "member.added bob", "member.removed alice"})
			_ = b.Conn.Close()
			rc.waitChannel("room", []string{"channel.occupied alice", "member.added alice", "member.added bob", "member.removed alice", "member.removed bob", "channel.vacated bob"})
			waitFor(t, "three client.disconnected", func() bool { return rc.count(webhook.ClientDisconnected) == 3 })
			time.Sleep(300 * time.Millisecond) // nothing more comes
			if n := rc.count(webhook.ClientConnected); n != 3 {
				t.Fatalf("%d client.connected, want 3", n)
			}
			rc.waitChannel("room", []string{"channel.occupied alice", "member.added alice", "member.added bob", "member.removed alice", "member.removed bob", "channel.vacated bob"})
		})
	}
}

// TestWebhooksNodeKilled: the node that saw a client subscribe is killed
// (SIGKILL) while the receiver is down, before it delivered anything. The
// events still arrive, sent by the surviving node, and the dead node's
// client is then removed (reason node_gone): it leaves its channel and
// gets its client.disconnected, once. A client of the survivor that
// disconnects normally gets one client.disconnected too, without reason.
func TestWebhooksNodeKilled(t *testing.T) {
	for _, be := range []backend{redisBackend(t), natsBackend(t)} {
		t.Run(be.name, func(t *testing.T) {
			url, _ := be.fresh(t, false)
			rc := newHookReceiver(t)
			rc.down.Store(true)
			args := []string{"--broker", url, "--jwt-secret", jwtSecret, "--webhook-endpoint", rc.srv.URL,
				"--webhook-secret", hookSecret, "--webhook-lease-ttl", "1s",
				"--webhook-backoff-min", "10ms", "--webhook-backoff-max", "200ms"}
			victim := startProcess(t, args...)
			survivor := startProcess(t, args...)
			c := wstest.Dial(t, "ws://"+victim.addr+"/ws")
			res := c.MustCall(map[string]any{"command": "connect", "token": token(t, "dave", time.Hour, nil)})
			victimID, _ := res["node"].(string)
			daveClient, _ := res["client"].(string)
			c.Subscribe("k")
			s := wstest.Dial(t, "ws://"+survivor.addr+"/ws")
			res = s.MustCall(map[string]any{"command": "connect", "token": token(t, "erin", time.Hour, nil)})
			erinClient, _ := res["client"].(string)
			_ = s.Conn.Close()
			if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = victim.cmd.Wait()
			rc.down.Store(false)
			rc.waitChannel("k", []string{"channel.occupied dave", "member.added dave", "member.removed dave node_gone", "channel.vacated dave node_gone"})
			waitFor(t, "two client.disconnected", func() bool { return rc.count(webhook.ClientDisconnected) == 2 })
			time.Sleep(300 * time.Millisecond) // nothing more comes
			rc.mu.Lock()
			defer rc.mu.Unlock()
			var conns []string
			for _, e := range rc.events {
				if e.Type == webhook.ClientConnected || e.Type == webhook.ClientDisconnected {
					conns = append(conns, strings.TrimSpace(e.Type+" "+e.User+" "+e.Reason))
					if (e.User == "dave" && e.Client != daveClient) || (e.User == "erin" && e.Client != erinClient) {
						t.Errorf("event %+v: client %q", e, e.Client)
					}
				}
			}
			// Each client's events in order; the two clients' may interleave.
			slices.Sort(conns)
			if want := []string{"client.connected dave", "client.connected erin", "client.disconnected dave node_gone", "client.disconnected erin"}; !slices.Equal(conns, want) {
				t.Fatalf("client events %q, want %q", conns, want)
			}
			if victimID == "" || rc.senders[victimID] != 0 || len(rc.senders) != 1 {
				t.Fatalf("requests by node %v; the victim was %q", rc.senders, victimID)
			}
		})
	}
}

// TestWebhooksSelectionAndSSE (memory broker): namespaces choose their
// channel and member events; an SSE client is reported connected at its
// subscription and disconnected when its stream ends.
func TestWebhooksSelectionAndSSE(t *testing.T) {
	rc := newHookReceiver(t)
	ts := start(t, func(c *config.Config) {
		webhookConfig(rc.srv.URL)(c)
		c.Namespaces = []auth.Namespace{
			{Name: "quiet", WebhookEvents: []string{"none"}},
			{Name: "chat", WebhookEvents: []string{webhook.MemberAdded, webhook.MemberRemoved}},
		}
	})
	ws, _ := connectAs(t, ts, "erin")
	ws.Subscribe("quiet:x")
	ws.Subscribe("chat:y")
	sse := ts.openSSE("channel=news", "")
	expectStart(t, sse, 0)
	rc.waitChannel("news", []string{"channel.occupied"})
	rc.waitChannel("chat:y", []string{"member.added erin"})
	sse.Close()
	_ = ws.Conn.Close()
	rc.waitChannel("news", []string{"channel.occupied", "channel.vacated"})
	rc.waitChannel("chat:y", []string{"member.added erin", "member.removed erin"})
	waitFor(t, "two client.disconnected", func() bool { return rc.count(webhook.ClientDisconnected) == 2 })
	rc.mu.Lock()
	defer rc.mu.Unlock()
	transports := map[string]int{}
	for _, e := range rc.events {
		if e.Channel == "quiet:x" {
			t.Fatalf("event for a namespace that selects none: %+v", e)
		}
		if e.Type == webhook.ClientConnected {
			transports[e.Transport]++
		}
	}
	if transports["sse"] != 1 || transports["websocket"] != 1 {
		t.Fatalf("client.connected by transport: %v", transports)
	}
}
