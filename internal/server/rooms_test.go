package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/server"
	"github.com/switchboardhq/switchboard/internal/testenv"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

// freeUDPPort returns a UDP port that was free a moment ago.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// freeTCPPort returns a TCP port that was free a moment ago.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// withCalls turns calls on over loopback with one UDP port.
func withCalls(t *testing.T) func(*config.Config) {
	port := freeUDPPort(t)
	return func(c *config.Config) {
		c.WebRTC = true
		c.WebRTCLoopback = true
		c.WebRTCUDPPort = port
	}
}

// pionAPI is a pion client on loopback.
func pionAPI(t *testing.T) *webrtc.API {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
}

func newPC(t *testing.T, api *webrtc.API) *webrtc.PeerConnection {
	t.Helper()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// localSDP sets d as pc's local description and returns it with every
// candidate gathered.
func localSDP(t *testing.T, pc *webrtc.PeerConnection, d webrtc.SessionDescription) string {
	t.Helper()
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(d); err != nil {
		t.Fatal(err)
	}
	<-done
	return pc.LocalDescription().SDP
}

// nextRoomEvent reads pushes until the room event named, returning its
// data; the other messages are kept for later calls.
func nextRoomEvent(t *testing.T, c *wstest.Client, event string) map[string]any {
	t.Helper()
	backlog := stash[c]
	for i, m := range backlog {
		if m["event"] == event {
			stash[c] = append(backlog[:i:i], backlog[i+1:]...)
			d, _ := m["data"].(map[string]any)
			return d
		}
	}
	for {
		m := c.Next()
		if m["event"] == event {
			d, _ := m["data"].(map[string]any)
			return d
		}
		stash[c] = append(stash[c], m)
	}
}

// stash keeps the messages nextRoomEvent read past, per client (tests
// using it do not run in parallel).
var stash = map[*wstest.Client][]map[string]any{}

func roomCmd(cmd string, data map[string]any) map[string]any {
	return map[string]any{"command": cmd, "data": data}
}

// TestRoomSignaling runs a call through a real server: two WebSocket
// clients join a room, one publishes VP8 from pion, the other answers the
// SFU's offer and receives the packets; the server API lists the room,
// mutes and kicks; a connection that closes leaves its room.
func TestRoomSignaling(t *testing.T) {
	ts := start(t, withCalls(t))
	a, b := ts.dial(), ts.dial()
	ra := a.MustCall(roomCmd("room_join", map[string]any{"room": "call"}))
	if ra["participant"] == "" || ra["mode"] != "sfu" || ra["codec"] != "vp8" {
		t.Fatalf("join result %v", ra)
	}
	if ice, ok := ra["ice_servers"].([]any); !ok || len(ice) != 0 {
		t.Fatalf("ice_servers %v, want [] without TURN", ra["ice_servers"])
	}
	rb := b.MustCall(roomCmd("room_join", map[string]any{"room": "call"}))
	if ps, _ := rb["participants"].([]any); len(ps) != 1 {
		t.Fatalf("b sees participants %v, want a", rb["participants"])
	}
	if j := nextRoomEvent(t, a, "participant_joined"); j["participant"] != rb["participant"] {
		t.Fatalf("a saw %v join, want %v", j, rb["participant"])
	}

	// b's subscriber connection: answers every offer of the SFU.
	api := pionAPI(t)
	sub := newPC(t, api)
	var got atomic.Int32
	sub.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			got.Add(1)
		}
	})

	// a publishes VP8.
	pub := newPC(t, api)
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "cam", "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	a.MustCall(roomCmd("room_publish", map[string]any{"room": "call", "track": "cam", "source": "camera", "name": "a's camera"}))
	offer, err := pub.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	res := a.MustCall(roomCmd("room_offer", map[string]any{"room": "call", "sdp": localSDP(t, pub, offer)}))
	if err := pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res["sdp"].(string)}); err != nil {
		t.Fatal(err)
	}
	// A trickled candidate (here one already in the offer) is accepted.
	for _, line := range strings.Split(pub.LocalDescription().SDP, "\r\n") {
		if strings.HasPrefix(line, "a=candidate:") {
			a.MustCall(roomCmd("room_candidate", map[string]any{"room": "call", "candidate": strings.TrimPrefix(line, "a="), "sdpMid": "0", "sdpMLineIndex": 0}))
			break
		}
	}
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() { // key frames, 30 per second
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
	defer func() { close(stop); <-sent }()

	published := nextRoomEvent(t, b, "track_published")
	if published["track"] != fmt.Sprint(ra["participant"], ":cam") || published["kind"] != "video" || published["source"] != "camera" {
		t.Fatalf("track_published %v", published)
	}
	o := nextRoomEvent(t, b, "offer")
	if err := sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: o["sdp"].(string)}); err != nil {
		t.Fatal(err)
	}
	ans, err := sub.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	b.MustCall(roomCmd("room_answer", map[string]any{"room": "call", "sdp": localSDP(t, sub, ans)}))
	defer func() {
		if t.Failed() {
			t.Logf("server offer:\n%s\nclient answer:\n%s", o["sdp"], sub.LocalDescription().SDP)
		}
	}()
	waitFor(t, "video packets at b", func() bool { return got.Load() > 20 })

	if n := ts.metric("switchboard_sfu_forwarded_packets_total"); n < 20 {
		t.Errorf("switchboard_sfu_forwarded_packets_total %g, want at least the 20 packets b got", n)
	}
	if n := ts.metric("switchboard_room_participants"); n != 2 {
		t.Errorf("switchboard_room_participants %g, want 2", n)
	}
	status, body := ts.api("GET", "/api/rooms", testKey, "")
	result, _ := body["result"].(map[string]any)
	rooms, _ := result["rooms"].([]any)
	if status != 200 || len(rooms) != 1 {
		t.Fatalf("GET /api/rooms: %d %v", status, body)
	}
	room := rooms[0].(map[string]any)
	if ps := room["participants"].([]any); len(ps) != 2 || len(ps[0].(map[string]any)["tracks"].([]any)) != 1 {
		t.Fatalf("room %v", room)
	}
	if status, body := ts.api("POST", "/api/rooms/mute", testKey, fmt.Sprintf(`{"room":"call","participant":%q}`, ra["participant"])); status != 200 {
		t.Fatalf("mute: %d %v", status, body)
	}
	if m := nextRoomEvent(t, b, "track_muted"); m["muted"] != true {
		t.Fatalf("track_muted %v", m)
	}
	if status, _ := ts.api("POST", "/api/rooms/kick", testKey, `{"room":"call","participant":"nobody"}`); status != 404 {
		t.Fatalf("kick of nobody: %d, want 404", status)
	}
	if status, body := ts.api("POST", "/api/rooms/kick", testKey, fmt.Sprintf(`{"room":"call","participant":%q}`, rb["participant"])); status != 200 {
		t.Fatalf("kick: %d %v", status, body)
	}
	nextRoomEvent(t, b, "kicked")
	if l := nextRoomEvent(t, a, "participant_left"); l["reason"] != "kicked" {
		t.Fatalf("participant_left %v", l)
	}
	// b may join again after a kick, then its connection closes: a sees it
	// leave.
	b.MustCall(roomCmd("room_join", map[string]any{"room": "call"}))
	nextRoomEvent(t, a, "participant_joined")
	_ = b.Conn.Close()
	if l := nextRoomEvent(t, a, "participant_left"); l["reason"] != "left" {
		t.Fatalf("participant_left %v", l)
	}
}

// TestRoomP2P: in a p2p room of two the server relays offer, answer and
// candidates, and refuses a third participant; the two pion peers connect
// directly.
func TestRoomP2P(t *testing.T) {
	ts := start(t, withCalls(t))
	a, b, c := ts.dial(), ts.dial(), ts.dial()
	join := map[string]any{"room": "pair", "mode": "p2p"}
	ra := a.MustCall(roomCmd("room_join", join))
	if r := a.Call(roomCmd("room_offer", map[string]any{"room": "pair", "sdp": "v=0"})); errorCode(r) != 442 {
		t.Fatalf("offer with no peer: %v, want 442", r)
	}
	rb := b.MustCall(roomCmd("room_join", join))
	if r := c.Call(roomCmd("room_join", join)); errorCode(r) != 442 {
		t.Fatalf("third peer: %v, want 442", r)
	}
	if r := c.Call(roomCmd("room_join", map[string]any{"room": "pair"})); errorCode(r) != 442 {
		t.Fatalf("sfu join of a p2p room: %v, want 442", r)
	}
	api := pionAPI(t)
	pa, pb := newPC(t, api), newPC(t, api)
	connected := make(chan struct{})
	pb.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnMessage(func(webrtc.DataChannelMessage) { close(connected) })
	})
	dc, err := pa.CreateDataChannel("chat", nil)
	if err != nil {
		t.Fatal(err)
	}
	dc.OnOpen(func() { _ = dc.SendText("hello") })
	offer, err := pa.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := a.MustCall(roomCmd("room_offer", map[string]any{"room": "pair", "sdp": localSDP(t, pa, offer)})); len(r) != 0 {
		t.Fatalf("p2p offer result %v, want {}", r)
	}
	// One of a's candidates, trickled (it is also in the offer).
	for _, line := range strings.Split(pa.LocalDescription().SDP, "\r\n") {
		if strings.HasPrefix(line, "a=candidate:") {
			a.MustCall(roomCmd("room_candidate", map[string]any{"room": "pair", "candidate": strings.TrimPrefix(line, "a="), "sdpMid": "0", "sdpMLineIndex": 0}))
			break
		}
	}
	o := nextRoomEvent(t, b, "offer")
	if o["from"] != ra["participant"] {
		t.Fatalf("offer from %v, want %v", o["from"], ra["participant"])
	}
	if err := pb.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: o["sdp"].(string)}); err != nil {
		t.Fatal(err)
	}
	ans, err := pb.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	b.MustCall(roomCmd("room_answer", map[string]any{"room": "pair", "sdp": localSDP(t, pb, ans)}))
	an := nextRoomEvent(t, a, "answer")
	if an["from"] != rb["participant"] {
		t.Fatalf("answer from %v", an["from"])
	}
	if err := pa.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: an["sdp"].(string)}); err != nil {
		t.Fatal(err)
	}
	d := nextRoomEvent(t, b, "candidate")
	if d["from"] != ra["participant"] {
		t.Fatalf("candidate from %v", d["from"])
	}
	js, _ := json.Marshal(d)
	var ci webrtc.ICECandidateInit
	_ = json.Unmarshal(js, &ci)
	if err := pb.AddICECandidate(ci); err != nil {
		t.Fatalf("relayed candidate %s: %v", js, err)
	}
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("the peers did not connect through the relayed signaling")
	}
}

// TestRoomBadInput is the table of mistakes and attacks on the room
// commands: each gets its documented error, and a witness call in the
// same room keeps working.
func TestRoomBadInput(t *testing.T) {
	ts := start(t, func(c *config.Config) {
		withCalls(t)(c)
		secured(c)
		c.Namespaces = append(c.Namespaces, auth.Namespace{Name: "vip", Subscribe: auth.SubscribeToken})
	})
	witness := authed(t, ts, "witness")
	witness.MustCall(roomCmd("room_join", map[string]any{"room": "members:r"}))
	c := authed(t, ts, "mallory")
	grant := func(grants ...string) string {
		return token(t, "granted", time.Hour, func(cl *auth.ConnectClaims) { cl.Grants = grants })
	}
	type step struct {
		cmd  map[string]any
		code int // 0: success
	}
	tests := []struct {
		name  string
		token string // connect with this token instead of mallory's
		steps []step
	}{
		{"no data", "", []step{{map[string]any{"command": "room_join"}, 400}}},
		{"data not an object", "", []step{{map[string]any{"command": "room_join", "data": "r"}, 400}}},
		{"no room", "", []step{{roomCmd("room_join", map[string]any{}), 400}}},
		{"bad room name", "", []step{{roomCmd("room_join", map[string]any{"room": "bad name"}), 422}}},
		{"unknown namespace", "", []step{{roomCmd("room_join", map[string]any{"room": "nope:r"}), 422}}},
		{"bad mode", "", []step{{roomCmd("room_join", map[string]any{"room": "members:m", "mode": "mesh"}), 442}}},
		{"bad codec", "", []step{{roomCmd("room_join", map[string]any{"room": "members:m", "codec": "av1"}), 442}}},
		{"offer for a room not joined", "", []step{{roomCmd("room_offer", map[string]any{"room": "members:r", "sdp": "v=0"}), 440}}},
		{"candidate for an unknown room", "", []step{{roomCmd("room_candidate", map[string]any{"room": "members:ghost", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}), 440}}},
		{"leave a room not joined", "", []step{{roomCmd("room_leave", map[string]any{"room": "members:r"}), 440}}},
		{"join twice", "", []step{
			{roomCmd("room_join", map[string]any{"room": "members:r"}), 0},
			{roomCmd("room_join", map[string]any{"room": "members:r"}), 409},
		}},
		{"malformed sdp", "", []step{
			{roomCmd("room_join", map[string]any{"room": "members:r"}), 0},
			{roomCmd("room_offer", map[string]any{"room": "members:r", "sdp": "this is not sdp"}), 441},
			{roomCmd("room_offer", map[string]any{"room": "members:r"}), 400},
			{roomCmd("room_offer", map[string]any{"room": "members:r", "sdp": 12}), 400},
		}},
		{"answer without an offer", "", []step{
			{roomCmd("room_join", map[string]any{"room": "members:r"}), 0},
			{roomCmd("room_answer", map[string]any{"room": "members:r", "sdp": "v=0\r\n"}), 441},
		}},
		{"bad candidate", "", []step{
			{roomCmd("room_join", map[string]any{"room": "members:r"}), 0},
			{roomCmd("room_candidate", map[string]any{"room": "members:r", "candidate": "garbage", "target": "subscriber"}), 441},
			{roomCmd("room_candidate", map[string]any{"room": "members:r", "candidate": "garbage", "target": "elsewhere"}), 400},
			{roomCmd("room_candidate", map[string]any{"room": "members:r", "candidate": "garbage"}), 441},
		}},
		{"bad subscribe", "", []step{
			{roomCmd("room_join", map[string]any{"room": "members:r"}), 0},
			{roomCmd("room_subscribe", map[string]any{"room": "members:r", "track": "x", "max_layer": 7}), 400},
			{roomCmd("room_subscribe", map[string]any{"room": "members:r"}), 400},
			{roomCmd("room_subscribe", map[string]any{"room": "members:r", "track": "nope"}), 440},
			{roomCmd("room_mute", map[string]any{"room": "members:r", "track": "nope"}), 400},
			{roomCmd("room_mute", map[string]any{"room": "members:r", "track": "nope", "muted": true}), 440},
			{roomCmd("room_unpublish", map[string]any{"room": "members:r", "track": "nope"}), 440},
			{roomCmd("room_publish", map[string]any{"room": "members:r"}), 400},
		}},
		{"join without permission", "", []step{{roomCmd("room_join", map[string]any{"room": "vip:r"}), 403}}},
		{"join with a grant for another room", grant("room:join:vip:other"), []step{{roomCmd("room_join", map[string]any{"room": "vip:r"}), 403}}},
		{"join with a grant, publish without", grant("room:join:vip:r"), []step{
			{roomCmd("room_join", map[string]any{"room": "vip:r"}), 0},
			{roomCmd("room_offer", map[string]any{"room": "vip:r", "sdp": "v=0"}), 403},
			{roomCmd("room_publish", map[string]any{"room": "vip:r", "track": "cam"}), 403},
		}},
		{"room name too long", "", []step{{roomCmd("room_join", map[string]any{"room": "members:" + strings.Repeat("x", 242)}), 422}}},
		{"room named like a presence channel", "", []step{{roomCmd("room_join", map[string]any{"room": "!room:members:r"}), 422}}},
		{"participant list without permission", "", []step{
			{map[string]any{"command": "subscribe", "channel": "!room:vip:r"}, 403},
			{map[string]any{"command": "presence", "channel": "!room:vip:r"}, 403},
		}},
		{"participant list of no room", "", []step{
			{map[string]any{"command": "subscribe", "channel": "!room:"}, 422},
			{map[string]any{"command": "presence", "channel": "!room:nope:r"}, 422},
			{map[string]any{"command": "presence", "channel": "!room:bad name"}, 422},
		}},
		{"participant list with a grant", grant("room:join:vip:r"), []step{
			{map[string]any{"command": "subscribe", "channel": "!room:vip:r"}, 0},
			{map[string]any{"command": "presence", "channel": "!room:vip:r"}, 0},
			{map[string]any{"command": "presence_stats", "channel": "!room:vip:r"}, 0},
		}},
		{"publish to a participant list", "", []step{
			{map[string]any{"command": "publish", "channel": "!room:members:r", "data": "fake"}, 403},
		}},
		{"publish grant", grant("room:publish"), []step{
			{roomCmd("room_join", map[string]any{"room": "vip:r"}), 0},
			{roomCmd("room_offer", map[string]any{"room": "vip:r", "sdp": "not sdp"}), 441},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cl := c
			if tc.token != "" {
				cl = ts.dial()
				cl.MustCall(map[string]any{"command": "connect", "token": tc.token})
			} else {
				cl = authed(t, ts, "mallory")
			}
			defer cl.Conn.Close()
			for i, s := range tc.steps {
				r := cl.Call(s.cmd)
				if got := errorCode(r); got != s.code {
					t.Fatalf("step %d %v: got %v, want code %d", i, s.cmd, r, s.code)
				}
			}
		})
	}
	// The server API may not publish to a participant list either.
	if status, body := ts.api("POST", "/api/publish", testKey, `{"channel":"!room:members:r","data":"fake"}`); status != 403 {
		t.Fatalf("API publish to a participant list: %d %v, want 403", status, body)
	}
	// A flood of offers: refused with 429 once over the participant's
	// signaling rate, without closing the connection.
	flood := authed(t, ts, "flood")
	flood.MustCall(roomCmd("room_join", map[string]any{"room": "members:r"}))
	limited := 0
	for range 80 {
		if errorCode(flood.Call(roomCmd("room_offer", map[string]any{"room": "members:r", "sdp": "x"}))) == 429 {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("80 offers in a row were never rate limited")
	}
	flood.MustCall(map[string]any{"command": "ping"})
	// The witness's room still works: it sees a newcomer join.
	late := authed(t, ts, "late")
	late.MustCall(roomCmd("room_join", map[string]any{"room": "members:r"}))
	for {
		if e := nextRoomEvent(t, witness, "participant_joined"); e["user"] == "late" {
			break
		}
	}
}

// TestRoomAcrossNodes: on two nodes sharing Redis, a room is served by
// the node where it was first joined; a client of the other node gets
// 421 with the serving node's node_url, joins there, and sees the first
// participant. Once the room is empty, the other node may serve it.
func TestRoomAcrossNodes(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	nodes := cluster(t, r.URL(), 2, func(c *config.Config) {
		withCalls(t)(c)
		c.NodeURL = "ws://" + c.NodeName + ".example/ws"
	})
	a := nodes[0].dial()
	ra := a.MustCall(roomCmd("room_join", map[string]any{"room": "call"}))
	b := nodes[1].dial()
	res := b.Call(roomCmd("room_join", map[string]any{"room": "call"}))
	e, _ := res["error"].(map[string]any)
	if errorCode(res) != 421 || e["url"] != "ws://node0.example/ws" {
		t.Fatalf("join on the other node: %v, want 421 with node0's url", res)
	}
	b2 := nodes[0].dial()
	rb := b2.MustCall(roomCmd("room_join", map[string]any{"room": "call"}))
	if ps, _ := rb["participants"].([]any); len(ps) != 1 || ps[0].(map[string]any)["participant"] != ra["participant"] {
		t.Fatalf("participants %v", rb["participants"])
	}
	a.MustCall(roomCmd("room_leave", map[string]any{"room": "call"}))
	b2.MustCall(roomCmd("room_leave", map[string]any{"room": "call"}))
	b.MustCall(roomCmd("room_join", map[string]any{"room": "call"}))
}

// TestRoomICETCP: a client that can use only TCP reaches the SFU through
// webrtc_tcp_port (ICE-TCP, the server's passive candidates).
func TestRoomICETCP(t *testing.T) {
	port := freeTCPPort(t)
	ts := start(t, func(c *config.Config) {
		withCalls(t)(c)
		c.WebRTCTCPPort = port
	})
	a := ts.dial()
	a.MustCall(roomCmd("room_join", map[string]any{"room": "tcp"}))
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeTCP4})
	pc := newPC(t, webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)))
	connected := make(chan struct{})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			close(connected)
		}
	})
	if _, err := pc.CreateDataChannel("chat", nil); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	res := a.MustCall(roomCmd("room_offer", map[string]any{"room": "tcp", "sdp": localSDP(t, pc, offer)}))
	answer := res["sdp"].(string)
	if !strings.Contains(answer, "tcptype passive") {
		t.Fatalf("no passive TCP candidate in the answer:\n%s", answer)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("no connection over ICE-TCP")
	}
}

// TestRoomPublicIP: with webrtc_public_ip the server's candidates announce
// that address instead of the host's (1:1 NAT).
func TestRoomPublicIP(t *testing.T) {
	ts := start(t, func(c *config.Config) {
		withCalls(t)(c)
		c.WebRTCPublicIP = []string{"203.0.113.7"}
	})
	a := ts.dial()
	a.MustCall(roomCmd("room_join", map[string]any{"room": "nat"}))
	pc := newPC(t, pionAPI(t))
	if _, err := pc.CreateDataChannel("chat", nil); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	answer := a.MustCall(roomCmd("room_offer", map[string]any{"room": "nat", "sdp": localSDP(t, pc, offer)}))["sdp"].(string)
	var cands []string
	for _, line := range strings.Split(answer, "\r\n") {
		if strings.HasPrefix(line, "a=candidate:") {
			cands = append(cands, line)
		}
	}
	if len(cands) == 0 {
		t.Fatalf("no candidates in the answer:\n%s", answer)
	}
	for _, c := range cands {
		if !strings.Contains(c, " 203.0.113.7 ") {
			t.Errorf("candidate without the public address: %s", c)
		}
	}
}

// TestRoomRelayOnly: with the built-in TURN server, the join reply's
// ice_servers carry fresh TURN credentials, and a client that may only
// relay (iceTransportPolicy "relay") reaches the SFU through TURN.
func TestRoomRelayOnly(t *testing.T) {
	ts := start(t, func(c *config.Config) {
		withCalls(t)(c)
		c.TURNAddr = "127.0.0.1:0"
		c.TURNAllowedPeers = []string{"127.0.0.0/8"}
	})
	a := ts.dial()
	res := a.MustCall(roomCmd("room_join", map[string]any{"room": "relay"}))
	raw, _ := json.Marshal(res["ice_servers"])
	var ice []webrtc.ICEServer
	if err := json.Unmarshal(raw, &ice); err != nil || len(ice) != 2 || ice[1].Username == "" {
		t.Fatalf("ice_servers %s", raw)
	}
	if exp, _ := res["ice_servers_expire"].(float64); int64(exp) < time.Now().Unix() {
		t.Fatalf("ice_servers_expire %v", res["ice_servers_expire"])
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{
		ICEServers: ice, ICETransportPolicy: webrtc.ICETransportPolicyRelay,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	connected := make(chan struct{})
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			close(connected)
		}
	})
	if _, err := pc.CreateDataChannel("chat", nil); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	sdp := localSDP(t, pc, offer)
	if !strings.Contains(sdp, "typ relay") || strings.Contains(sdp, "typ host") {
		t.Fatalf("the relay-only offer should carry relayed candidates only:\n%s", sdp)
	}
	answer := a.MustCall(roomCmd("room_offer", map[string]any{"room": "relay", "sdp": sdp}))["sdp"].(string)
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("no connection to the SFU through TURN")
	}
}

// TestCallsPortTaken: a media port that is taken fails the node's start
// with an error naming the key, instead of crashing, and closes what it
// had opened.
func TestCallsPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.APIKey = []string{testKey}
	withCalls(t)(&cfg)
	cfg.WebRTCTCPPort = l.Addr().(*net.TCPAddr).Port
	srv, err := server.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), "test")
	if err == nil || !strings.Contains(err.Error(), "webrtc_tcp_port") {
		t.Fatalf("New with a taken webrtc_tcp_port: %v, %v", srv, err)
	}
	// The UDP port it had opened is free again.
	c, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.WebRTCUDPPort)))
	if err != nil {
		t.Fatalf("the UDP port was not released: %v", err)
	}
	c.Close()
}
