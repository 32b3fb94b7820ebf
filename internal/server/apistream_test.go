package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/switchboardhq/switchboard/internal/wstest"
)

// apiStream is a backend's end of GET /api/stream.
type apiStream struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialAPIStream(t *testing.T, addr, key string) (*apiStream, error) {
	t.Helper()
	d := ws.Dialer{Timeout: 5 * time.Second, Header: ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"apikey " + key}})}
	nc, br, _, err := d.Dial(context.Background(), "ws://"+addr+"/api/stream")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { nc.Close() })
	if br == nil {
		br = bufio.NewReader(nc)
	}
	return &apiStream{t: t, nc: nc, br: br}, nil
}

// send writes calls, all in one write, without waiting for answers.
func (s *apiStream) send(calls ...string) {
	s.t.Helper()
	var buf []byte
	for _, c := range calls {
		f := ws.NewTextFrame([]byte(c))
		f = ws.MaskFrameInPlace(f)
		buf = append(buf, ws.MustCompileFrame(f)...)
	}
	if _, err := s.nc.Write(buf); err != nil {
		s.t.Fatal(err)
	}
}

// next reads the next answer, or the close frame's code (0 for an answer).
func (s *apiStream) next() (map[string]any, ws.StatusCode) {
	s.t.Helper()
	_ = s.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		h, err := ws.ReadHeader(s.br)
		if err != nil {
			s.t.Fatalf("read: %v", err)
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(s.br, payload); err != nil {
			s.t.Fatalf("read: %v", err)
		}
		switch h.OpCode {
		case ws.OpClose:
			code, _ := ws.ParseCloseFrameData(payload)
			return nil, code
		case ws.OpText:
			var m map[string]any
			if err := json.Unmarshal(payload, &m); err != nil {
				s.t.Fatalf("answer %q: %v", payload, err)
			}
			return m, 0
		}
	}
}

func TestAPIStreamPublishesInOrderPerChannel(t *testing.T) {
	ts := start(t, nil)
	subs := map[string]*wstest.Client{}
	for _, ch := range []string{"s.a", "s.b", "s.c"} {
		subs[ch] = ts.dial()
		subs[ch].Subscribe(ch)
	}
	st, err := dialAPIStream(t, ts.Addr(), testKey)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300 // per channel, sent without waiting, interleaved
	var calls []string
	for i := range n {
		for _, ch := range []string{"s.a", "s.b", "s.c"} {
			calls = append(calls, fmt.Sprintf(`{"id":"%s-%d","method":"publish","params":{"channel":%q,"data":%d}}`, ch, i, ch, i))
		}
	}
	calls = append(calls, `{"id":7,"method":"info"}`)
	st.send(calls...)
	offsets := map[string]float64{}
	for range len(calls) {
		m, code := st.next()
		if code != 0 {
			t.Fatalf("closed with %d", code)
		}
		if m["error"] != nil {
			t.Fatalf("answer %v", m)
		}
		id := fmt.Sprint(m["id"])
		if id == "7" {
			continue
		}
		ch := id[:strings.LastIndexByte(id, '-')]
		off := m["result"].(map[string]any)["offset"].(float64)
		if off <= offsets[ch] {
			t.Fatalf("%s: offset %v after %v: answers of one channel out of order", id, off, offsets[ch])
		}
		offsets[ch] = off
	}
	for ch, sub := range subs {
		for i := range n {
			if m := sub.Next(); m["data"] != float64(i) {
				t.Fatalf("%s: publication %d carries %v", ch, i, m["data"])
			}
		}
	}
}

func TestAPIStreamBadInput(t *testing.T) {
	ts := start(t, nil)
	if _, err := dialAPIStream(t, ts.Addr(), "wrong-key"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("wrong key: %v, want a 403 refusal", err)
	}
	st, err := dialAPIStream(t, ts.Addr(), testKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		call     string
		wantCode float64
		wantID   any
	}{
		{`not json`, 400, nil},
		{`{"id":1,"method":"nope"}`, 404, 1.0},
		{`{"id":2,"method":"publish","params":{"channel":"","data":1}}`, 422, 2.0},
		{`{"id":3,"method":"publish","params":[1]}`, 400, 3.0},
	} {
		st.send(tc.call)
		m, code := st.next()
		if code != 0 {
			t.Fatalf("%s: closed with %d", tc.call, code)
		}
		e, _ := m["error"].(map[string]any)
		if e == nil || e["code"] != tc.wantCode || m["id"] != tc.wantID {
			t.Fatalf("%s: answer %v, want error %v for id %v", tc.call, m, tc.wantCode, tc.wantID)
		}
	}
	// The stream still works after bad calls.
	st.send(`{"id":9,"method":"publish","params":{"channel":"ok","data":1}}`)
	if m, _ := st.next(); m["result"] == nil {
		t.Fatalf("publish after bad calls: %v", m)
	}
	// A binary frame closes the stream with 1003; an oversized one with 1009.
	bin := ws.MaskFrameInPlace(ws.NewBinaryFrame([]byte{1, 2, 3}))
	if err := ws.WriteFrame(st.nc, bin); err != nil {
		t.Fatal(err)
	}
	if _, code := st.next(); code != ws.StatusUnsupportedData {
		t.Fatalf("binary frame: close %d, want 1003", code)
	}
	big, err := dialAPIStream(t, ts.Addr(), testKey)
	if err != nil {
		t.Fatal(err)
	}
	big.send(`{"id":1,"method":"publish","params":{"channel":"x","data":"` + strings.Repeat("a", 2<<20) + `"}}`)
	if _, code := big.next(); code != ws.StatusMessageTooBig {
		t.Fatalf("oversized frame: close %d, want 1009", code)
	}
}

func TestAPIStreamNotificationsAreAnsweredOnlyWhenTheyFail(t *testing.T) {
	ts := start(t, nil)
	sub := ts.dial()
	sub.Subscribe("n")
	st, err := dialAPIStream(t, ts.Addr(), testKey)
	if err != nil {
		t.Fatal(err)
	}
	st.send(`{"method":"publish","params":{"channel":"n","data":1}}`,
		`{"method":"publish","params":{"channel":"","data":2}}`,
		`{"id":"last","method":"publish","params":{"channel":"n","data":3}}`)
	// Two answers, in the order their calls finish (the calls are on
	// different channels): the failed notification's and the last call's.
	var failed, last bool
	for range 2 {
		m, _ := st.next()
		e, _ := m["error"].(map[string]any)
		switch {
		case e != nil && e["code"] == 422.0 && m["id"] == nil:
			failed = true
		case m["id"] == "last" && m["result"] != nil:
			last = true
		default:
			t.Fatalf("answer %v", m)
		}
	}
	if !failed || !last {
		t.Fatalf("answers: failed notification %v, last call %v", failed, last)
	}
	st.send(`{"id":"end","method":"info"}`) // nothing else was answered before it
	if m, _ := st.next(); m["id"] != "end" {
		t.Fatalf("answer %v, want the one to \"end\"", m)
	}
	if a, b := sub.Next(), sub.Next(); a["data"] != 1.0 || b["data"] != 3.0 {
		t.Fatalf("delivered %v then %v", a["data"], b["data"])
	}
}

func TestAPIStreamClosedAtShutdown(t *testing.T) {
	ts := start(t, nil)
	st, err := dialAPIStream(t, ts.Addr(), testKey)
	if err != nil {
		t.Fatal(err)
	}
	st.send(`{"id":1,"method":"info"}`)
	if m, _ := st.next(); m["result"] == nil {
		t.Fatalf("info: %v", m)
	}
	go ts.Stop()
	if _, code := st.next(); code != ws.StatusGoingAway {
		t.Fatalf("at shutdown: close %d, want 1001", code)
	}
}
