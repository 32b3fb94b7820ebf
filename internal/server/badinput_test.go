package server_test

import (
	"strings"
	"testing"

	"github.com/gobwas/ws"

	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

// healthy asserts that the server still serves another client: it
// subscribes, publishes through the API and receives the publication.
func healthy(t *testing.T, ts *testServer, witness *wstest.Client) {
	t.Helper()
	off := ts.publish("witness", "still here")
	m := witness.Next()
	if m["channel"] != "witness" || m["offset"] != off {
		t.Fatalf("witness got %v", m)
	}
}

func TestBadCommandsGetErrors(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.ClientPublish = true })
	witness := ts.dial()
	witness.Subscribe("witness")
	tests := []struct {
		name  string
		frame string
		code  int
		id    bool // the error reply carries the id
	}{
		{"invalid JSON", `{"command":"subscribe",`, 400, false},
		{"not an object", `["subscribe","news"]`, 400, false},
		{"plain text", `hello`, 400, false},
		{"missing command", `{"channel":"news","id":7}`, 400, true},
		{"command of wrong type", `{"command":5,"id":7}`, 400, true},
		{"id of wrong type", `{"command":"ping","id":"seven"}`, 400, false},
		{"unknown command", `{"command":"explode","id":7}`, 404, true},
		{"unknown command without id", `{"command":"explode"}`, 404, false},
		{"missing channel", `{"command":"subscribe","id":7}`, 422, true},
		{"empty channel", `{"command":"subscribe","channel":"","id":7}`, 422, true},
		{"channel with space", `{"command":"subscribe","channel":"a b","id":7}`, 422, true},
		{"channel with quote", `{"command":"publish","channel":"a\"b","data":1,"id":7}`, 422, true},
		{"channel too long", `{"command":"subscribe","channel":"` + strings.Repeat("c", 256) + `","id":7}`, 422, true},
		{"publish without data", `{"command":"publish","channel":"news","id":7}`, 400, true},
		{"unsubscribe not subscribed", `{"command":"unsubscribe","channel":"news","id":7}`, 410, true},
	}
	c := ts.dial()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c.SendRaw(tc.frame)
			m := c.Next()
			if got := errorCode(m); got != tc.code {
				t.Fatalf("error code %d, want %d (reply %v)", got, tc.code, m)
			}
			if msg, _ := m["error"].(map[string]any)["message"].(string); msg == "" {
				t.Fatalf("error without message: %v", m)
			}
			if _, has := m["id"]; has != tc.id {
				t.Fatalf("reply id present=%v, want %v: %v", has, tc.id, m)
			}
			if tc.id && m["id"] != 7.0 {
				t.Fatalf("reply id %v", m["id"])
			}
			healthy(t, ts, witness)
		})
	}
	// The connection that sent all of that still works.
	c.Subscribe("news")
}

func TestDoubleSubscribe(t *testing.T) {
	ts := start(t, nil)
	c := ts.dial()
	c.Subscribe("d")
	if r := c.Call(map[string]any{"command": "subscribe", "channel": "d"}); errorCode(r) != 409 {
		t.Fatalf("second subscribe: %v", r)
	}
	ts.publish("d", 1)
	expectPub(t, c.Next(), "d", 1)
	c.Silent(50e6) // exactly once
}

func TestChannelLimit(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.MaxChannelsPerConnection = 2 })
	c := ts.dial()
	c.Subscribe("a")
	c.Subscribe("b")
	if r := c.Call(map[string]any{"command": "subscribe", "channel": "c"}); errorCode(r) != 429 {
		t.Fatalf("third subscribe: %v", r)
	}
}

func TestClientPublishDisabled(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.ClientPublish = false })
	c := ts.dial()
	if r := c.Call(map[string]any{"command": "publish", "channel": "x", "data": 1}); errorCode(r) != 403 {
		t.Fatalf("publish: %v", r)
	}
}

// TestBadFramesClose covers frames that break the WebSocket contract: each
// closes only the offending connection, with its documented close code.
func TestBadFramesClose(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.MaxMessageSize = 1024 })
	witness := ts.dial()
	witness.Subscribe("witness")
	tests := []struct {
		name  string
		frame ws.Frame
		code  int
	}{
		{"binary frame", ws.NewBinaryFrame([]byte(`{"command":"ping"}`)), 1003},
		{"frame over size limit", ws.NewTextFrame([]byte(`{"command":"publish","channel":"x","data":"` + strings.Repeat("a", 2000) + `"}`)), 1009},
		{"invalid UTF-8", ws.NewTextFrame([]byte{'"', 0xff, 0xfe, '"'}), 1007},
		{"unknown opcode", ws.Frame{Header: ws.Header{Fin: true, OpCode: 0x3}}, 1002},
		{"continuation without start", ws.Frame{Header: ws.Header{Fin: true, OpCode: ws.OpContinuation}, Payload: []byte("x")}, 1002},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.dial()
			if err := c.SendFrame(ws.MaskFrameInPlace(tc.frame)); err != nil {
				t.Fatal(err)
			}
			if code := c.ExpectClose(); code != tc.code {
				t.Fatalf("close code %d, want %d", code, tc.code)
			}
			healthy(t, ts, witness)
		})
	}
}

func TestUnmaskedFrameCloses(t *testing.T) {
	ts := start(t, nil)
	c := ts.dial()
	if err := c.SendFrame(ws.NewTextFrame([]byte(`{"command":"ping"}`))); err != nil {
		t.Fatal(err)
	}
	if code := c.ExpectClose(); code != 1002 {
		t.Fatalf("close code %d, want 1002", code)
	}
}

func TestFragmentedMessage(t *testing.T) {
	ts := start(t, nil)
	c := ts.dial()
	msg := []byte(`{"command":"subscribe","channel":"frag","id":1}`)
	first := ws.Frame{Header: ws.Header{Fin: false, OpCode: ws.OpText, Length: 10}, Payload: msg[:10]}
	rest := ws.Frame{Header: ws.Header{Fin: true, OpCode: ws.OpContinuation, Length: int64(len(msg) - 10)}, Payload: msg[10:]}
	for _, f := range []ws.Frame{first, ws.NewPingFrame([]byte("p")), rest} {
		if err := c.SendFrame(ws.MaskFrameInPlace(f)); err != nil {
			t.Fatal(err)
		}
	}
	if m := c.Next(); m["id"] != 1.0 || m["error"] != nil {
		t.Fatalf("reply to fragmented subscribe: %v", m)
	}
}

func TestClientCloseIsAnswered(t *testing.T) {
	ts := start(t, nil)
	c := ts.dial()
	c.Subscribe("bye")
	body := ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye")
	if err := c.SendFrame(ws.MaskFrameInPlace(ws.NewCloseFrame(body))); err != nil {
		t.Fatal(err)
	}
	if code := c.ExpectClose(); code != 1000 {
		t.Fatalf("close code %d, want 1000", code)
	}
}

func TestAPIBadRequests(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.APIKey = []string{"old-key", testKey} })
	witness := ts.dial()
	witness.Subscribe("witness")
	tests := []struct {
		name, method, path, key, body string
		status, code                  int
	}{
		{"no key", "POST", "/api/publish", "", `{"channel":"a","data":1}`, 401, 401},
		{"wrong key", "POST", "/api/publish", "nope", `{"channel":"a","data":1}`, 403, 403},
		{"malformed body", "POST", "/api/publish", testKey, `{"channel":`, 400, 400},
		{"body not an object", "POST", "/api/publish", testKey, `[1,2]`, 400, 400},
		{"wrong field type", "POST", "/api/publish", testKey, `{"channel":5,"data":1}`, 400, 400},
		{"missing data", "POST", "/api/publish", testKey, `{"channel":"a"}`, 400, 400},
		{"invalid channel", "POST", "/api/publish", testKey, `{"channel":"a b","data":1}`, 400, 422},
		{"body too large", "POST", "/api/publish", testKey, `{"channel":"a","data":"` + strings.Repeat("x", 2<<20) + `"}`, 413, 413},
		{"unknown method", "POST", "/api/explode", testKey, `{}`, 404, 404},
		{"wrong HTTP method", "GET", "/api/publish", testKey, ``, 405, 400},
		{"broadcast without channels", "POST", "/api/broadcast", testKey, `{"channels":[],"data":1}`, 400, 400},
		{"broadcast invalid channel", "POST", "/api/broadcast", testKey, `{"channels":["ok","b d"],"data":1}`, 400, 422},
		{"disconnect without client", "POST", "/api/disconnect", testKey, `{}`, 400, 400},
		{"batch without commands", "POST", "/api/batch", testKey, `{"commands":[]}`, 400, 400},
		{"batch not a list", "POST", "/api/batch", testKey, `{"commands":{"method":"info"}}`, 400, 400},
		{"batch too long", "POST", "/api/batch", testKey, `{"commands":[` + strings.Repeat(`{"method":"info"},`, 10000) + `{"method":"info"}]}`, 429, 429},
		{"rotated key still accepted", "GET", "/api/info", "old-key", ``, 200, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, m := ts.api(tc.method, tc.path, tc.key, tc.body)
			if status != tc.status || errorCode(m) != tc.code {
				t.Fatalf("got %d %v, want %d with code %d", status, m, tc.status, tc.code)
			}
			healthy(t, ts, witness)
		})
	}
}

func TestOriginPolicy(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.AllowedOrigins = []string{"https://app.example"} })
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{"http://" + ts.Addr(), true},
		{"https://app.example", true},
		{"https://evil.example", false},
		{"null", false},
	} {
		h := map[string]string{}
		if tc.origin != "" {
			h["Origin"] = tc.origin
		}
		_, err := wstest.DialErr(t, ts.wsURL(), h)
		if (err == nil) != tc.ok {
			t.Errorf("origin %q: err=%v, want ok=%v", tc.origin, err, tc.ok)
		}
	}
}
