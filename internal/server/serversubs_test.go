package server_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/wstest"
)

// TestServerSubscriptionsAcrossNodes: POST /api/subscribe on one node
// subscribes every tab of a user on every node, to a channel the user may
// not subscribe to by itself (the permission check is skipped); the tabs
// get a subscribed push, then the channel's publications, and are in its
// presence; recovery from a position works as for a client subscribe;
// POST /api/unsubscribe removes them all with an unsubscribed push.
func TestServerSubscriptionsAcrossNodes(t *testing.T) {
	for _, be := range []backend{redisBackend(t), natsBackend(t)} {
		t.Run(be.name, func(t *testing.T) {
			nodes := cluster(t, be.url(), 2, secured)
			a, b := nodes[0], nodes[1]
			waitFor(t, "2 nodes", func() bool {
				_, m := b.api("GET", "/api/info", testKey, "")
				return len(anySlice(m["result"].(map[string]any)["nodes"])) == 2
			})
			onA, onB := authed(t, a, "alice"), authed(t, b, "alice")
			bob := authed(t, b, "bob")
			const ch = "private:room"
			if r := onA.Call(map[string]any{"command": "subscribe", "channel": ch}); r["error"] == nil {
				t.Fatalf("alice subscribed to %s by herself: %v", ch, r)
			}

			if n := subscribeAPI(t, b, `{"user":"alice","channel":"private:room","data":{"why":"invited"},"info":{"role":"guest"}}`); n != 2 {
				t.Fatalf("subscribe affected %d connections, want 2", n)
			}
			var epoch string
			for _, tab := range []*wstest.Client{onA, onB} {
				m := tab.Next()
				sub, _ := m["subscribed"].(map[string]any)
				if m["channel"] != ch || sub == nil || sub["offset"] != float64(0) || sub["data"].(map[string]any)["why"] != "invited" {
					t.Fatalf("subscribed push %v", m)
				}
				epoch = sub["epoch"].(string)
			}
			_, m := a.api("POST", "/api/presence", testKey, `{"channel":"private:room"}`)
			if got := m["result"].(map[string]any)["num_clients"]; got != float64(2) {
				t.Fatalf("presence %v", m)
			}

			for i := 1; i <= 3; i++ {
				a.publish(ch, i)
			}
			for _, tab := range []*wstest.Client{onA, onB} {
				for i := 1; i <= 3; i++ {
					if m := tab.Next(); m["channel"] != ch || m["offset"] != float64(i) || m["data"] != float64(i) {
						t.Fatalf("want publication %d, got %v", i, m)
					}
				}
			}

			// Recovery: bob comes in from offset 1 and gets 2 and 3.
			body := fmt.Sprintf(`{"user":"bob","channel":"private:room","since":{"offset":1,"epoch":%q}}`, epoch)
			if n := subscribeAPI(t, a, body); n != 1 {
				t.Fatalf("subscribe bob affected %d", n)
			}
			m = bob.Next()
			sub, _ := m["subscribed"].(map[string]any)
			if sub == nil || sub["recovered"] != true || sub["offset"] != float64(3) || len(anySlice(sub["publications"])) != 2 {
				t.Fatalf("bob's subscribed push %v", m)
			}
			if p := anySlice(sub["publications"])[0].(map[string]any); p["offset"] != float64(2) || p["data"] != float64(2) {
				t.Fatalf("first recovered publication %v", p)
			}
			// Subscribing again: already subscribed, nobody counted.
			if n := subscribeAPI(t, a, `{"user":"alice","channel":"private:room"}`); n != 0 {
				t.Fatalf("subscribe again affected %d", n)
			}

			if n := unsubscribeAPI(t, a, `{"user":"alice","channel":"private:room"}`); n != 2 {
				t.Fatalf("unsubscribe affected %d connections, want 2", n)
			}
			for _, tab := range []*wstest.Client{onA, onB} {
				tab.Subscribe("members:marker")
				m := tab.Next()
				un, _ := m["unsubscribed"].(map[string]any)
				if m["channel"] != ch || un == nil || un["code"] != float64(2000) {
					t.Fatalf("unsubscribed push %v", m)
				}
			}
			a.publish(ch, 4)
			if m := bob.Next(); m["offset"] != float64(4) {
				t.Fatalf("bob, still subscribed, got %v", m)
			}
			a.publish("members:marker", "after")
			for _, tab := range []*wstest.Client{onA, onB} {
				if m := tab.Next(); m["channel"] != "members:marker" {
					t.Fatalf("after unsubscribe, got %v", m)
				}
			}
			if n := unsubscribeAPI(t, b, `{"user":"alice","channel":"private:room"}`); n != 0 {
				t.Fatalf("unsubscribe again affected %d", n)
			}
		})
	}
}

// TestServerSubscriptionsByClient: {"client"} reaches one connection on
// whichever node holds it, and an unknown client or user is 0, not an error.
func TestServerSubscriptionsByClient(t *testing.T) {
	nodes := cluster(t, redisBackend(t).url(), 2, secured)
	a, b := nodes[0], nodes[1]
	waitFor(t, "2 nodes", func() bool {
		_, m := b.api("GET", "/api/info", testKey, "")
		return len(anySlice(m["result"].(map[string]any)["nodes"])) == 2
	})
	tab := a.dial()
	id := tab.MustCall(map[string]any{"command": "connect", "token": token(t, "carol", time.Hour, nil)})["client"].(string)
	other := authed(t, a, "carol")
	if n := subscribeAPI(t, b, fmt.Sprintf(`{"client":%q,"channel":"news:x"}`, id)); n != 1 {
		t.Fatalf("subscribe by client affected %d", n)
	}
	if m := tab.Next(); m["channel"] != "news:x" || m["subscribed"] == nil {
		t.Fatalf("push %v", m)
	}
	b.publish("news:x", "hi")
	if m := tab.Next(); m["data"] != "hi" {
		t.Fatalf("publication %v", m)
	}
	other.Subscribe("members:y")
	b.publish("members:y", "only")
	if m := other.Next(); m["channel"] != "members:y" {
		t.Fatalf("the user's other tab got %v", m)
	}
	for _, body := range []string{`{"client":"nobody-1","channel":"news:x"}`, `{"user":"nobody","channel":"news:x"}`} {
		if n := subscribeAPI(t, b, body); n != 0 {
			t.Fatalf("%s affected %d", body, n)
		}
		if n := unsubscribeAPI(t, b, body); n != 0 {
			t.Fatalf("unsubscribe %s affected %d", body, n)
		}
	}
	if n := unsubscribeAPI(t, b, fmt.Sprintf(`{"client":%q,"channel":"news:x"}`, id)); n != 1 {
		t.Fatalf("unsubscribe by client affected %d", n)
	}
}

// TestServerSubscriptionsBadInput: refusals with their codes.
func TestServerSubscriptionsBadInput(t *testing.T) {
	ts := start(t, secured)
	cases := []struct {
		name, path, body string
		status, code     int
	}{
		{"no user or client", "/api/subscribe", `{"channel":"news:x"}`, 400, 400},
		{"both user and client", "/api/subscribe", `{"user":"a","client":"n-1","channel":"news:x"}`, 400, 400},
		{"no channel", "/api/subscribe", `{"user":"a"}`, 400, 422},
		{"bad channel", "/api/subscribe", `{"user":"a","channel":"bad name"}`, 400, 422},
		{"unknown namespace", "/api/subscribe", `{"user":"a","channel":"nope:x"}`, 400, 422},
		{"info not an object", "/api/subscribe", `{"user":"a","channel":"news:x","info":[1]}`, 400, 400},
		{"since of the wrong type", "/api/subscribe", `{"user":"a","channel":"news:x","since":"1:e"}`, 400, 400},
		{"not JSON", "/api/subscribe", `{`, 400, 400},
		{"unsubscribe without user", "/api/unsubscribe", `{"channel":"news:x"}`, 400, 400},
		{"unsubscribe bad channel", "/api/unsubscribe", `{"user":"a","channel":""}`, 400, 422},
		{"GET", "/api/subscribe", ``, 405, 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method := "POST"
			if tc.name == "GET" {
				method = "GET"
			}
			status, m := ts.api(method, tc.path, testKey, tc.body)
			e, _ := m["error"].(map[string]any)
			if status != tc.status || e == nil || e["code"] != float64(tc.code) {
				t.Fatalf("got %d %v, want %d code %d", status, m, tc.status, tc.code)
			}
		})
	}
	if status, _ := ts.api("POST", "/api/subscribe", "wrong", `{"user":"a","channel":"news:x"}`); status != 403 {
		t.Fatalf("wrong key: %d", status)
	}
}

func subscribeAPI(t *testing.T, ts *testServer, body string) int {
	t.Helper()
	return countAPI(t, ts, "/api/subscribe", body)
}

func unsubscribeAPI(t *testing.T, ts *testServer, body string) int {
	t.Helper()
	return countAPI(t, ts, "/api/unsubscribe", body)
}

func countAPI(t *testing.T, ts *testServer, path, body string) int {
	t.Helper()
	status, m := ts.api("POST", path, testKey, body)
	if status != 200 {
		t.Fatalf("%s %s: %d %v", path, body, status, m)
	}
	return int(m["result"].(map[string]any)["connections"].(float64))
}
