package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/testenv"
	"github.com/switchboardhq/switchboard/internal/webhook"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

// callUntilOK repeats cmd until it succeeds, which it must within 30s;
// meanwhile only the retryable 503 is accepted.
func callUntilOK(t *testing.T, c *wstest.Client, cmd func() map[string]any) map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := c.Call(cmd())
		switch code := errorCode(r); {
		case code == 0:
			return r
		case code != 503:
			t.Fatalf("%v: %v, want success or 503", cmd(), r["error"])
		case time.Now().After(deadline):
			t.Fatalf("%v still refused: %v", cmd(), r["error"])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWebhooksBrokerDown: with the broker down (killed), a connect is refused
// with the retryable 503 (its webhook fact cannot be written), while a
// connected client's unsubscribe and disconnection go through and their
// facts are held; once the broker is back, the connect succeeds on retry
// and every event arrives, the held ones included, each once.
func TestWebhooksBrokerDown(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(t *testing.T) (url string, stop, start func())
	}{
		{"redis", func(t *testing.T) (string, func(), func()) {
			r := testenv.StartRedis(t, testenv.RedisOptions{AOF: true})
			return r.URL(), r.Kill, func() { r.Restart(t) }
		}},
		{"nats", func(t *testing.T) (string, func(), func()) {
			n := testenv.StartNATS(t, testenv.NATSOptions{Persist: true})
			return n.URL(), n.Kill, func() { n.Restart(t) }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, stop, start := tc.open(t)
			rc := newHookReceiver(t)
			node := cluster(t, url, 1, func(c *config.Config) {
				webhookConfig(rc.srv.URL)(c)
				// Longer than the outage: the node is not taken for dead
				// (and does not report its clients again).
				c.WebhookLeaseTTL = 5 * time.Second
			})[0]
			a, _ := connectAs(t, node, "ann")
			a.Subscribe("d")
			rc.waitChannel("d", []string{"channel.occupied ann", "member.added ann"})

			stop()
			b := node.dial()
			connect := func() map[string]any {
				return map[string]any{"command": "connect", "token": token(t, "bob", time.Hour, nil)}
			}
			if r := b.Call(connect()); errorCode(r) != 503 {
				t.Fatalf("connect with the broker down: %v, want error 503", r)
			}
			a.MustCall(map[string]any{"command": "unsubscribe", "channel": "d"})
			_ = a.Conn.Close()
			// Held: ann's leave and disconnection, and the undo of bob's
			// refused connection.
			waitFor(t, "three held reports", func() bool { return node.metric("switchboard_webhook_held") == 3 })

			start()
			callUntilOK(t, b, connect)
			callUntilOK(t, b, func() map[string]any { return map[string]any{"command": "subscribe", "channel": "d"} })
			rc.waitChannel("d", []string{"channel.occupied ann", "member.added ann", "member.removed ann", "channel.vacated ann",
				"channel.occupied bob", "member.added bob"})
			// On NATS, facts a sender had fetched when the broker went
			// down come back after webhook_lease_ttl.
			deadline := time.Now().Add(30 * time.Second)
			for rc.count(webhook.ClientConnected) < 2 || rc.count(webhook.ClientDisconnected) < 1 {
				if time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond) // nothing more comes
			if c, d := rc.count(webhook.ClientConnected), rc.count(webhook.ClientDisconnected); c != 2 || d != 1 {
				rc.mu.Lock()
				defer rc.mu.Unlock()
				t.Fatalf("%d client.connected and %d client.disconnected, want 2 and 1: %+v", c, d, rc.events)
			}
		})
	}
}

// TestWebhooksFactRefused (Redis): the broker refuses to store the
// webhook facts (their streams are keys of another type) while it serves
// everything else. A subscribe is then refused with the retryable 503 and
// leaves nothing behind (the client is not subscribed, the channel's
// presence is unchanged); once the broker takes facts again, the same
// subscribe succeeds and its events arrive.
func TestWebhooksFactRefused(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	rc := newHookReceiver(t)
	node := cluster(t, r.URL(), 1, func(c *config.Config) {
		webhookConfig(rc.srv.URL)(c)
		c.Presence = true
	})[0]
	a, _ := connectAs(t, node, "ann")
	waitFor(t, "ann's client.connected", func() bool { return rc.count(webhook.ClientConnected) == 1 })

	ctx := context.Background()
	rd, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{r.Addr()}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var keys []string
	for p := range config.Default().WebhookPartitions {
		keys = append(keys, fmt.Sprintf("switchboard:webhook:{%d}:log", p))
	}
	for _, k := range keys {
		if err := rd.Do(ctx, rd.B().Set().Key(k).Value("not a stream").Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	reply := a.Call(map[string]any{"command": "subscribe", "channel": "w"})
	if errorCode(reply) != 503 || !strings.Contains(fmt.Sprint(reply["error"]), "retry") {
		t.Fatalf("subscribe with its fact refused: %v, want error 503", reply)
	}
	if r := a.Call(map[string]any{"command": "unsubscribe", "channel": "w"}); errorCode(r) != 410 {
		t.Fatalf("unsubscribe after the refused subscribe: %v, want 410 (not subscribed)", r)
	}
	if p := a.MustCall(map[string]any{"command": "presence", "channel": "w"}); p["num_clients"] != 0.0 {
		t.Fatalf("presence after the refused subscribe: %v", p)
	}

	if err := rd.Do(ctx, rd.B().Del().Key(keys...).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	a.Subscribe("w")
	rc.waitChannel("w", []string{"channel.occupied ann", "member.added ann"})
}
