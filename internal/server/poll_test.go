package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// pollAnswer is a decoded answer of /poll or /publish, success or error.
type pollAnswer struct {
	status int
	header http.Header
	body   map[string]any
}

func (a pollAnswer) cursor() string { s, _ := a.body["cursor"].(string); return s }

func (a pollAnswer) messages() []map[string]any {
	var out []map[string]any
	for _, m := range anySlice(a.body["messages"]) {
		out = append(out, m.(map[string]any))
	}
	return out
}

// httpDo sends one request to the node and decodes the JSON answer.
func (ts *testServer) httpDo(method, path string, header map[string]string, body string) pollAnswer {
	ts.t.Helper()
	a, err := ts.httpDoErr(method, path, header, body)
	if err != nil {
		ts.t.Fatal(err)
	}
	return a
}

// httpDoErr is httpDo returning its error, for other goroutines than the
// test's.
func (ts *testServer) httpDoErr(method, path string, header map[string]string, body string) (pollAnswer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+ts.Addr()+path, strings.NewReader(body))
	if err != nil {
		return pollAnswer{}, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return pollAnswer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return pollAnswer{}, err
	}
	a := pollAnswer{status: resp.StatusCode, header: resp.Header}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			return a, fmt.Errorf("%s %s answered non-JSON %q", method, path, raw)
		}
	}
	return a, nil
}

// pollOK polls and fails the test unless the answer is a 200 with a cursor.
func (ts *testServer) pollOK(query string, header map[string]string) pollAnswer {
	ts.t.Helper()
	a := ts.httpDo("GET", "/poll?"+query, header, "")
	if a.status != 200 || a.cursor() == "" || a.body["messages"] == nil {
		ts.t.Fatalf("poll %s: %d %v", query, a.status, a.body)
	}
	return a
}

func TestPollAndHTTPPublishEndToEnd(t *testing.T) {
	ts := start(t, nil)
	ws := ts.dial()
	ws.Subscribe("room")
	first := ts.pollOK("channel=room", nil)

	// A long poll waits; a client publishes over HTTP; the poll and the
	// WebSocket subscriber both get the publication.
	done := make(chan pollAnswer, 1)
	go func() {
		a, err := ts.httpDoErr("GET", "/poll?channel=room&timeout=20&cursor="+first.cursor(), nil, "")
		if err != nil {
			t.Error(err)
		}
		done <- a
	}()
	time.Sleep(100 * time.Millisecond) // let the poll start waiting (it also works if it has not)
	pub := ts.httpDo("POST", "/publish", map[string]string{"Content-Type": "application/json"}, `{"channel":"room","data":{"text":"hi"}}`)
	if pub.status != 200 || pub.body["result"].(map[string]any)["offset"] != 1.0 {
		t.Fatalf("publish: %d %v", pub.status, pub.body)
	}
	var a pollAnswer
	select {
	case a = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the long poll did not return within 10s of the publication")
	}
	msgs := a.messages()
	if a.status != 200 || len(msgs) != 1 || msgs[0]["channel"] != "room" || msgs[0]["offset"] != 1.0 ||
		msgs[0]["data"].(map[string]any)["text"] != "hi" {
		t.Fatalf("poll: %d %v", a.status, a.body)
	}
	expectPub(t, ws.Next(), "room", 1)

	// null is data like any other value.
	if p := ts.httpDo("POST", "/publish", nil, `{"channel":"room","data":null}`); p.status != 200 {
		t.Fatalf("publish null: %d %v", p.status, p.body)
	}
	b := ts.pollOK("channel=room&timeout=0&cursor="+a.cursor(), nil)
	if m := b.messages(); len(m) != 1 || m[0]["offset"] != 2.0 || m[0]["data"] != nil {
		t.Fatalf("poll after null: %v", b.body)
	}
}

// TestPollAndPublishBadInput is the table of refused requests: each gets
// its documented status and code, and leaves a WebSocket subscriber and a
// poller working.
func TestPollAndPublishBadInput(t *testing.T) {
	ts := start(t, func(c *config.Config) {
		c.MaxMessageSize = 256
		c.PollMaxTimeout = 60 * time.Second
	})
	witness := ts.dial()
	witness.Subscribe("witness")
	poller := ts.pollOK("channel=witness", nil).cursor()

	ab := ts.pollOK("channel=a&channel=b", nil).cursor()
	many := make([]string, 17)
	for i := range many {
		many[i] = "channel=c" + string(rune('a'+i))
	}
	ct := map[string]string{"Content-Type": "application/json"}
	foreign := map[string]string{"Origin": "https://evil.example"}
	tests := []struct {
		name         string
		method, path string
		header       map[string]string
		body         string
		status, code int
	}{
		{"poll: no channel", "GET", "/poll?timeout=1", nil, "", 400, 422},
		{"poll: invalid channel", "GET", "/poll?channel=a%20b", nil, "", 400, 422},
		{"poll: channel too long", "GET", "/poll?channel=" + strings.Repeat("c", 256), nil, "", 400, 422},
		{"poll: duplicate channel", "GET", "/poll?channel=a&channel=b&channel=a", nil, "", 400, 400},
		{"poll: 17 channels", "GET", "/poll?" + strings.Join(many, "&"), nil, "", 400, 429},
		{"poll: cursor not base64", "GET", "/poll?channel=a&channel=b&cursor=!!!", nil, "", 400, 400},
		{"poll: cursor truncated", "GET", "/poll?channel=a&channel=b&cursor=" + ab[:len(ab)-3], nil, "", 400, 400},
		{"poll: cursor of another version", "GET", "/poll?channel=a&channel=b&cursor=AgAAAAAB", nil, "", 400, 400},
		{"poll: cursor too long", "GET", "/poll?channel=a&channel=b&cursor=" + strings.Repeat("A", 300), nil, "", 400, 400},
		{"poll: cursor for fewer channels", "GET", "/poll?channel=a&channel=b&channel=c&cursor=" + ab, nil, "", 400, 400},
		{"poll: cursor for another channel list", "GET", "/poll?channel=a&channel=z&cursor=" + ab, nil, "", 400, 400},
		{"poll: two cursors", "GET", "/poll?channel=a&channel=b&cursor=" + ab + "&cursor=" + ab, nil, "", 400, 400},
		{"poll: timeout -1", "GET", "/poll?channel=a&timeout=-1", nil, "", 400, 400},
		{"poll: timeout 61", "GET", "/poll?channel=a&timeout=61", nil, "", 400, 400},
		{"poll: timeout abc", "GET", "/poll?channel=a&timeout=abc", nil, "", 400, 400},
		{"poll: malformed query", "GET", "/poll?channel=%zz", nil, "", 400, 400},
		{"poll: foreign origin", "GET", "/poll?channel=a", foreign, "", 403, 403},
		{"poll: wrong method", "POST", "/poll?channel=a", nil, "", 405, 400},
		{"publish: invalid JSON", "POST", "/publish", ct, `{"channel":"a",`, 400, 400},
		{"publish: not an object", "POST", "/publish", ct, `["a",1]`, 400, 400},
		{"publish: channel of wrong type", "POST", "/publish", ct, `{"channel":5,"data":1}`, 400, 400},
		{"publish: missing data", "POST", "/publish", ct, `{"channel":"a"}`, 400, 400},
		{"publish: missing channel", "POST", "/publish", ct, `{"data":1}`, 400, 422},
		{"publish: invalid channel", "POST", "/publish", ct, `{"channel":"a b","data":1}`, 400, 422},
		{"publish: too large", "POST", "/publish", ct, `{"channel":"a","data":"` + strings.Repeat("x", 300) + `"}`, 413, 413},
		{"publish: wrong method", "GET", "/publish", nil, "", 405, 400},
		{"publish: foreign origin", "POST", "/publish", map[string]string{"Origin": "https://evil.example", "Content-Type": "text/plain"}, `{"channel":"a","data":1}`, 403, 403},
		{"publish: malformed token", "POST", "/publish", map[string]string{"Authorization": "Basic eDp5"}, `{"channel":"a","data":1}`, 401, 401},
		{"publish: token without key", "POST", "/publish", map[string]string{"Authorization": "Bearer abc"}, `{"channel":"a","data":1}`, 401, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := ts.httpDo(tc.method, tc.path, tc.header, tc.body)
			if a.status != tc.status || errorCode(a.body) != tc.code {
				t.Fatalf("got %d %v, want HTTP %d with code %d", a.status, a.body, tc.status, tc.code)
			}
			if msg, _ := a.body["error"].(map[string]any)["message"].(string); msg == "" {
				t.Fatalf("error without message: %v", a.body)
			}
			if a.status == 405 && a.header.Get("Allow") == "" {
				t.Fatal("405 without Allow")
			}
			// Others are unaffected: a WebSocket subscriber and a poller
			// both get the next publication.
			off := ts.publish("witness", tc.name)
			if m := witness.Next(); m["channel"] != "witness" || m["offset"] != off {
				t.Fatalf("witness got %v", m)
			}
			p := ts.pollOK("channel=witness&timeout=5&cursor="+poller, nil)
			if m := p.messages(); len(m) != 1 || m[0]["offset"] != off {
				t.Fatalf("witness poller got %v", p.body)
			}
			poller = p.cursor()
		})
	}
	if n := ts.Hub().Info().Connections; n != 1 { // the witness
		t.Fatalf("%d connections left", n)
	}
}

func TestHTTPPublishDisabled(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.ClientPublish = false })
	a := ts.httpDo("POST", "/publish", nil, `{"channel":"a","data":1}`)
	if a.status != 403 || errorCode(a.body) != 403 {
		t.Fatalf("publish with client_publish off: %d %v", a.status, a.body)
	}
	// The server API still publishes, and pollers get it.
	c := ts.pollOK("channel=a", nil).cursor()
	ts.publish("a", "from the backend")
	if m := ts.pollOK("channel=a&timeout=0&cursor="+c, nil).messages(); len(m) != 1 {
		t.Fatalf("poll: %v", m)
	}
}

func TestPollCursorFromAnotherServer(t *testing.T) {
	ts1 := start(t, nil)
	ts2 := start(t, nil)
	ts1.publish("a", 1)
	c := ts1.pollOK("channel=a&channel=b", nil).cursor()
	ts2.publish("a", 1)
	a := ts2.pollOK("channel=b&channel=a&timeout=20&cursor="+c, nil)
	lost := anySlice(a.body["unrecovered"])
	if len(lost) != 2 || lost[0] != "a" || lost[1] != "b" || len(a.messages()) != 0 {
		t.Fatalf("foreign cursor: %v", a.body)
	}
}

func TestPollCursorOlderThanHistory(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.HistorySize = 5 })
	c := ts.pollOK("channel=a", nil).cursor()
	for i := range 8 {
		ts.publish("a", i)
	}
	a := ts.pollOK("channel=a&timeout=20&cursor="+c, nil)
	if lost := anySlice(a.body["unrecovered"]); len(lost) != 1 || lost[0] != "a" || len(a.messages()) != 0 {
		t.Fatalf("trimmed cursor: %v", a.body)
	}
	// Within history, the next poll continues without loss.
	ts.publish("a", "next")
	b := ts.pollOK("channel=a&timeout=0&cursor="+a.cursor(), nil)
	if m := b.messages(); len(m) != 1 || m[0]["offset"] != 9.0 || b.body["unrecovered"] != nil {
		t.Fatalf("after unrecovered: %v", b.body)
	}
}

// TestPollOutlivesReadTimeout checks that a long poll is not cut by the
// server's read timeout (handshake_timeout + write_timeout, here 2s).
func TestPollOutlivesReadTimeout(t *testing.T) {
	ts := start(t, func(c *config.Config) {
		c.HandshakeTimeout = time.Second
		c.WriteTimeout = time.Second
	})
	c := ts.pollOK("channel=a", nil).cursor()
	begin := time.Now()
	a := ts.pollOK("channel=a&timeout=3&cursor="+c, nil)
	if d := time.Since(begin); d < 2900*time.Millisecond || len(a.messages()) != 0 {
		t.Fatalf("poll of 3s answered after %s: %v", d, a.body)
	}
}

func TestPollMaxTimeoutIsConfigurable(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.PollMaxTimeout = 5 * time.Second })
	if a := ts.httpDo("GET", "/poll?channel=a&timeout=6", nil, ""); a.status != 400 || errorCode(a.body) != 400 {
		t.Fatalf("timeout over poll_max_timeout: %d %v", a.status, a.body)
	}
	ts.pollOK("channel=a&timeout=5", nil)
	cfg := config.Default()
	cfg.PollMaxTimeout = 0
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "poll_max_timeout") {
		t.Fatalf("poll_max_timeout 0 accepted: %v", err)
	}
}

func TestPollAndPublishCORS(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.AllowedOrigins = []string{"https://app.example"} })
	origin := "https://app.example"
	for _, tc := range []struct{ path, method string }{{"/poll", "GET"}, {"/publish", "POST"}} {
		pre := ts.httpDo("OPTIONS", tc.path, map[string]string{
			"Origin":                         origin,
			"Access-Control-Request-Method":  tc.method,
			"Access-Control-Request-Headers": "content-type, authorization",
		}, "")
		h := pre.header
		if pre.status != 204 || h.Get("Access-Control-Allow-Origin") != origin || !strings.Contains(h.Get("Access-Control-Allow-Methods"), tc.method) ||
			!strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), "content-type") || h.Get("Access-Control-Allow-Credentials") != "true" {
			t.Fatalf("preflight of %s: %d %v", tc.path, pre.status, h)
		}
	}
	a := ts.pollOK("channel=a", map[string]string{"Origin": origin})
	if a.header.Get("Access-Control-Allow-Origin") != origin || a.header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("poll CORS headers: %v", a.header)
	}
	p := ts.httpDo("POST", "/publish", map[string]string{"Origin": origin, "Content-Type": "application/json"}, `{"channel":"a","data":1}`)
	if p.status != 200 || p.header.Get("Access-Control-Allow-Origin") != origin {
		t.Fatalf("publish with CORS: %d %v %v", p.status, p.header, p.body)
	}
	if f := ts.httpDo("OPTIONS", "/poll", map[string]string{"Origin": "https://evil.example"}, ""); f.status != 403 || f.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from a foreign origin: %d %v", f.status, f.header)
	}
}

// TestPollAndPublishPermissions runs the endpoints on a server that
// requires tokens and has namespaces: the same rules as over WebSocket.
func TestPollAndPublishPermissions(t *testing.T) {
	ts := start(t, secured)
	bearer := func(user string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + token(t, user, time.Hour, nil)}
	}
	expired := map[string]string{"Authorization": "Bearer " + token(t, "alice", -time.Minute, nil)}
	tests := []struct {
		name         string
		method, path string
		header       map[string]string
		body         string
		status, code int
	}{
		{"poll without token", "GET", "/poll?channel=a", nil, "", 401, 401},
		{"poll with a bad token", "GET", "/poll?channel=a", map[string]string{"Authorization": "Bearer x.y.z"}, "", 401, 401},
		{"poll with an expired token", "GET", "/poll?channel=a", expired, "", 401, protocol.ErrTokenExpired.Code},
		{"poll with a token", "GET", "/poll?channel=a", bearer("alice"), "", 200, 0},
		{"poll of an authenticated namespace", "GET", "/poll?channel=members:x", bearer("alice"), "", 200, 0},
		{"poll of a token namespace", "GET", "/poll?channel=a&channel=private:x", bearer("alice"), "", 403, 403},
		{"poll of an unknown namespace", "GET", "/poll?channel=nope:x", bearer("alice"), "", 400, 422},
		{"poll of another user's channel", "GET", "/poll?channel=dm:x%23bob,carol", bearer("alice"), "", 403, 403},
		{"poll of one's own channel", "GET", "/poll?channel=dm:x%23alice,bob", bearer("alice"), "", 200, 0},
		{"publish without token", "POST", "/publish", nil, `{"channel":"members:x","data":1}`, 401, 401},
		{"publish where clients may not", "POST", "/publish", bearer("alice"), `{"channel":"news:x","data":1}`, 403, 403},
		{"publish to another user's channel", "POST", "/publish", bearer("alice"), `{"channel":"dm:x#bob,carol","data":1}`, 403, 403},
		{"publish with a token", "POST", "/publish", bearer("alice"), `{"channel":"members:x","data":1}`, 200, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := ts.httpDo(tc.method, tc.path, tc.header, tc.body)
			if a.status != tc.status || errorCode(a.body) != tc.code {
				t.Fatalf("got %d %v, want HTTP %d with code %d", a.status, a.body, tc.status, tc.code)
			}
			if a.status == 401 && a.header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}

	// A namespace without history cannot carry a poller across a
	// publication between two polls: the answer says so.
	c := ts.pollOK("channel=members:x", bearer("alice")).cursor()
	if p := ts.httpDo("POST", "/publish", bearer("bob"), `{"channel":"members:x","data":"missed"}`); p.status != 200 {
		t.Fatalf("publish: %d %v", p.status, p.body)
	}
	a := ts.pollOK("channel=members:x&timeout=0&cursor="+url.QueryEscape(c), bearer("alice"))
	if lost := anySlice(a.body["unrecovered"]); len(lost) != 1 || len(a.messages()) != 0 {
		t.Fatalf("poll across a publication without history: %v", a.body)
	}

	// A long poll with a token, woken by an HTTP publish with another.
	alice := bearer("alice")
	c = ts.pollOK("channel=room", alice).cursor()
	done := make(chan pollAnswer, 1)
	go func() {
		a, err := ts.httpDoErr("GET", "/poll?channel=room&timeout=20&cursor="+url.QueryEscape(c), alice, "")
		if err != nil {
			t.Error(err)
		}
		done <- a
	}()
	if p := ts.httpDo("POST", "/publish", bearer("bob"), `{"channel":"room","data":"hello"}`); p.status != 200 {
		t.Fatalf("publish: %d %v", p.status, p.body)
	}
	select {
	case a := <-done:
		if m := a.messages(); a.status != 200 || len(m) != 1 || m[0]["data"] != "hello" {
			t.Fatalf("poll: %d %v", a.status, a.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the long poll did not return")
	}
}
