package sse

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/broker/memory"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/origin"
	"github.com/switchboardhq/switchboard/internal/protocol"
	"github.com/switchboardhq/switchboard/internal/ssetest"
)

// newTestHandler returns a started hub and an SSE handler served on a
// loopback test server.
func newTestHandler(t *testing.T, opts Options) (*hub.Hub, *Handler, *httptest.Server) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := hub.New(hub.Config{HistorySize: 100, Metrics: metrics.New(prometheus.NewRegistry()), Logger: log}, memory.New(memory.Options{}), nil)
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	opts.Logger = log
	sh := NewHandler(h, opts)
	srv := httptest.NewServer(sh)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
		srv.Close()
		sh.Close()
	})
	return h, sh, srv
}

func TestDrainingDropsRequests(t *testing.T) {
	h, sh, srv := newTestHandler(t, Options{})
	open := ssetest.Open(t, srv.Client(), srv.URL+"?channel=news", nil)
	if ev := open.Next(); ev.Retry < 0 {
		t.Fatalf("first block %+v", ev)
	}
	if ev := open.NextData(); ev.Type != "connected" {
		t.Fatalf("want connected, got %+v", ev)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	open.ExpectEnd() // the open stream ended (4000: no disconnect event)

	// A request during the drain gets no answer at all: no 5xx, which would
	// stop a browser's EventSource for good.
	s, resp, err := ssetest.OpenErr(t, srv.Client(), srv.URL+"?channel=news", nil)
	if err == nil {
		if resp != nil {
			resp.Body.Close()
		}
		t.Fatalf("draining: want the connection dropped, got stream %v, status %d", s != nil, resp.StatusCode)
	}
	if n := sh.hb.len(); n != 0 {
		t.Fatalf("%d streams left in the heartbeat", n)
	}
}

func TestStreamEndsWhenClientLeaves(t *testing.T) {
	h, sh, srv := newTestHandler(t, Options{})
	s := ssetest.Open(t, srv.Client(), srv.URL+"?channel=news&channel=sport", nil)
	s.Next()
	s.NextData()
	deadline := time.Now().Add(5 * time.Second)
	for sh.hb.len() != 1 { // added just after the connected event
		if time.Now().After(deadline) {
			t.Fatalf("heartbeat holds %d streams, want 1", sh.hb.len())
		}
		time.Sleep(time.Millisecond)
	}
	s.Close()
	for h.Info().Connections != 0 || sh.hb.len() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after the client left: %d sessions, %d streams in the heartbeat", h.Info().Connections, sh.hb.len())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWriteMessages(t *testing.T) {
	_, sh, _ := newTestHandler(t, Options{})
	rec := httptest.NewRecorder()
	st := newStream(sh, rec, []string{"a", "b"})
	reset := st.firstHook("b")(hub.SubscribeResult{Position: broker.Position{Offset: 2, Epoch: "E3"}})
	msgs := []hub.Message{
		{Data: []byte(`{"channel":"a","data":1,"offset":6}`), Channel: "a", Offset: 6},
		{Data: heartbeatFrame, Control: true},
		reset[0],
		{Data: []byte("{\"channel\":\"b\",\"data\":{\n\"x\":1},\"offset\":3}"), Channel: "b", Offset: 3},
		{Data: []byte(`{"channel":"a","leave":{"client":"n-1"}}`), Channel: "a"},
	}
	// Handed over before the stream begins: kept, then written after the
	// preamble with ids that cover the start.
	if err := st.WriteMessages(msgs[:2]); err != nil {
		t.Fatal(err)
	}
	if rec.Body.Len() != 0 {
		t.Fatalf("written before begin: %q", rec.Body)
	}
	if err := st.begin([]byte("retry: 1\n\n"), []broker.Position{{Offset: 5, Epoch: "E1"}, {Offset: 9, Epoch: "E2"}}); err != nil {
		t.Fatal(err)
	}
	if err := st.WriteMessages(msgs[2:]); err != nil {
		t.Fatal(err)
	}
	id := func(check uint32, offs ...uint64) string { return protocol.EncodeCursor(check, offs) }
	before := protocol.CursorCheck([]string{"a", "b"}, []string{"E1", "E2"})
	after := protocol.CursorCheck([]string{"a", "b"}, []string{"E1", "E3"})
	want := "retry: 1\n\n" + "id: " + id(before, 6, 9) + "\ndata: {\"channel\":\"a\",\"data\":1,\"offset\":6}\n\n" +
		": ping\n\n" +
		"event: unrecovered\nid: " + id(after, 6, 2) + "\ndata: {\"channel\":\"b\",\"offset\":2,\"epoch\":\"E3\"}\n\n" +
		"id: " + id(after, 6, 3) + "\ndata: {\"channel\":\"b\",\"data\":{\ndata: \"x\":1},\"offset\":3}\n\n" +
		"event: leave\ndata: {\"channel\":\"a\",\"leave\":{\"client\":\"n-1\"}}\n\n"
	if got := rec.Body.String(); got != want {
		t.Fatalf("stream:\n%s\nwant:\n%s", got, want)
	}
	if h := rec.Header(); h.Get("Content-Type") != "text/event-stream" || h.Get("Cache-Control") != "no-cache" {
		t.Fatalf("headers %v", h)
	}

	// A disconnect without reconnect is announced; the stream then refuses
	// writes.
	rec.Body.Reset()
	if err := st.Close(protocol.DisconnectForce); err != nil {
		t.Fatal(err)
	}
	if got := rec.Body.String(); got != "event: disconnect\ndata: {\"code\":4500,\"reason\":\"disconnected by server\",\"reconnect\":false}\n\n" {
		t.Fatalf("close wrote %q", got)
	}
	if err := st.WriteMessages(msgs[:1]); err != hub.ErrTransportClosed {
		t.Fatalf("write after close: %v", err)
	}
}

// TestEventIDLength checks the bound browsers rely on: 16 channels at
// offsets up to 2^35-1 (34 billion publications each) give an id within 128
// URL-safe bytes. (Larger offsets take longer varints and can exceed it.)
func TestEventIDLength(t *testing.T) {
	_, sh, _ := newTestHandler(t, Options{})
	chans := make([]string, protocol.MaxCursorChannels)
	start := make([]broker.Position, len(chans))
	for i := range chans {
		chans[i] = strings.Repeat("c", 200) + string(rune('a'+i))
		start[i] = broker.Position{Offset: 1<<35 - 1, Epoch: "EPOCH"}
	}
	b := sh.preamble("client", chans, start, false)
	var id string
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "id: "); ok {
			id = v
		}
	}
	if id == "" || len(id) > maxEventIDLength || strings.Trim(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		t.Fatalf("id %q (%d bytes)", id, len(id))
	}
	if _, perr := parseRequest("channel="+strings.Join(chans, "&channel="), id, "", protocol.MaxCursorChannels); perr != nil {
		t.Fatalf("the id does not parse back: %v", perr)
	}
}

func TestPreambleRejected(t *testing.T) {
	_, sh, _ := newTestHandler(t, Options{Retry: 2 * time.Second})
	b := string(sh.preamble("n-1", []string{"a"}, []broker.Position{{Offset: 4, Epoch: "E"}}, true))
	blocks := strings.Split(strings.TrimSuffix(b, "\n\n"), "\n\n")
	if len(blocks) != 3 || !strings.HasPrefix(blocks[0], "retry: ") ||
		blocks[1] != `event: unrecovered`+"\n"+`data: {"channel":"a","offset":4,"epoch":"E"}` ||
		!strings.HasPrefix(blocks[2], "event: connected\nid: ") {
		t.Fatalf("preamble:\n%s", b)
	}
	if retry, err := strconv.Atoi(strings.TrimPrefix(blocks[0], "retry: ")); err != nil || retry < 2000 || retry >= 4000 {
		t.Fatalf("retry %q: want a value in [2000, 4000)", blocks[0])
	}
}

func TestCloseAnnounces(t *testing.T) {
	_, sh, _ := newTestHandler(t, Options{})
	tests := []struct {
		d    protocol.Disconnect
		want string // "" when the stream just ends
	}{
		{protocol.DisconnectNormal, ""},
		{protocol.DisconnectShutdown, ""},
		{protocol.DisconnectSlowConsumer, ""},
		{protocol.DisconnectForceReconnect, ""},
		{protocol.DisconnectWriteTimeout, ""},
		{protocol.DisconnectTokenExpired, `{"code":4005,"reason":"token expired","reconnect":true}`},
		{protocol.DisconnectForce, `{"code":4500,"reason":"disconnected by server","reconnect":false}`},
		{protocol.DisconnectUnauthorized, `{"code":4502,"reason":"unauthorized","reconnect":false}`},
	}
	for _, tc := range tests {
		t.Run(strconv.Itoa(int(tc.d.Code)), func(t *testing.T) {
			rec := httptest.NewRecorder()
			st := newStream(sh, rec, []string{"a"})
			if err := st.begin(nil, []broker.Position{{Epoch: "E"}}); err != nil {
				t.Fatal(err)
			}
			if err := st.Close(tc.d); err != nil {
				t.Fatal(err)
			}
			want := ""
			if tc.want != "" {
				want = "event: disconnect\ndata: " + tc.want + "\n\n"
			}
			if got := rec.Body.String(); got != want {
				t.Fatalf("close wrote %q, want %q", got, want)
			}
		})
	}
	// A stream closed before it began writes nothing, and cannot begin.
	rec := httptest.NewRecorder()
	st := newStream(sh, rec, []string{"a"})
	_ = st.Close(protocol.DisconnectForce)
	if err := st.begin([]byte("x"), []broker.Position{{}}); err != errClosed || rec.Body.Len() != 0 || rec.Code != 200 || len(rec.Header()) != 0 {
		t.Fatalf("begin after close: %v, wrote %q", err, rec.Body)
	}
}

func TestEarlyOverflow(t *testing.T) {
	_, sh, _ := newTestHandler(t, Options{})
	st := newStream(sh, httptest.NewRecorder(), []string{"a"})
	big := hub.Message{Data: make([]byte, maxEarlyBytes/4), Channel: "a", Offset: 1}
	var err error
	for i := 0; i < 8 && err == nil; i++ {
		err = st.WriteMessages([]hub.Message{big})
	}
	if err != errEarlyOverflow {
		t.Fatalf("want errEarlyOverflow, got %v", err)
	}
}

func TestEventKind(t *testing.T) {
	tests := map[string]struct{ data, channel, want string }{
		"join":       {`{"channel":"a","join":{}}`, "a", "join"},
		"leave":      {`{"channel":"chat:1","leave":{"client":"x"}}`, "chat:1", "leave"},
		"other kind": {`{"channel":"a","some_kind":{}}`, "a", "some_kind"},
		"odd kind":   {`{"channel":"a","Bad Kind":{}}`, "a", "event"},
		"short":      {`{}`, "a", "event"},
		"empty kind": {`{"channel":"a","":1}`, "a", "event"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := eventKind([]byte(tc.data), tc.channel); got != tc.want {
				t.Fatalf("eventKind = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMethodAndPreflight(t *testing.T) {
	_, _, srv := newTestHandler(t, Options{Guard: origin.New(origin.Config{Origins: []string{"http://app.example"}})})
	req, _ := http.NewRequest(http.MethodOptions, srv.URL+"?channel=a", nil)
	req.Header.Set("Origin", "http://app.example")
	req.Header.Set("Access-Control-Request-Method", "GET")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "http://app.example" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	resp, err = srv.Client().Post(srv.URL+"?channel=a", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, OPTIONS" {
		t.Fatalf("POST: %d %v", resp.StatusCode, resp.Header)
	}
}

// TestSince starts the channels of a stream at positions given with
// "since": a position in the current epoch gets what followed it, one of
// another epoch an unrecovered event, and a channel without one starts
// from now.
func TestSince(t *testing.T) {
	h, _, srv := newTestHandler(t, Options{})
	ctx := context.Background()
	var top broker.Position
	for i := 1; i <= 3; i++ {
		for _, ch := range []string{"a", "b", "c"} {
			p, err := h.Publish(ctx, ch, []byte(strconv.Itoa(i)), "")
			if err != nil {
				t.Fatal(err)
			}
			top = p
		}
	}
	pa, _ := h.Position(ctx, "a")
	pb, _ := h.Position(ctx, "b")
	url := srv.URL + "?channel=a&channel=b&channel=c&since=1:" + pa.Epoch + "&since=1:other&since="
	s := ssetest.Open(t, srv.Client(), url, nil)
	defer s.Close()
	s.Next() // retry
	var got []string
	for len(got) < 4 {
		ev := s.NextData()
		got = append(got, ev.Type+" "+ev.Data)
	}
	want := []string{
		`connected {"client":"` + strings.Split(got[0], `"`)[3] + `","channels":[{"channel":"a","offset":1,"epoch":"` + pa.Epoch + `"},{"channel":"b","offset":1,"epoch":"other"},{"channel":"c","offset":3,"epoch":"` + top.Epoch + `"}]}`,
	}
	if got[0] != want[0] {
		t.Fatalf("connected:\n%s\nwant\n%s", got[0], want[0])
	}
	// Then channel a's offsets 2 and 3 and b's unrecovered event, with the
	// channels' events in order (a and b may interleave).
	rest := strings.Join(got[1:], "\n")
	for _, w := range []string{
		` {"channel":"a","data":2,"offset":2}`,
		` {"channel":"a","data":3,"offset":3}`,
		`unrecovered {"channel":"b","offset":3,"epoch":"` + pb.Epoch + `"}`,
	} {
		if !strings.Contains(rest, w) {
			t.Fatalf("events after connected:\n%s\nmissing %s", rest, w)
		}
	}
	if strings.Index(rest, `"offset":2}`) > strings.Index(rest, `"data":3`) {
		t.Fatalf("out of order:\n%s", rest)
	}
	// What is published next comes live.
	if _, err := h.Publish(ctx, "c", []byte("4"), ""); err != nil {
		t.Fatal(err)
	}
	if ev := s.NextData(); ev.Data != `{"channel":"c","data":4,"offset":4}` || !ev.HasID {
		t.Fatalf("live: %+v", ev)
	}
}

func TestSinceRefused(t *testing.T) {
	_, _, srv := newTestHandler(t, Options{})
	resp, err := srv.Client().Get(srv.URL + "?channel=a&since=x:E")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"code":400`) || !strings.Contains(string(body), "since") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}
