package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/protocol"
	"github.com/switchboardhq/switchboard/internal/ssetest"
)

// openSSE opens /sse with the given query and Last-Event-ID ("" for none).
func (ts *testServer) openSSE(query, lastEventID string) *ssetest.Stream {
	ts.t.Helper()
	var h http.Header
	if lastEventID != "" {
		h = http.Header{"Last-Event-Id": {lastEventID}}
	}
	return ssetest.Open(ts.t, nil, "http://"+ts.Addr()+"/sse?"+query, h)
}

// subscribers returns the number of clients in channel's presence.
func (ts *testServer) subscribers(channel string) int {
	ts.t.Helper()
	_, m := ts.api("POST", "/api/presence_stats", testKey, fmt.Sprintf(`{"channel":%q}`, channel))
	n, _ := m["result"].(map[string]any)["num_clients"].(float64)
	return int(n)
}

// sseConnected is the data of the connected event.
type sseConnected struct {
	Client   string `json:"client"`
	Channels []struct {
		Channel string `json:"channel"`
		Offset  uint64 `json:"offset"`
		Epoch   string `json:"epoch"`
	} `json:"channels"`
}

// ssePush is the data of a publication event, or of a notice.
type ssePush struct {
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
	Offset  uint64          `json:"offset"`
	Epoch   string          `json:"epoch"`
	Code    int             `json:"code"`
	Reason  string          `json:"reason"`
}

func decodeEvent[T any](t *testing.T, ev ssetest.Event) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(ev.Data), &v); err != nil {
		t.Fatalf("event %q: data %q is not JSON: %v", ev.Type, ev.Data, err)
	}
	return v
}

// checkID asserts the properties of an event id browsers rely on.
func checkID(t *testing.T, id string) {
	t.Helper()
	if id == "" || len(id) > 128 {
		t.Fatalf("event id %q: want 1 to 128 bytes", id)
	}
	for _, c := range id {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			t.Fatalf("event id %q: %q is not URL-safe", id, c)
		}
	}
}

// expectStart reads the retry hint and the connected event (after the given
// number of unrecovered events) and returns the connected data.
func expectStart(t *testing.T, s *ssetest.Stream, unrecovered int) (sseConnected, []ssePush) {
	t.Helper()
	ev := s.Next()
	if ev.Retry < 1000 || ev.Retry >= 2000 || ev.HasData {
		t.Fatalf("first block: want a retry hint between 1000 and 2000 ms, got %+v", ev)
	}
	var notices []ssePush
	for range unrecovered {
		ev = s.NextData()
		if ev.Type != "unrecovered" || ev.HasID {
			t.Fatalf("want an unrecovered event without id, got %+v", ev)
		}
		notices = append(notices, decodeEvent[ssePush](t, ev))
	}
	ev = s.NextData()
	if ev.Type != "connected" || !ev.HasID {
		t.Fatalf("want the connected event with an id, got %+v", ev)
	}
	checkID(t, ev.ID)
	c := decodeEvent[sseConnected](t, ev)
	if c.Client == "" {
		t.Fatalf("connected event without client id: %s", ev.Data)
	}
	return c, notices
}

// expectPublication reads the next event with data and asserts it is the
// publication of channel at offset.
func expectPublication(t *testing.T, s *ssetest.Stream, channel string, offset uint64) ssePush {
	t.Helper()
	ev := s.NextData()
	p := decodeEvent[ssePush](t, ev)
	if ev.Type != "" || p.Channel != channel || p.Offset != offset {
		t.Fatalf("want publication %s@%d, got event %q %s", channel, offset, ev.Type, ev.Data)
	}
	checkID(t, ev.ID)
	return p
}

func TestSSEStream(t *testing.T) {
	ts := start(t, nil)
	s := ts.openSSE("channel=news", "")
	h := s.Resp.Header
	if h.Get("Content-Type") != "text/event-stream" || h.Get("Cache-Control") != "no-cache" || h.Get("X-Accel-Buffering") != "no" {
		t.Fatalf("headers: %v", h)
	}
	c, _ := expectStart(t, s, 0)
	if len(c.Channels) != 1 || c.Channels[0].Channel != "news" || c.Channels[0].Offset != 0 || c.Channels[0].Epoch == "" {
		t.Fatalf("connected: %+v", c)
	}
	// The connected event comes once the stream is subscribed.
	if n := ts.subscribers("news"); n != 1 {
		t.Fatalf("%d subscribers after the connected event", n)
	}
	startID := s.LastEventID

	ts.publish("news", map[string]any{"title": "one"})
	p := expectPublication(t, s, "news", 1)
	if string(p.Data) != `{"title":"one"}` {
		t.Fatalf("data %s", p.Data)
	}
	if s.LastEventID == startID {
		t.Fatal("the publication's id does not move the position")
	}
	// JSON with line breaks (as whitespace) arrives as several data lines
	// that join into the same value.
	status, m := ts.api("POST", "/api/publish", testKey, "{\"channel\":\"news\",\"data\":{\n  \"title\": \"two\"\r\n}}")
	if status != 200 {
		t.Fatalf("publish: %d %v", status, m)
	}
	p = expectPublication(t, s, "news", 2)
	var v map[string]string
	if err := json.Unmarshal(p.Data, &v); err != nil || v["title"] != "two" {
		t.Fatalf("multi-line data: %s (%v)", p.Data, err)
	}
	// The client appears in presence with its transport.
	_, pr := ts.api("POST", "/api/presence", testKey, `{"channel":"news"}`)
	clients := pr["result"].(map[string]any)["clients"].([]any)
	if len(clients) != 1 || clients[0].(map[string]any)["client"] != c.Client || clients[0].(map[string]any)["transport"] != "sse" {
		t.Fatalf("presence: %v", pr)
	}
}

// TestSSERecoveryUnderLoad cuts a reader off 100 times while a publisher
// publishes through the API at a steady rate: half the cuts close the HTTP
// connection from the client, half are /api/disconnect with reconnect. Each
// time the reader comes back with the last event id it saw, as a browser
// does. Across all streams it must see every publication exactly once, in
// order.
func TestSSERecoveryUnderLoad(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.HistorySize = 100000 })
	began := time.Now()
	var published atomic.Int64
	var lastPublished atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		client := &http.Client{Timeout: 10 * time.Second}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := http.NewRequest("POST", "http://"+ts.Addr()+"/api/publish", strings.NewReader(fmt.Sprintf(`{"channel":"feed","data":%d}`, i)))
			req.Header.Set("Authorization", "apikey "+testKey)
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			var r struct {
				Result struct{ Offset uint64 } `json:"result"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			lastPublished.Store(r.Result.Offset)
			published.Add(1)
			time.Sleep(200 * time.Microsecond)
		}
	}()

	var got []uint64 // got[0] is the starting position
	lastID := ""
	add := func(t *testing.T, ev ssetest.Event) {
		t.Helper()
		if !ev.HasData {
			return
		}
		if ev.Type != "" {
			t.Fatalf("unexpected %q event: %s", ev.Type, ev.Data)
		}
		checkID(t, ev.ID)
		got = append(got, decodeEvent[ssePush](t, ev).Offset)
	}
	for round := 0; round < 100; round++ {
		s := ts.openSSE("channel=feed", lastID)
		c, _ := expectStart(t, s, 0)
		if round == 0 {
			got = append(got, c.Channels[0].Offset)
		} else if c.Channels[0].Offset != got[len(got)-1] {
			t.Fatalf("round %d: the stream starts at %d, the reader holds %d", round, c.Channels[0].Offset, got[len(got)-1])
		}
		deadline := time.Now().Add(time.Duration(1+round%4) * time.Millisecond)
		for time.Now().Before(deadline) {
			ev, err := s.NextErr(2 * time.Millisecond)
			if err != nil {
				break
			}
			add(t, ev)
		}
		if round%2 == 0 {
			s.Close() // the client goes away mid-stream
		} else {
			status, m := ts.api("POST", "/api/disconnect", testKey, fmt.Sprintf(`{"client":%q,"reconnect":true}`, c.Client))
			if status != 200 {
				t.Fatalf("disconnect: %d %v", status, m)
			}
			// What was queued before the disconnect still arrives, then
			// the stream ends (no disconnect event: reconnect is allowed).
			for {
				ev, err := s.NextErr(ssetest.DefaultTimeout)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				add(t, ev)
			}
		}
		lastID = s.LastEventID
	}
	close(stop)
	wg.Wait()

	// One last stream brings the tail: everything up to the last
	// publication.
	final := lastPublished.Load()
	s := ts.openSSE("channel=feed", lastID)
	expectStart(t, s, 0)
	for got[len(got)-1] < final {
		add(t, s.NextData())
	}
	lost, dup := 0, 0
	for i := 1; i < len(got); i++ {
		switch {
		case got[i] <= got[i-1]:
			dup++
		case got[i] > got[i-1]+1:
			lost += int(got[i] - got[i-1] - 1)
		}
	}
	if lost != 0 || dup != 0 {
		t.Fatalf("lost %d, duplicated %d (offsets %v)", lost, dup, got)
	}
	if published.Load() < 100 {
		t.Fatalf("the publisher made only %d publications", published.Load())
	}
	t.Logf("%d publications seen once each, in order, across 101 streams (100 cut-offs) in %s; lost 0, duplicated 0",
		len(got)-1, time.Since(began).Round(time.Millisecond))
}

func TestSSEUnrecovered(t *testing.T) {
	t.Run("id from another server", func(t *testing.T) {
		ts1 := start(t, nil)
		ts1.publish("news", "old")
		s := ts1.openSSE("channel=news", "")
		expectStart(t, s, 0)
		oldID := s.LastEventID
		s.Close()

		ts2 := start(t, nil) // the same channel in a new epoch
		s = ts2.openSSE("channel=news", oldID)
		c, notices := expectStart(t, s, 1)
		if n := notices[0]; n.Channel != "news" || n.Offset != 0 || n.Epoch != c.Channels[0].Epoch || n.Epoch == "" {
			t.Fatalf("unrecovered %+v, connected %+v", n, c)
		}
		ts2.publish("news", "new")
		expectPublication(t, s, "news", 1)
		// The new id resumes on the new server without a notice.
		id := s.LastEventID
		s.Close()
		ts2.publish("news", "during the gap")
		s = ts2.openSSE("channel=news", id)
		expectStart(t, s, 0)
		expectPublication(t, s, "news", 2)
	})

	t.Run("older than history", func(t *testing.T) {
		ts := start(t, func(c *config.Config) { c.HistorySize = 3 })
		s := ts.openSSE("channel=news", "")
		expectStart(t, s, 0)
		id := s.LastEventID
		s.Close()
		for i := range 10 {
			ts.publish("news", i)
		}
		s = ts.openSSE("channel=news", id)
		c, _ := expectStart(t, s, 0)
		if c.Channels[0].Offset != 0 {
			t.Fatalf("the stream should start where the client was: %+v", c)
		}
		ev := s.NextData()
		n := decodeEvent[ssePush](t, ev)
		if ev.Type != "unrecovered" || !ev.HasID || n.Channel != "news" || n.Offset != 10 || n.Epoch != c.Channels[0].Epoch {
			t.Fatalf("want unrecovered news@10 with an id, got %+v", ev)
		}
		ts.publish("news", "live")
		expectPublication(t, s, "news", 11)
	})

	t.Run("one of two channels", func(t *testing.T) {
		ts := start(t, func(c *config.Config) { c.HistorySize = 3 })
		s := ts.openSSE("channel=a&channel=b", "")
		expectStart(t, s, 0)
		id := s.LastEventID
		s.Close()
		for i := range 10 {
			ts.publish("a", i)
		}
		ts.publish("b", "kept")
		s = ts.openSSE("channel=a&channel=b", id)
		expectStart(t, s, 0)
		ev := s.NextData()
		if n := decodeEvent[ssePush](t, ev); ev.Type != "unrecovered" || n.Channel != "a" || n.Offset != 10 {
			t.Fatalf("want unrecovered a@10, got %+v", ev)
		}
		expectPublication(t, s, "b", 1) // recovered
		ts.publish("a", "live")
		expectPublication(t, s, "a", 11)
		// Resuming from here needs no notice for either channel.
		id = s.LastEventID
		s.Close()
		ts.publish("a", "gap a")
		ts.publish("b", "gap b")
		s = ts.openSSE("channel=a&channel=b", id)
		expectStart(t, s, 0)
		expectPublication(t, s, "a", 12)
		expectPublication(t, s, "b", 2)
	})

	t.Run("different channel list", func(t *testing.T) {
		ts := start(t, nil)
		s := ts.openSSE("channel=a&channel=b", "")
		expectStart(t, s, 0)
		id := s.LastEventID
		s.Close()
		// Same number of channels, other names: the check tells.
		s = ts.openSSE("channel=a&channel=c", id)
		_, notices := expectStart(t, s, 2)
		if notices[0].Channel != "a" || notices[1].Channel != "c" {
			t.Fatalf("notices %+v", notices)
		}
	})
}

// TestSSERecoveryOff: on channels without history a fresh stream starts
// from now without a notice, while a reconnect is told it missed something.
func TestSSERecoveryOff(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.HistorySize = 0 })
	ts.publish("news", "before")
	s := ts.openSSE("channel=news", "")
	c, _ := expectStart(t, s, 0)
	if c.Channels[0].Offset != 1 {
		t.Fatalf("connected %+v", c)
	}
	ts.publish("news", "live")
	expectPublication(t, s, "news", 2)
	id := s.LastEventID
	s.Close()
	ts.publish("news", "missed")
	s = ts.openSSE("channel=news", id)
	expectStart(t, s, 0)
	ev := s.NextData()
	if n := decodeEvent[ssePush](t, ev); ev.Type != "unrecovered" || n.Offset != 3 {
		t.Fatalf("want unrecovered news@3, got %+v", ev)
	}
	ts.publish("news", "live again")
	expectPublication(t, s, "news", 4)
}

func TestSSETwoChannelsAndJoinLeave(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.JoinLeave = true })
	s := ts.openSSE("channel=a&channel=b", "")
	c, _ := expectStart(t, s, 0)
	if len(c.Channels) != 2 || c.Channels[0].Channel != "a" || c.Channels[1].Channel != "b" {
		t.Fatalf("connected %+v", c)
	}
	// The stream sees its own joins, like every subscriber of a channel.
	for _, ch := range []string{"a", "b"} {
		ev := s.NextData()
		if ev.Type != "join" || ev.HasID || ev.Data != fmt.Sprintf(`{"channel":%q,"join":{"client":%q,"transport":"sse"}}`, ch, c.Client) {
			t.Fatalf("want own join in %s, got %+v", ch, ev)
		}
	}
	// Interleaved publications: each id covers both channels, so any of
	// them resumes both.
	var ids []string
	for i := 1; i <= 3; i++ {
		ts.publish("a", i)
		expectPublication(t, s, "a", uint64(i))
		ids = append(ids, s.LastEventID)
		ts.publish("b", i)
		expectPublication(t, s, "b", uint64(i))
		ids = append(ids, s.LastEventID)
	}
	// A join and a leave of another client, as named events without id.
	other := ts.openSSE("channel=b", "")
	oc, _ := expectStart(t, other, 0)
	ev := s.NextData()
	if ev.Type != "join" || ev.HasID || !strings.Contains(ev.Data, oc.Client) || !strings.HasPrefix(ev.Data, `{"channel":"b","join":`) {
		t.Fatalf("want a join event, got %+v", ev)
	}
	other.Close()
	ev = s.NextData()
	if ev.Type != "leave" || !strings.Contains(ev.Data, oc.Client) {
		t.Fatalf("want a leave event, got %+v", ev)
	}
	s.Close()

	// Resume from the id after a@2: a@3, b@2, b@3 follow (with the new
	// stream's own joins in between).
	s = ts.openSSE("channel=a&channel=b", ids[2])
	c, _ = expectStart(t, s, 0)
	if c.Channels[0].Offset != 2 || c.Channels[1].Offset != 1 {
		t.Fatalf("resumed at %+v, want a@2 b@1", c)
	}
	var got []string
	for len(got) < 3 {
		ev := s.NextData()
		if ev.Type == "join" {
			continue
		}
		p := decodeEvent[ssePush](t, ev)
		got = append(got, fmt.Sprintf("%s@%d", p.Channel, p.Offset))
	}
	if strings.Join(got, " ") != "a@3 b@2 b@3" {
		t.Fatalf("recovered %v", got)
	}
}

func TestSSESixteenChannels(t *testing.T) {
	ts := start(t, nil)
	var q []string
	for i := range protocol.MaxCursorChannels {
		ch := fmt.Sprintf("c%d", i)
		q = append(q, "channel="+ch)
		for range 3 {
			ts.publish(ch, i)
		}
	}
	s := ts.openSSE(strings.Join(q, "&"), "")
	c, _ := expectStart(t, s, 0)
	if len(c.Channels) != protocol.MaxCursorChannels || c.Channels[15].Offset != 3 {
		t.Fatalf("connected %+v", c)
	}
	ts.publish("c15", "x")
	expectPublication(t, s, "c15", 4)
	ts.publish("c0", "y")
	expectPublication(t, s, "c0", 4)
}

// TestSSEBadInput sends malformed requests: each gets the documented status
// and JSON error, and a stream opened before keeps working.
func TestSSEBadInput(t *testing.T) {
	ts := start(t, nil)
	witness := ts.openSSE("channel=witness", "")
	expectStart(t, witness, 0)
	var seventeen []string
	for i := range 17 {
		seventeen = append(seventeen, fmt.Sprintf("channel=c%d", i))
	}
	otherCount := "AQAAAAABAg" // a well-formed id for two channels
	tests := []struct {
		name, method, query string
		header              map[string]string
		status, code        int
	}{
		{"no channel", "GET", "", nil, 400, 422},
		{"empty channel", "GET", "channel=", nil, 400, 422},
		{"invalid channel", "GET", "channel=a%20b", nil, 400, 422},
		{"channel too long", "GET", "channel=" + strings.Repeat("c", 256), nil, 400, 422},
		{"duplicate channel", "GET", "channel=a&channel=b&channel=a", nil, 400, 400},
		{"17 channels", "GET", strings.Join(seventeen, "&"), nil, 400, 429},
		{"malformed query", "GET", "channel=%zz", nil, 400, 400},
		{"Last-Event-ID not base64url", "GET", "channel=a", map[string]string{"Last-Event-ID": "not an id!"}, 400, 400},
		{"Last-Event-ID too short", "GET", "channel=a", map[string]string{"Last-Event-ID": "AQID"}, 400, 400},
		{"Last-Event-ID unknown version", "GET", "channel=a", map[string]string{"Last-Event-ID": "BwAAAAAA"}, 400, 400},
		{"Last-Event-ID truncated offset", "GET", "channel=a", map[string]string{"Last-Event-ID": "AQAAAACA"}, 400, 400},
		{"Last-Event-ID for two channels", "GET", "channel=a", map[string]string{"Last-Event-ID": otherCount}, 400, 400},
		{"Last-Event-ID too long", "GET", "channel=a", map[string]string{"Last-Event-ID": strings.Repeat("A", 129)}, 400, 400},
		{"malformed lastEventId parameter", "GET", "channel=a&lastEventId=%2A%2A", nil, 400, 400},
		{"two lastEventId parameters", "GET", "channel=a&lastEventId=x&lastEventId=y", nil, 400, 400},
		{"foreign origin", "GET", "channel=a", map[string]string{"Origin": "http://evil.example"}, 403, 403},
		{"POST", "POST", "channel=a", nil, 405, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, "http://"+ts.Addr()+"/sse?"+tc.query, nil)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatalf("status %d, body %q is not JSON", resp.StatusCode, body)
			}
			if resp.StatusCode != tc.status || errorCode(m) != tc.code {
				t.Fatalf("got %d %s, want status %d code %d", resp.StatusCode, body, tc.status, tc.code)
			}
			if tc.status == 400 && resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
			}
			off := ts.publish("witness", tc.name)
			expectPublication(t, witness, "witness", uint64(off))
		})
	}
}

func TestSSECORS(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.AllowedOrigins = []string{"http://app.example"} })
	s := ssetest.Open(t, nil, "http://"+ts.Addr()+"/sse?channel=news", http.Header{"Origin": {"http://app.example"}})
	if s.Resp.Header.Get("Access-Control-Allow-Origin") != "http://app.example" || s.Resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("CORS headers: %v", s.Resp.Header)
	}
	expectStart(t, s, 0)
	// Errors carry CORS headers too, so the page can read them.
	req, _ := http.NewRequest("GET", "http://"+ts.Addr()+"/sse", nil)
	req.Header.Set("Origin", "http://app.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get("Access-Control-Allow-Origin") != "http://app.example" {
		t.Fatalf("error answer: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestSSEDisconnect(t *testing.T) {
	ts := start(t, nil)
	for _, reconnect := range []bool{true, false} {
		t.Run(fmt.Sprintf("reconnect=%v", reconnect), func(t *testing.T) {
			s := ts.openSSE("channel=news", "")
			c, _ := expectStart(t, s, 0)
			status, m := ts.api("POST", "/api/disconnect", testKey, fmt.Sprintf(`{"client":%q,"reconnect":%v}`, c.Client, reconnect))
			if status != 200 {
				t.Fatalf("disconnect: %d %v", status, m)
			}
			if !reconnect {
				ev := s.NextData()
				d := decodeEvent[ssePush](t, ev)
				if ev.Type != "disconnect" || d.Code != 4500 || d.Reason == "" {
					t.Fatalf("want a disconnect event with 4500, got %+v", ev)
				}
			}
			s.ExpectEnd()
		})
	}
}

func TestSSEShutdownEndsStreams(t *testing.T) {
	ts := start(t, nil)
	var streams []*ssetest.Stream
	for range 3 {
		s := ts.openSSE("channel=news", "")
		expectStart(t, s, 0)
		streams = append(streams, s)
	}
	ts.publish("news", "last words")
	done := make(chan error, 1)
	go func() { done <- ts.Stop() }()
	for _, s := range streams {
		// What was published before still arrives; then the stream just
		// ends (4000: reconnect, so no disconnect event).
		expectPublication(t, s, "news", 1)
		s.ExpectEnd()
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// TestSSEConnectionLimitDrops: over the connection limit a stream gets no
// answer at all (EventSource retries), not an error status.
func TestSSEConnectionLimitDrops(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.MaxConnections = 1 })
	s := ts.openSSE("channel=news", "")
	expectStart(t, s, 0)
	s2, resp, err := ssetest.OpenErr(t, nil, "http://"+ts.Addr()+"/sse?channel=news", nil)
	if err == nil {
		t.Fatalf("over the limit: want a dropped connection, got stream %v, status %d", s2 != nil, resp.StatusCode)
	}
	ts.publish("news", "still served")
	expectPublication(t, s, "news", 1)
	s.Close()
	// The slot is free again once the first stream is gone.
	deadline := time.Now().Add(5 * time.Second)
	for {
		s3, _, err := ssetest.OpenErr(t, nil, "http://"+ts.Addr()+"/sse?channel=news", nil)
		if err == nil && s3 != nil {
			expectStart(t, s3, 0)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no stream after the first one left: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSSEHeartbeat(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.PingInterval = 100 * time.Millisecond })
	s := ts.openSSE("channel=news", "")
	expectStart(t, s, 0)
	for {
		ev := s.Next()
		if ev.HasData {
			t.Fatalf("unexpected event %+v", ev)
		}
		if len(ev.Comments) == 1 && ev.Comments[0] == "ping" {
			return
		}
	}
}

// TestSSEOutlivesReadTimeout keeps a stream open longer than the server's
// read timeout (handshake_timeout + write_timeout), which covers reading a
// request, not the life of a stream. (net/http clears the read deadline when
// a request without body has been read; this guards that assumption.)
func TestSSEOutlivesReadTimeout(t *testing.T) {
	ts := start(t, func(c *config.Config) {
		c.HandshakeTimeout = 100 * time.Millisecond
		c.WriteTimeout = 100 * time.Millisecond
	})
	s := ts.openSSE("channel=news", "")
	expectStart(t, s, 0)
	time.Sleep(600 * time.Millisecond) // three read timeouts
	ts.publish("news", "still open")
	expectPublication(t, s, "news", 1)
}

// TestSSEOverHTTP2 serves TLS with a certificate made here and reads streams
// over HTTP/2; the WebSocket endpoint keeps working over TLS (HTTP/1.1).
func TestSSEOverHTTP2(t *testing.T) {
	certFile, keyFile, pool := selfSignedCert(t)
	ts := start(t, func(c *config.Config) { c.TLSCert, c.TLSKey = certFile, keyFile })
	if !strings.HasPrefix(ts.URL(), "https://") {
		t.Fatalf("URL %s", ts.URL())
	}
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true,
	}}
	t.Cleanup(client.CloseIdleConnections)
	// More streams than the six a browser opens per host over HTTP/1.1,
	// all on one connection.
	var streams []*ssetest.Stream
	for range 8 {
		s := ssetest.Open(t, client, ts.URL()+"/sse?channel=news", nil)
		if s.Resp.ProtoMajor != 2 {
			t.Fatalf("protocol %s, want HTTP/2", s.Resp.Proto)
		}
		expectStart(t, s, 0)
		streams = append(streams, s)
	}
	if _, err := ts.Hub().Publish(context.Background(), "news", []byte(`"over h2"`), "api"); err != nil {
		t.Fatal(err)
	}
	for _, s := range streams {
		expectPublication(t, s, "news", 1)
	}
	// Cut one stream (an HTTP/2 stream reset); the others go on, and its
	// id resumes it.
	id := streams[0].LastEventID
	streams[0].Close()
	if _, err := ts.Hub().Publish(context.Background(), "news", []byte(`"after the cut"`), "api"); err != nil {
		t.Fatal(err)
	}
	for _, s := range streams[1:] {
		expectPublication(t, s, "news", 2)
	}
	s := ssetest.Open(t, client, ts.URL()+"/sse?channel=news", http.Header{"Last-Event-Id": {id}})
	expectStart(t, s, 0)
	expectPublication(t, s, "news", 2)

	t.Run("websocket over TLS", func(t *testing.T) {
		d := ws.Dialer{Timeout: 5 * time.Second, TLSConfig: &tls.Config{RootCAs: pool}}
		conn, _, _, err := d.Dial(context.Background(), "wss://"+ts.Addr()+"/ws")
		if err != nil {
			t.Fatalf("wss dial: %v", err)
		}
		defer conn.Close()
		if err := wsutil.WriteClientText(conn, []byte(`{"id":1,"command":"connect"}`)); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		msg, err := wsutil.ReadServerText(conn)
		if err != nil || !strings.Contains(string(msg), `"client"`) {
			t.Fatalf("connect over wss: %q %v", msg, err)
		}
	})
	t.Run("plain HTTP is refused", func(t *testing.T) {
		resp, err := http.Get("http://" + ts.Addr() + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				t.Fatal("plain HTTP served on the TLS port")
			}
		}
	})
}

// selfSignedCert writes a certificate for 127.0.0.1 and its key to temporary
// files and returns them with a pool that trusts the certificate.
func selfSignedCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "switchboard test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestSSEAuth runs SSE on a server that requires connection tokens: the
// token comes as a query parameter (EventSource cannot set headers) or as
// "Authorization: Bearer"; each channel is checked like a WebSocket
// subscribe; refusals are answered with 401 or 403 and a JSON error.
func TestSSEAuth(t *testing.T) {
	ts := start(t, secured)
	base := "http://" + ts.Addr() + "/sse?"
	alice := token(t, "alice", time.Hour, nil)

	refused := []struct {
		name, query, bearer string
		status, code        int
	}{
		{"no token", "channel=news:today", "", 401, 401},
		{"invalid token", "channel=news:today&token=not.a.jwt", "", 401, 401},
		{"expired token", "channel=news:today&token=" + token(t, "u", -time.Minute, nil), "", 401, 419},
		{"other secret", "channel=news:today&token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl", "", 401, 401},
		{"anonymous token, members channel", "channel=members:lobby&token=" + token(t, "", time.Hour, nil), "", 403, 403},
		{"token namespace", "channel=private:x&token=" + alice, "", 403, 403},
		{"one channel of two refused", "channel=news:today&channel=private:x&token=" + alice, "", 403, 403},
		{"user-limited channel", "channel=dm:chat%23bob,carol&token=" + alice, "", 403, 403},
		{"unknown namespace", "channel=nowhere:x&token=" + alice, "", 400, 422},
		{"bearer with a bad token", "channel=news:today", "nope", 401, 401},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			var h http.Header
			if tc.bearer != "" {
				h = http.Header{"Authorization": {"Bearer " + tc.bearer}}
			}
			s, resp, err := ssetest.OpenErr(t, nil, base+tc.query, h)
			if err != nil || s != nil {
				t.Fatalf("want a refusal, got stream %v, error %v", s != nil, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var m map[string]any
			_ = json.Unmarshal(body, &m)
			if resp.StatusCode != tc.status || errorCode(m) != tc.code {
				t.Fatalf("got %d %s, want status %d code %d", resp.StatusCode, body, tc.status, tc.code)
			}
		})
	}

	t.Run("query token", func(t *testing.T) {
		s := ssetest.Open(t, nil, base+"channel=members:lobby&channel=dm:chat%23alice,bob&token="+alice, nil)
		expectStart(t, s, 0)
		ts.publish("dm:chat#alice,bob", "hi alice")
		expectPublication(t, s, "dm:chat#alice,bob", 1)
	})
	t.Run("bearer header", func(t *testing.T) {
		s := ssetest.Open(t, nil, base+"channel=members:lobby", http.Header{"Authorization": {"Bearer " + alice}})
		expectStart(t, s, 0)
	})
	t.Run("channel granted by the token", func(t *testing.T) {
		tok := token(t, "alice", time.Hour, func(c *auth.ConnectClaims) { c.Channels = []string{"private:alice"} })
		s := ssetest.Open(t, nil, base+"channel=private:alice&token="+tok, nil)
		c, _ := expectStart(t, s, 0)
		// The stream's session carries the token's user.
		_, pr := ts.api("POST", "/api/presence", testKey, `{"channel":"private:alice"}`)
		clients, _ := pr["result"].(map[string]any)["clients"].([]any)
		if len(clients) != 1 || clients[0].(map[string]any)["client"] != c.Client || clients[0].(map[string]any)["user"] != "alice" {
			t.Fatalf("presence %v", pr)
		}
	})
	t.Run("expiry ends the stream with a disconnect event", func(t *testing.T) {
		grant := func(c *auth.ConnectClaims) { c.Channels = []string{"private:eve"} } // a namespace with recovery
		s := ssetest.Open(t, nil, base+"channel=private:eve&token="+token(t, "eve", 2*time.Second, grant), nil)
		expectStart(t, s, 0)
		ev := s.NextData()
		var d struct {
			Code      int  `json:"code"`
			Reconnect bool `json:"reconnect"`
		}
		if err := json.Unmarshal([]byte(ev.Data), &d); err != nil || ev.Type != "disconnect" || d.Code != 4005 || !d.Reconnect {
			t.Fatalf("want disconnect 4005 with reconnect, got %+v", ev)
		}
		s.ExpectEnd()
		// A new stream with a new token and the old id (lastEventId,
		// since a page opens a new EventSource) goes on where it stopped.
		ts.publish("private:eve", "while away")
		tok := token(t, "eve", time.Hour, grant)
		s2 := ssetest.Open(t, nil, base+"channel=private:eve&token="+tok+"&lastEventId="+s.LastEventID, nil)
		expectStart(t, s2, 0)
		expectPublication(t, s2, "private:eve", 1)
	})
}
