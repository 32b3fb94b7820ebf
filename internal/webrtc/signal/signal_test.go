package signal

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboardhq/switchboard/internal/broker/memory"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/protocol"
	"github.com/switchboardhq/switchboard/internal/webrtc/sfu"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseSignal(t *testing.T) {
	tests := map[string]struct {
		kind, data string
		ok         bool
	}{
		"offer":                {"offer", `{"room":"r","sdp":"v=0"}`, true},
		"offer without sdp":    {"offer", `{"room":"r"}`, false},
		"offer sdp not string": {"offer", `{"sdp":1}`, false},
		"answer":               {"answer", `{"sdp":"v=0"}`, true},
		"candidate":            {"candidate", `{"candidate":"candidate:1 1 udp 1 1.2.3.4 9 typ host","sdpMid":"0","sdpMLineIndex":0}`, true},
		"end of candidates":    {"candidate", `{"candidate":""}`, true},
		"candidate target":     {"candidate", `{"candidate":"x","target":"subscriber"}`, true},
		"bad target":           {"candidate", `{"candidate":"x","target":"both"}`, false},
		"negative mline":       {"candidate", `{"candidate":"x","sdpMLineIndex":-1}`, false},
		"subscribe":            {"subscribe", `{"track":"a:cam","max_layer":1,"max_width":320}`, true},
		"subscribe no track":   {"subscribe", `{"max_layer":1}`, false},
		"layer too high":       {"subscribe", `{"track":"t","max_layer":3}`, false},
		"negative width":       {"subscribe", `{"track":"t","max_width":-1}`, false},
		"publish":              {"publish", `{"track":"3f1c","source":"screen","name":"slides"}`, true},
		"publish no track":     {"publish", `{"source":"camera"}`, false},
		"publish long source":  {"publish", `{"track":"t","source":"` + strings.Repeat("x", 33) + `"}`, false},
		"unpublish":            {"unpublish", `{"track":"t"}`, true},
		"unpublish no track":   {"unpublish", `{}`, false},
		"mute":                 {"mute", `{"muted":false}`, true},
		"mute without muted":   {"mute", `{"track":"t"}`, false},
		"not an object":        {"offer", `[1]`, false},
		"unknown kind":         {"dance", `{}`, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := parseSignal(tc.kind, []byte(tc.data))
			if (err == nil) != tc.ok {
				t.Fatalf("parseSignal(%s, %s) = %v, want ok=%v", tc.kind, tc.data, err, tc.ok)
			}
			if err != nil && !errors.Is(err, errBadPayload) {
				t.Fatalf("error %v does not wrap errBadPayload", err)
			}
		})
	}
}

func FuzzParseSignal(f *testing.F) {
	for _, s := range []struct{ kind, data string }{
		{"offer", `{"room":"r","sdp":"v=0"}`},
		{"candidate", `{"candidate":"candidate:1 1 udp 1 1.2.3.4 9 typ host","sdpMid":"0","sdpMLineIndex":0,"target":"publisher"}`},
		{"subscribe", `{"track":"a:cam","max_layer":1,"max_width":320,"paused":true}`},
		{"mute", `{"track":"t","muted":true}`},
		{"unpublish", `{"track":"t"}`},
		{"publish", `{"track":"t","source":"camera","name":"me"}`},
		{"ice", `{"room":"r","restart":"subscriber"}`},
		{"ice", `{"room":"r"}`},
	} {
		f.Add(s.kind, []byte(s.data))
	}
	f.Fuzz(func(t *testing.T, kind string, data []byte) {
		v, err := parseSignal(kind, data)
		if err != nil {
			if !errors.Is(err, errBadPayload) {
				t.Fatalf("error %v does not wrap errBadPayload", err)
			}
			return
		}
		switch v := v.(type) {
		case sdpData:
			if v.SDP == "" {
				t.Fatal("accepted an empty sdp")
			}
		case sfu.Prefs:
			if v.Track == "" || v.MaxLayer != nil && (*v.MaxLayer < 0 || *v.MaxLayer > 2) {
				t.Fatalf("accepted prefs %+v", v)
			}
		case muteData:
			if v.Muted == nil {
				t.Fatal("accepted mute without muted")
			}
		case iceData:
			if v.Restart != "" && v.Restart != "subscriber" {
				t.Fatalf("accepted restart %q", v.Restart)
			}
		}
	})
}

// TestOwnership: two nodes share a presence store; the room is served by
// the node where it was first joined, a client of the other node is sent
// there (421 with the URL), and the room is free again once empty.
func TestOwnership(t *testing.T) {
	store := memory.NewPresence()
	node := func(id, url string) *Service {
		s, err := sfu.New(sfu.Config{})
		if err != nil {
			t.Fatal(err)
		}
		svc := New(Config{SFU: s, Owners: store, NodeURL: url})
		svc.SetNode(id)
		t.Cleanup(func() { svc.Close(context.Background()); _ = s.Close() })
		return svc
	}
	a, b := node("a", "wss://a.example/ws"), node("b", "wss://b.example/ws")
	a.SetICEServers(func(user string) ([]ICEServer, time.Time, error) {
		return []ICEServer{{URLs: []string{"turn:127.0.0.1:3478"}, Username: "9999:" + user, Credential: "x"}}, time.Unix(9999, 0), nil
	})
	ctx := context.Background()
	push := func(string, []byte) {}
	res, err := a.Join(ctx, hub.RoomJoin{Room: "r", Participant: "p1", User: "alice", Push: push})
	if err != nil {
		t.Fatal(err)
	}
	var first struct {
		ICEServers []ICEServer `json:"ice_servers"`
		Expire     int64       `json:"ice_servers_expire"`
	}
	if err := json.Unmarshal(res, &first); err != nil || len(first.ICEServers) != 1 || first.ICEServers[0].Username != "9999:alice" || first.Expire != 9999 {
		t.Fatalf("ice_servers in %s", res)
	}
	_, err = b.Join(ctx, hub.RoomJoin{Room: "r", Participant: "p2", Push: push})
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != 421 || perr.URL != "wss://a.example/ws" {
		t.Fatalf("join on the other node: %v, want 421 with a's URL", err)
	}
	wire := protocol.AppendErrorObject(nil, perr)
	var back map[string]any
	if json.Unmarshal(wire, &back) != nil || back["url"] != "wss://a.example/ws" {
		t.Fatalf("the error on the wire is %s", wire)
	}
	res, err = a.Join(ctx, hub.RoomJoin{Room: "r", Participant: "p2", Push: push})
	if err != nil {
		t.Fatal(err)
	}
	var jr struct {
		Participants []map[string]any `json:"participants"`
	}
	if err := json.Unmarshal(res, &jr); err != nil || len(jr.Participants) != 1 {
		t.Fatalf("join result %s", res)
	}
	a.Leave("r", "p1")
	a.Leave("r", "p2")
	if _, err := b.Join(ctx, hub.RoomJoin{Room: "r", Participant: "p3", Push: push}); err != nil {
		t.Fatalf("the emptied room is not free for another node: %v", err)
	}
}
