package server_test

import (
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/config"
)

// TestConnectionsAcrossNodes: GET /api/connections?user= on any node lists
// the user's connections on every node, with their channels, and nobody
// else's; /api/disconnect {"user"} then closes them all.
func TestConnectionsAcrossNodes(t *testing.T) {
	for _, be := range []backend{natsBackend(t), redisBackend(t)} {
		t.Run(be.name, func(t *testing.T) {
			nodes := cluster(t, be.url(), 2, func(c *config.Config) { c.JWTSecret = jwtSecret })
			a, b := nodes[0], nodes[1]
			waitFor(t, "2 nodes", func() bool {
				_, m := b.api("GET", "/api/info", testKey, "")
				return len(anySlice(m["result"].(map[string]any)["nodes"])) == 2
			})
			onA := a.dial()
			idA := onA.MustCall(map[string]any{"command": "connect", "token": token(t, "alice", time.Hour, nil)})["client"]
			onA.Subscribe("x")
			onA.Subscribe("a")
			onB := b.dial()
			idB := onB.MustCall(map[string]any{"command": "connect", "token": token(t, "alice", time.Hour, nil)})["client"]
			bob := b.dial()
			bob.MustCall(map[string]any{"command": "connect", "token": token(t, "bob", time.Hour, nil)})

			status, m := b.api("GET", "/api/connections?user=alice", testKey, "")
			if status != 200 {
				t.Fatalf("connections: %d %v", status, m)
			}
			list := anySlice(m["result"].(map[string]any)["connections"])
			if len(list) != 2 {
				t.Fatalf("alice's connections: %v", list)
			}
			byClient := map[any]map[string]any{}
			for _, c := range list {
				byClient[c.(map[string]any)["client"]] = c.(map[string]any)
			}
			ca, cb := byClient[idA], byClient[idB]
			if ca == nil || cb == nil || ca["user"] != "alice" || ca["transport"] != "websocket" || ca["node"] == cb["node"] {
				t.Fatalf("connections %v", list)
			}
			if chans := anySlice(ca["channels"]); len(chans) != 2 || chans[0] != "a" || chans[1] != "x" {
				t.Fatalf("channels of the connection on A: %v", ca["channels"])
			}
			if at, _ := ca["connected_at"].(float64); time.Since(time.Unix(int64(at), 0)) > time.Minute {
				t.Fatalf("connected_at %v", ca["connected_at"])
			}
			if status, _ := a.api("GET", "/api/connections", testKey, ""); status != 400 {
				t.Fatalf("connections without user: %d", status)
			}
			if _, m := a.api("POST", "/api/batch", testKey, `{"commands":[{"method":"connections","params":{"user":"bob"}}]}`); len(anySlice(anySlice(m["result"].(map[string]any)["replies"])[0].(map[string]any)["result"].(map[string]any)["connections"])) != 1 {
				t.Fatalf("bob's connections through a batch: %v", m)
			}

			if status, _ := a.api("POST", "/api/disconnect", testKey, `{"user":"alice"}`); status != 200 {
				t.Fatalf("disconnect: %d", status)
			}
			for _, c := range []interface{ ExpectClose() int }{onA, onB} {
				if code := c.ExpectClose(); code != 4500 {
					t.Fatalf("closed with %d", code)
				}
			}
			waitFor(t, "no connection of alice left", func() bool {
				_, m := a.api("GET", "/api/connections?user=alice", testKey, "")
				return len(anySlice(m["result"].(map[string]any)["connections"])) == 0
			})
			bob.MustCall(map[string]any{"command": "ping"})
		})
	}
}
