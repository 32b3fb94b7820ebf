package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/switchboardhq/switchboard/internal/broker"
	redisbroker "github.com/switchboardhq/switchboard/internal/broker/redis"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/testenv"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

// publishVP8 publishes one VP8 track "cam" from pion in room for the
// client c, sending key frames until the test ends.
func publishVP8(t *testing.T, c *wstest.Client, room string) {
	t.Helper()
	pub := newPC(t, pionAPI(t))
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "cam", "p")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	c.MustCall(roomCmd("room_publish", map[string]any{"room": room, "track": "cam", "source": "camera"}))
	offer, err := pub.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	res := c.MustCall(roomCmd("room_offer", map[string]any{"room": room, "sdp": localSDP(t, pub, offer)}))
	if err := pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res["sdp"].(string)}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		tick := time.NewTicker(33 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: uint32(i * 3000), Marker: true},
				Payload: []byte{0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00}})
		}
	}()
	t.Cleanup(func() { close(stop); <-sent })
}

// nextPresence reads pushes until the join or leave (kind) of channel,
// returning its body; other messages are kept for nextRoomEvent.
func nextPresence(t *testing.T, c *wstest.Client, channel, kind string) map[string]any {
	t.Helper()
	for {
		m := c.Next()
		if m["channel"] == channel && m[kind] != nil {
			body, _ := m[kind].(map[string]any)
			return body
		}
		stash[c] = append(stash[c], m)
	}
}

// presenceClients returns the clients of channel's presence, read by c.
func presenceClients(t *testing.T, c *wstest.Client, channel string) []string {
	t.Helper()
	res := c.MustCall(map[string]any{"command": "presence", "channel": channel})
	var out []string
	list, _ := res["clients"].([]any)
	for _, e := range list {
		out = append(out, fmt.Sprint(e.(map[string]any)["client"]))
	}
	return out
}

// listRooms calls GET /api/rooms on ts and returns its rooms by name.
func listRooms(t *testing.T, ts *testServer) (map[string]map[string]any, map[string]any) {
	t.Helper()
	status, body := ts.api("GET", "/api/rooms", testKey, "")
	if status != 200 {
		t.Fatalf("GET /api/rooms: %d %v", status, body)
	}
	result, _ := body["result"].(map[string]any)
	out := map[string]map[string]any{}
	list, _ := result["rooms"].([]any)
	for _, r := range list {
		room := r.(map[string]any)
		out[fmt.Sprint(room["name"])] = room
	}
	return out, result
}

// TestRoomAcrossNodesPresence: on two nodes sharing a broker (Redis, then
// NATS: the participant list and the room API use the broker's presence
// store and control messages, whichever broker it is), a room served by
// node 0 is seen from node 1: a client of node 1 reads the participant
// list and gets the joins and leaves of node 0's participants (join,
// leave, kick, connection closed); GET /api/rooms on node 1 lists node
// 0's room with its node; kick and mute sent to node 1 act on node 0's
// participants; unknown rooms and participants are 404.
func TestRoomAcrossNodesPresence(t *testing.T) {
	for _, be := range []backend{redisBackend(t), natsBackend(t)} {
		t.Run(be.name, func(t *testing.T) {
			nodes := cluster(t, be.url(), 2, func(c *config.Config) {
				withCalls(t)(c)
				c.NodeURL = "ws://" + c.NodeName + ".example/ws"
			})
			const list = "!room:call"
			watcher := nodes[1].dial()
			watcher.Subscribe(list)
			if got := presenceClients(t, watcher, list); len(got) != 0 {
				t.Fatalf("participants of an empty room: %v", got)
			}

			a := nodes[0].dial()
			ra := a.MustCall(roomCmd("room_join", map[string]any{"room": "call"}))
			pa, owner := fmt.Sprint(ra["participant"]), fmt.Sprint(ra["node"])
			j := nextPresence(t, watcher, list, "join")
			info, _ := j["info"].(map[string]any)
			if j["client"] != pa || info["participant"] != pa || info["node"] != owner || info["can_publish"] != true {
				t.Fatalf("join seen on node 1: %v, want participant %s of node %s", j, pa, owner)
			}
			// a is in the list by the time its join is answered.
			if got := presenceClients(t, watcher, list); len(got) != 1 || got[0] != pa {
				t.Fatalf("participants read on node 1: %v, want [%s]", got, pa)
			}

			b := nodes[0].dial()
			rb := b.MustCall(roomCmd("room_join", map[string]any{"room": "call"}))
			pb := fmt.Sprint(rb["participant"])
			if j := nextPresence(t, watcher, list, "join"); j["client"] != pb {
				t.Fatalf("second join %v, want %s", j, pb)
			}
			b.MustCall(roomCmd("room_leave", map[string]any{"room": "call"}))
			if l := nextPresence(t, watcher, list, "leave"); l["client"] != pb {
				t.Fatalf("leave %v, want %s", l, pb)
			}

			// The room API of node 1 lists node 0's room, once node 1 knows
			// node 0.
			publishVP8(t, a, "call")
			waitFor(t, "node 0's room with a's track in node 1's GET /api/rooms", func() bool {
				rooms, result := listRooms(t, nodes[1])
				room := rooms["call"]
				if room == nil || result["missing_nodes"] != nil {
					return false
				}
				ps, _ := room["participants"].([]any)
				if room["node"] != owner || len(ps) != 1 {
					t.Fatalf("room on node 1's list: %v, want node %s with a", room, owner)
				}
				tracks, _ := ps[0].(map[string]any)["tracks"].([]any)
				return len(tracks) == 1
			})
			if rooms, _ := listRooms(t, nodes[0]); rooms["call"] == nil || len(rooms) != 1 {
				t.Fatalf("node 0's list: %v", rooms)
			}

			// Mute and kick through node 1.
			body := fmt.Sprintf(`{"room":"call","participant":%q}`, pa)
			if status, res := nodes[1].api("POST", "/api/rooms/mute", testKey, body); status != 200 {
				t.Fatalf("mute through node 1: %d %v", status, res)
			}
			if m := nextRoomEvent(t, a, "track_muted"); m["muted"] != true || m["participant"] != pa {
				t.Fatalf("track_muted %v", m)
			}
			bad := []struct {
				path, body string
			}{
				{"/api/rooms/kick", `{"room":"nowhere","participant":"p"}`},
				{"/api/rooms/mute", `{"room":"nowhere","participant":"p"}`},
				{"/api/rooms/kick", `{"room":"call","participant":"nobody"}`},
				{"/api/rooms/mute", `{"room":"call","participant":"nobody"}`},
				{"/api/rooms/mute", fmt.Sprintf(`{"room":"call","participant":%q,"track":"nope"}`, pa)},
			}
			for _, tc := range bad {
				if status, res := nodes[1].api("POST", tc.path, testKey, tc.body); status != 404 {
					t.Fatalf("%s %s through node 1: %d %v, want 404", tc.path, tc.body, status, res)
				}
			}
			if status, res := nodes[1].api("POST", "/api/rooms/kick", testKey, body); status != 200 {
				t.Fatalf("kick through node 1: %d %v", status, res)
			}
			nextRoomEvent(t, a, "kicked")
			if l := nextPresence(t, watcher, list, "leave"); l["client"] != pa {
				t.Fatalf("leave after the kick: %v, want %s", l, pa)
			}

			// A participant whose connection closes leaves the list.
			c := nodes[0].dial()
			pc := fmt.Sprint(c.MustCall(roomCmd("room_join", map[string]any{"room": "call"}))["participant"])
			if j := nextPresence(t, watcher, list, "join"); j["client"] != pc {
				t.Fatalf("join %v, want %s", j, pc)
			}
			_ = c.Conn.Close()
			if l := nextPresence(t, watcher, list, "leave"); l["client"] != pc {
				t.Fatalf("leave after the connection closed: %v, want %s", l, pc)
			}
			if got := presenceClients(t, watcher, list); len(got) != 0 {
				t.Fatalf("participants after everyone left: %v", got)
			}
		})
	}
}

// TestRoomAPISilentNode: a node the cluster takes for live that does not
// answer (a "ghost", announced and recorded as a room's owner straight
// through Redis, as a node that froze would leave them) is named in GET
// /api/rooms' missing_nodes, and a kick or a mute of its room is a 503
// naming it, each after 2 s: the API never hangs.
func TestRoomAPISilentNode(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	nodes := cluster(t, r.URL(), 1, withCalls(t))
	// The owner record as internal/webrtc/signal and internal/hub write it, and the announcement.
	startGhost(t, r.URL(), nodes[0], "$room:frozen", broker.ClientInfo{Client: "ghost", User: "ws://ghost.example/ws", Transport: "sfu"})

	_, result := listRooms(t, nodes[0])
	if missing := anySlice(result["missing_nodes"]); len(missing) != 1 || missing[0] != "ghost" {
		t.Fatalf("GET /api/rooms: %v, want missing_nodes [ghost]", result)
	}
	for _, path := range []string{"/api/rooms/kick", "/api/rooms/mute"} {
		status, res := nodes[0].api("POST", path, testKey, `{"room":"frozen","participant":"p"}`)
		e, _ := res["error"].(map[string]any)
		if msg, _ := e["message"].(string); status != 503 || !strings.Contains(msg, "ghost") {
			t.Fatalf("%s of the ghost's room: %d %v, want 503 naming the ghost", path, status, res)
		}
	}
}

// startGhost makes a node the cluster takes for live but that never
// answers, as a frozen node would leave things: it announces itself
// through the Redis at url every 200 ms and holds the presence entry info
// under key (an owner record) until the test ends. It returns once n
// counts it among the live nodes.
func startGhost(t *testing.T, url string, n *testServer, key string, info broker.ClientInfo) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ghost, err := redisbroker.New(ctx, redisbroker.Options{URL: url})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	announced := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		<-announced
		_ = ghost.Close(context.Background())
	})
	go func() {
		defer close(announced)
		for ctx.Err() == nil {
			_ = ghost.PublishControl(ctx, []byte(`{"type":"node","from":"ghost","node":{"id":"ghost","version":"test"}}`))
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	if err := ghost.AddPresence(ctx, key, info, time.Minute); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the ghost among the live nodes", func() bool {
		_, m := n.api("GET", "/api/info", testKey, "")
		return len(anySlice(m["result"].(map[string]any)["nodes"])) == 2
	})
}
