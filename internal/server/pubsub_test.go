package server_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

func TestPublishFromClientAndAPI(t *testing.T) {
	ts := start(t, nil)
	sub := ts.dial()
	pub := ts.dial()
	res := sub.Subscribe("news")
	if res["channel"] != "news" || res["offset"] != 0.0 || res["epoch"] == "" {
		t.Fatalf("subscribe result: %v", res)
	}
	r := pub.MustCall(map[string]any{"command": "publish", "channel": "news", "data": map[string]any{"text": "hi"}})
	if r["offset"] != 1.0 {
		t.Fatalf("publish result: %v", r)
	}
	m := sub.Next()
	expectPub(t, m, "news", 1)
	if d := m["data"].(map[string]any); d["text"] != "hi" {
		t.Fatalf("data: %v", m)
	}
	if off := ts.publish("news", []int{1, 2}); off != 2 {
		t.Fatalf("API offset %v", off)
	}
	expectPub(t, sub.Next(), "news", 2)
	// The publisher is not subscribed, so it gets nothing.
	pub.Silent(100 * time.Millisecond)
}

func TestPublisherSubscribedReceivesOwnPublication(t *testing.T) {
	ts := start(t, nil)
	c := ts.dial()
	c.Subscribe("room")
	// A publish without id gets no reply, only the push.
	c.Send(map[string]any{"command": "publish", "channel": "room", "data": "x"})
	expectPub(t, c.Next(), "room", 1)
}

func TestThousandSubscribersInOrder(t *testing.T) {
	const clients, pubs = 1000, 20
	ts := start(t, nil)
	subs := make([]*wstest.Client, clients)
	for i := range subs {
		subs[i] = ts.dial()
		subs[i].Send(map[string]any{"command": "subscribe", "channel": "big", "id": 1})
	}
	for _, s := range subs {
		if r := s.Next(); r["id"] != 1.0 || r["error"] != nil {
			t.Fatalf("subscribe reply: %v", r)
		}
	}
	for i := 1; i <= pubs; i++ {
		ts.publish("big", i)
	}
	var wg sync.WaitGroup
	errs := make(chan string, clients)
	for _, s := range subs {
		wg.Add(1)
		go func(s *wstest.Client) {
			defer wg.Done()
			for i := 1; i <= pubs; i++ {
				m, err := s.NextErr(wstest.DefaultTimeout)
				if err != nil {
					errs <- err.Error()
					return
				}
				if m["offset"] != float64(i) || m["data"] != float64(i) {
					errs <- fmt.Sprintf("want %d, got %v", i, m)
					return
				}
			}
		}(s)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

func TestUnsubscribeStopsDelivery(t *testing.T) {
	ts := start(t, nil)
	c := ts.dial()
	c.Subscribe("a")
	c.Subscribe("b")
	ts.publish("a", 1)
	expectPub(t, c.Next(), "a", 1)
	c.MustCall(map[string]any{"command": "unsubscribe", "channel": "a"})
	ts.publish("a", 2)
	ts.publish("b", 3)
	expectPub(t, c.Next(), "b", 1) // b's publication arrives, a's does not
	c.Silent(100 * time.Millisecond)
	if r := c.Call(map[string]any{"command": "unsubscribe", "channel": "a"}); errorCode(r) != 410 {
		t.Fatalf("second unsubscribe: %v", r)
	}
}

func TestOffsetsPerChannel(t *testing.T) {
	ts := start(t, nil)
	c := ts.dial()
	c.Subscribe("x")
	c.Subscribe("y")
	for i := 0; i < 3; i++ {
		ts.publish("x", i)
	}
	ts.publish("y", 0)
	for i := 1; i <= 3; i++ {
		expectPub(t, c.Next(), "x", float64(i))
	}
	expectPub(t, c.Next(), "y", 1)
	// A later subscriber learns the current offset.
	d := ts.dial()
	if r := d.Subscribe("x"); r["offset"] != 3.0 {
		t.Fatalf("offset for a late subscriber: %v", r)
	}
}

func TestPingAndConnect(t *testing.T) {
	ts := start(t, nil)
	c := ts.dial()
	c.MustCall(map[string]any{"command": "ping"})
	c.Send(map[string]any{"command": "ping"})
	if m := c.Next(); m["pong"] == nil {
		t.Fatalf("ping without id: %v", m)
	}
	r := c.MustCall(map[string]any{"command": "connect"})
	if !strings.HasPrefix(r["client"].(string), ts.Hub().NodeID()+"-") || r["version"] != "test" {
		t.Fatalf("connect: %v", r)
	}
}

func TestSlowConsumerIsDisconnected(t *testing.T) {
	ts := start(t, func(c *config.Config) {
		c.QueueMaxBytes = 256 << 10
		c.WriteTimeout = 30 * time.Second
	})
	good := ts.dial()
	good.Subscribe("flood")

	// The slow client subscribes with a raw connection and then stops reading.
	conn, _, _, err := ws.Dial(t.Context(), ts.wsURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := wsutil.WriteClientText(conn, []byte(`{"command":"subscribe","channel":"flood","id":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := wsutil.ReadServerText(conn); err != nil {
		t.Fatal(err)
	}
	// Publish until the kernel buffers and then the queue overflow; the good
	// client keeps reading everything meanwhile.
	payload := strings.Repeat("x", 1000)
	var received atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := good.NextErr(5 * time.Second)
			if err != nil {
				return
			}
			if m["channel"] == "flood" {
				received.Add(1)
			}
		}
	}()
	overflowed := func() bool { return ts.metric("switchboard_queue_overflows_total") == 1 }
	const batch = 200
	published := 0
	for !overflowed() {
		if published > 20000 {
			t.Fatal("slow consumer never disconnected")
		}
		for i := 0; i < batch; i++ {
			ts.publish("flood", payload)
		}
		published += batch
	}
	// The slow client, reading now, gets what was written and then close 4001.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	code := 0
	for {
		_, err := wsutil.ReadServerText(conn)
		if err == nil {
			continue
		}
		if ce, ok := err.(wsutil.ClosedError); ok {
			code = int(ce.Code)
		}
		break
	}
	if code != 4001 {
		t.Errorf("slow consumer close code = %d, want 4001", code)
	}
	// The good client got every publication.
	ts.publish("flood", "last")
	deadline := time.Now().Add(10 * time.Second)
	for received.Load() < int64(published+1) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	good.Conn.Close()
	<-done
	if received.Load() != int64(published+1) {
		t.Fatalf("good client received %d of %d", received.Load(), published+1)
	}
}

func TestGracefulShutdownSendsReconnectCode(t *testing.T) {
	ts := start(t, nil)
	clients := []*wstest.Client{ts.dial(), ts.dial(), ts.dial()}
	for _, c := range clients {
		c.Subscribe("s")
	}
	ts.publish("s", "before")
	for _, c := range clients {
		expectPub(t, c.Next(), "s", 1)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- ts.Stop() }()
	for _, c := range clients {
		if code := c.ExpectClose(); code != 4000 {
			t.Fatalf("close code %d, want 4000", code)
		}
	}
	if err := <-stopped; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	// The listener is gone.
	if conn, err := net.DialTimeout("tcp", ts.Addr(), time.Second); err == nil {
		conn.Close()
		t.Fatal("server still accepts connections after shutdown")
	}
}

func TestAPIDisconnect(t *testing.T) {
	ts := start(t, nil)
	for _, tc := range []struct {
		reconnect bool
		code      int
	}{{false, 4500}, {true, 4003}} {
		c := ts.dial()
		id := c.MustCall(map[string]any{"command": "connect"})["client"].(string)
		body := fmt.Sprintf(`{"client":%q,"reconnect":%v}`, id, tc.reconnect)
		if status, m := ts.api("POST", "/api/disconnect", testKey, body); status != 200 {
			t.Fatalf("disconnect: %d %v", status, m)
		}
		if code := c.ExpectClose(); code != tc.code {
			t.Fatalf("reconnect=%v: close code %d, want %d", tc.reconnect, code, tc.code)
		}
	}
	if status, m := ts.api("POST", "/api/disconnect", testKey, `{"client":"nobody"}`); status != 404 || errorCode(m) != 404 {
		t.Fatalf("unknown client: %d %v", status, m)
	}
}

func TestAPIChannelsBroadcastInfo(t *testing.T) {
	ts := start(t, nil)
	a, b := ts.dial(), ts.dial()
	a.Subscribe("one")
	b.Subscribe("one")
	b.Subscribe("two")
	status, m := ts.api("GET", "/api/channels", testKey, "")
	if status != 200 {
		t.Fatal(status, m)
	}
	got := fmt.Sprint(m["result"].(map[string]any)["channels"])
	if got != "[map[channel:one subscribers:2] map[channel:two subscribers:1]]" {
		t.Fatalf("channels: %s", got)
	}
	status, m = ts.api("POST", "/api/broadcast", testKey, `{"channels":["one","two"],"data":{"n":1}}`)
	if status != 200 {
		t.Fatal(status, m)
	}
	expectPub(t, a.Next(), "one", 1)
	expectPub(t, b.Next(), "one", 1)
	expectPub(t, b.Next(), "two", 1)
	_, m = ts.api("GET", "/api/info", testKey, "")
	info := m["result"].(map[string]any)
	if info["connections"] != 2.0 || info["subscriptions"] != 3.0 || info["channels"] != 2.0 || info["version"] != "test" {
		t.Fatalf("info: %v", info)
	}
}

func TestPprofBehindKey(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.Pprof = true })
	if status, _ := ts.api("GET", "/debug/pprof/", "", ""); status != 401 {
		t.Fatalf("pprof without key: %d", status)
	}
	req, _ := http.NewRequest("GET", "http://"+ts.Addr()+"/debug/pprof/goroutine?debug=1", nil)
	req.Header.Set("Authorization", "apikey "+testKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("pprof with key: %d", resp.StatusCode)
	}
	off := start(t, nil)
	resp, err = http.Get("http://" + off.Addr() + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == 200 {
		t.Fatal("pprof served while off")
	}
}

func TestAPIBatch(t *testing.T) {
	ts := start(t, nil)
	a, b := ts.dial(), ts.dial()
	a.Subscribe("one")
	b.Subscribe("two")
	for _, parallel := range []bool{false, true} {
		t.Run(fmt.Sprint("parallel=", parallel), func(t *testing.T) {
			// 50 publications alternating between two channels, an invalid
			// channel, an unknown method and a read: every command gets its
			// own reply, in order, and the failures stop nothing.
			var cmds []string
			for i := range 50 {
				cmds = append(cmds, fmt.Sprintf(`{"method":"publish","params":{"channel":%q,"data":{"i":%d}}}`, []string{"one", "two"}[i%2], i))
			}
			cmds = append(cmds,
				`{"method":"publish","params":{"channel":"a b","data":1}}`,
				`{"method":"explode"}`,
				`{"method":"presence_stats","params":{"channel":"one"}}`)
			body := fmt.Sprintf(`{"parallel":%v,"commands":[%s]}`, parallel, strings.Join(cmds, ","))
			status, m := ts.api("POST", "/api/batch", testKey, body)
			if status != 200 {
				t.Fatal(status, m)
			}
			replies := m["result"].(map[string]any)["replies"].([]any)
			if len(replies) != 53 {
				t.Fatalf("%d replies", len(replies))
			}
			base := map[string]float64{}
			for i := range 50 {
				r := replies[i].(map[string]any)
				ch := []string{"one", "two"}[i%2]
				off := r["result"].(map[string]any)["offset"].(float64)
				if i < 2 {
					base[ch] = off - 1
				}
				if off != base[ch]+float64(i/2)+1 {
					t.Fatalf("reply %d: %v, want offset %v", i, r, base[ch]+float64(i/2)+1)
				}
			}
			if c := errorCode(replies[50].(map[string]any)); c != 422 {
				t.Fatalf("invalid channel reply: %v", replies[50])
			}
			if c := errorCode(replies[51].(map[string]any)); c != 404 {
				t.Fatalf("unknown method reply: %v", replies[51])
			}
			if n := replies[52].(map[string]any)["result"].(map[string]any)["num_clients"]; n != 1.0 {
				t.Fatalf("presence_stats reply: %v", replies[52])
			}
			for i := range 25 {
				for j, c := range []*wstest.Client{a, b} {
					ch := []string{"one", "two"}[j]
					m := c.Next()
					expectPub(t, m, ch, base[ch]+float64(i)+1)
					if d := m["data"].(map[string]any)["i"]; d != float64(2*i+j) {
						t.Fatalf("%s: publication %d carries %v", ch, i, d)
					}
				}
			}
		})
	}
}

// TestPausedReaderGetsEveryFrameIntact makes the server's non-blocking
// writes come up short: a subscriber stops reading while far more than the
// socket buffers hold is published, then reads it all. Every frame must
// arrive whole and in order, across the writes that the socket cut.
func TestPausedReaderGetsEveryFrameIntact(t *testing.T) {
	ts := start(t, func(c *config.Config) {
		c.QueueMaxBytes = 64 << 20
		c.QueueMaxMessages = 100000
		// The reader is paused while everything is published, which takes
		// over 30 s on a loaded machine with the race detector: the write
		// that waits for it must not time out first.
		c.WriteTimeout = 5 * time.Minute
	})
	conn, _, _, err := ws.Dial(t.Context(), ts.wsURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := wsutil.WriteClientText(conn, []byte(`{"command":"subscribe","channel":"big","id":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := wsutil.ReadServerText(conn); err != nil {
		t.Fatal(err)
	}
	const n, per = 3000, 50 // 3000 publications of ~10 KB: ~30 MB
	pad := strings.Repeat("y", 10000)
	for i := 0; i < n; i += per {
		var cmds []string
		for j := i; j < i+per; j++ {
			cmds = append(cmds, fmt.Sprintf(`{"method":"publish","params":{"channel":"big","data":{"i":%d,"pad":%q}}}`, j, pad))
		}
		status, m := ts.api("POST", "/api/batch", testKey, `{"commands":[`+strings.Join(cmds, ",")+`]}`)
		if status != 200 || strings.Contains(fmt.Sprint(m), "error") {
			t.Fatalf("batch at %d: %d %v", i, status, m)
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Minute))
	for i := range n {
		b, err := wsutil.ReadServerText(conn)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		var m struct {
			Channel string
			Offset  int
			Data    struct {
				I   int
				Pad string
			}
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("frame %d is not JSON (%d bytes): %v", i, len(b), err)
		}
		if m.Channel != "big" || m.Offset != i+1 || m.Data.I != i || m.Data.Pad != pad {
			t.Fatalf("frame %d: channel %q offset %d i %d pad %d bytes", i, m.Channel, m.Offset, m.Data.I, len(m.Data.Pad))
		}
	}
}
