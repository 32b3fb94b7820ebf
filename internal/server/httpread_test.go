package server_test

import (
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/config"
)

// TestHTTPReadPermissions checks GET /history, /presence and
// /presence_stats against the rules of the WebSocket commands they stand
// for, with the client's connection token.
func TestHTTPReadPermissions(t *testing.T) {
	ts := start(t, func(c *config.Config) {
		secured(c)
		c.Namespaces[0].Presence = true // members
		c.Namespaces[0].HistorySize = 10
		c.Namespaces[0].HistoryTTL = time.Minute
	})
	bearer := func(user string, channels ...string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + token(t, user, time.Hour, func(c *auth.ConnectClaims) { c.Channels = channels })}
	}
	expired := map[string]string{"Authorization": "Bearer " + token(t, "alice", -time.Minute, nil)}
	ts.publish("members:x", "one")
	ts.publish("members:x", "two")
	ts.publish("private:x", "secret")
	tests := []struct {
		name   string
		path   string
		header map[string]string
		status int
		code   int
	}{
		{"history without token", "/history?channel=members:x", nil, 401, 401},
		{"history with an expired token", "/history?channel=members:x", expired, 401, 419},
		{"history", "/history?channel=members:x", bearer("alice"), 200, 0},
		{"history with options", "/history?channel=members:x&limit=1&reverse=true", bearer("alice"), 200, 0},
		{"history of a token namespace", "/history?channel=private:x", bearer("alice"), 403, 403},
		{"history of a channel the token lists", "/history?channel=private:x", bearer("alice", "private:x"), 200, 0},
		{"history of another user's channel", "/history?channel=dm:x%23bob,carol", bearer("alice"), 403, 403},
		{"history of an unknown namespace", "/history?channel=nope:x", bearer("alice"), 400, 422},
		{"history with a limit too large", "/history?channel=members:x&limit=100000", bearer("alice"), 400, 400},
		{"history with a malformed since", "/history?channel=members:x&since=3", bearer("alice"), 400, 400},
		{"history since another epoch", "/history?channel=members:x&since=1:other", bearer("alice"), 412, 412},
		{"history without channel", "/history", bearer("alice"), 400, 422},
		{"presence", "/presence?channel=members:x", bearer("alice"), 200, 0},
		{"presence without token", "/presence?channel=members:x", nil, 401, 401},
		{"presence of a token namespace", "/presence?channel=private:x", bearer("alice"), 403, 403},
		{"presence stats", "/presence_stats?channel=members:x", bearer("alice"), 200, 0},
		{"presence stats of another user's channel", "/presence_stats?channel=dm:x%23bob,carol", bearer("alice"), 403, 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := ts.httpDo("GET", tc.path, tc.header, "")
			if a.status != tc.status || errorCode(a.body) != tc.code {
				t.Fatalf("got %d %v, want HTTP %d with code %d", a.status, a.body, tc.status, tc.code)
			}
			if a.status == 200 && a.body["result"] == nil {
				t.Fatalf("no result: %v", a.body)
			}
		})
	}

	// The answers are those of the commands.
	a := ts.httpDo("GET", "/history?channel=members:x&limit=1&reverse=true", bearer("alice"), "")
	res := a.body["result"].(map[string]any)
	pubs := anySlice(res["publications"])
	if len(pubs) != 1 || pubs[0].(map[string]any)["data"] != "two" || res["offset"] != 2.0 || res["epoch"] == "" {
		t.Fatalf("history: %v", a.body)
	}
	since := "/history?channel=members:x&since=1:" + res["epoch"].(string)
	a = ts.httpDo("GET", since, bearer("alice"), "")
	if pubs := anySlice(a.body["result"].(map[string]any)["publications"]); len(pubs) != 1 || pubs[0].(map[string]any)["offset"] != 2.0 {
		t.Fatalf("history since: %v", a.body)
	}
	c := authed(t, ts, "bob")
	c.MustCall(map[string]any{"command": "subscribe", "channel": "members:x"})
	a = ts.httpDo("GET", "/presence?channel=members:x", bearer("alice"), "")
	if r := a.body["result"].(map[string]any); r["num_clients"] != 1.0 || r["num_users"] != 1.0 || len(anySlice(r["clients"])) != 1 {
		t.Fatalf("presence: %v", a.body)
	}
	a = ts.httpDo("GET", "/presence_stats?channel=members:x", bearer("alice"), "")
	if r := a.body["result"].(map[string]any); r["num_clients"] != 1.0 || r["num_users"] != 1.0 {
		t.Fatalf("presence stats: %v", a.body)
	}
	if a := ts.httpDo("POST", "/history?channel=members:x", bearer("alice"), ""); a.status != 405 {
		t.Fatalf("POST: %d", a.status)
	}
}
