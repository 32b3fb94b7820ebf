package server_test

import (
	"regexp"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/switchboardhq/switchboard/internal/config"
)

var iceUfrag = regexp.MustCompile(`a=ice-ufrag:(\S+)`)

// TestRoomICE: room_ice hands a participant fresh ICE servers (a new TURN
// credential and its expiry), and with "restart":"subscriber" the SFU
// offers the subscribing connection again with new ICE credentials (an
// ICE restart, which the client answers like any offer). Bad input gets
// its code.
func TestRoomICE(t *testing.T) {
	ts := start(t, func(c *config.Config) {
		withCalls(t)(c)
		c.TURNAddr = "127.0.0.1:0"
	})
	a := ts.dial()
	join := a.MustCall(roomCmd("room_join", map[string]any{"room": "renew"}))
	res := a.MustCall(roomCmd("room_ice", map[string]any{"room": "renew"}))
	list, _ := res["ice_servers"].([]any)
	if len(list) != 2 || list[1].(map[string]any)["username"] == "" || list[1].(map[string]any)["credential"] == "" {
		t.Fatalf("ice_servers %v", res["ice_servers"])
	}
	if exp, _ := res["ice_servers_expire"].(float64); exp < join["ice_servers_expire"].(float64) {
		t.Fatalf("ice_servers_expire %v, before the join's %v", res["ice_servers_expire"], join["ice_servers_expire"])
	}

	// b publishes a track, so that a's subscribing connection has
	// something to offer (and an ICE transport to restart).
	api := pionAPI(t)
	b := ts.dial()
	b.MustCall(roomCmd("room_join", map[string]any{"room": "renew"}))
	pub := newPC(t, api)
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "cam", "b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pub.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	r := b.MustCall(roomCmd("room_offer", map[string]any{"room": "renew", "sdp": localSDP(t, pub, offer)}))
	if err := pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: r["sdp"].(string)}); err != nil {
		t.Fatal(err)
	}

	// The SFU offers a track once its first packets come.
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
			_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: uint32(i * 3000), Marker: true}, Payload: []byte{0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00}})
		}
	}()
	t.Cleanup(func() { close(stop); <-sent })

	sub := newPC(t, api)
	answer := func() string {
		offer := nextRoomEvent(t, a, "offer")["sdp"].(string)
		m := iceUfrag.FindStringSubmatch(offer)
		if m == nil {
			t.Fatalf("offer without ice-ufrag:\n%s", offer)
		}
		if err := sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
			t.Fatal(err)
		}
		ans, err := sub.CreateAnswer(nil)
		if err != nil {
			t.Fatal(err)
		}
		a.MustCall(roomCmd("room_answer", map[string]any{"room": "renew", "sdp": localSDP(t, sub, ans)}))
		return m[1]
	}
	first := answer() // the offer of b's track
	a.MustCall(roomCmd("room_ice", map[string]any{"room": "renew", "restart": "subscriber"}))
	if second := answer(); second == first {
		t.Fatalf("the restart offer kept ice-ufrag %s", first)
	}

	for _, tc := range []struct {
		name string
		data map[string]any
		code float64
	}{
		{"restart of another connection", map[string]any{"room": "renew", "restart": "publisher"}, 400},
		{"restart not a string", map[string]any{"room": "renew", "restart": 1}, 400},
		{"not in the room", map[string]any{"room": "elsewhere"}, 440},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := a.Call(roomCmd("room_ice", tc.data))
			e, _ := r["error"].(map[string]any)
			if e == nil || e["code"] != tc.code {
				t.Fatalf("got %v, want code %v", r, tc.code)
			}
		})
	}
}
