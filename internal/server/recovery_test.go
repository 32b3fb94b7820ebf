package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/config"
)

// TestWebSocketRecoveryUnderLoad cuts a subscriber's connection 100 times
// while a publisher publishes through the API at a steady rate. After each
// reconnect it subscribes with the last position it holds; across all
// connections it must hold every publication exactly once, in order.
func TestWebSocketRecoveryUnderLoad(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.HistorySize = 100000 })
	var published atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		client := &http.Client{}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := http.NewRequestWithContext(context.Background(), "POST", "http://"+ts.Addr()+"/api/publish",
				strings.NewReader(fmt.Sprintf(`{"channel":"feed","data":%d}`, i)))
			req.Header.Set("Authorization", "apikey "+testKey)
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			published.Add(1)
			time.Sleep(200 * time.Microsecond)
		}
	}()
	var got []float64
	var epoch string
	var since map[string]any
	for round := 0; round < 100; round++ {
		c := ts.dial()
		cmd := map[string]any{"command": "subscribe", "channel": "feed"}
		if since != nil {
			cmd["since"] = since
		}
		res := c.MustCall(cmd)
		if since != nil && res["recovered"] != true {
			t.Fatalf("round %d: not recovered: %v", round, res)
		}
		if epoch == "" {
			epoch = res["epoch"].(string)
			got = append(got, res["offset"].(float64)) // the starting point
		}
		for _, p := range anySlice(res["publications"]) {
			got = append(got, p.(map[string]any)["offset"].(float64))
		}
		// Read live publications for a moment, then cut the connection
		// abruptly (no close frame).
		deadline := time.Now().Add(time.Duration(1+round%4) * time.Millisecond)
		for time.Now().Before(deadline) {
			m, err := c.NextErr(2 * time.Millisecond)
			if err != nil {
				break
			}
			if m["channel"] == "feed" {
				got = append(got, m["offset"].(float64))
			}
		}
		c.Conn.Close()
		since = map[string]any{"offset": got[len(got)-1], "epoch": epoch}
	}
	close(stop)
	wg.Wait()
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("offset %v followed by %v: lost or duplicated", got[i-1], got[i])
		}
	}
	if published.Load() < 100 {
		t.Fatalf("publisher made only %d publications", published.Load())
	}
	t.Logf("%d publications seen in order across 100 connections (%d published)", len(got)-1, published.Load())
}

func anySlice(v any) []any {
	s, _ := v.([]any)
	return s
}

func TestRecoveryNotPossible(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.HistorySize = 3 })
	for i := 0; i < 6; i++ {
		ts.publish("r", i)
	}
	c := ts.dial()
	epoch := c.Subscribe("r")["epoch"].(string)
	for _, tc := range []struct {
		name  string
		since map[string]any
	}{
		{"older than history", map[string]any{"offset": 1, "epoch": epoch}},
		{"other epoch (history lost)", map[string]any{"offset": 5, "epoch": "GONE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := ts.dial()
			res := d.MustCall(map[string]any{"command": "subscribe", "channel": "r", "since": tc.since})
			if res["recovered"] != false || res["offset"].(float64) < 6 || res["epoch"] != epoch || len(anySlice(res["publications"])) != 0 {
				t.Fatalf("result %v", res)
			}
			// Live publications continue after the reported position.
			next := ts.publish("r", "next")
			if next != res["offset"].(float64)+1 {
				t.Fatalf("next offset %v after %v", next, res["offset"])
			}
			expectPub(t, d.Next(), "r", next)
			expectPub(t, c.Next(), "r", next)
		})
	}
}

// TestRecoveryAfterRestart: a new server (the in-memory broker loses its
// history) puts every channel in a new epoch, so a client coming back with
// its old position is told it did not recover.
func TestRecoveryAfterRestart(t *testing.T) {
	ts := start(t, nil)
	c := ts.dial()
	res := c.Subscribe("news")
	ts.publish("news", 1)
	m := c.Next()
	since := map[string]any{"offset": m["offset"], "epoch": res["epoch"]}
	if err := ts.Stop(); err != nil {
		t.Fatal(err)
	}
	ts2 := start(t, nil)
	d := ts2.dial()
	res2 := d.MustCall(map[string]any{"command": "subscribe", "channel": "news", "since": since})
	if res2["recovered"] != false || res2["epoch"] == res["epoch"] {
		t.Fatalf("after restart: %v", res2)
	}
}

func TestHistoryAndPresenceOverWebSocketAndAPI(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.JoinLeave = true; c.HistoryMaxLimit = 50 })
	a := ts.dial()
	a.Subscribe("room")
	if j := a.Next(); j["join"] == nil {
		t.Fatalf("own join: %v", j)
	}
	b := ts.dial()
	b.Subscribe("room")
	if j := a.Next(); j["join"] == nil || j["channel"] != "room" {
		t.Fatalf("join push: %v", j)
	}
	for i := 1; i <= 3; i++ {
		ts.publish("room", i)
	}
	h := a.MustCall(map[string]any{"command": "history", "channel": "room", "limit": 2, "reverse": true})
	if got := fmt.Sprint(h["publications"]); got != "[map[channel:room data:3 offset:3] map[channel:room data:2 offset:2]]" {
		t.Fatalf("history: %s", got)
	}
	status, m := ts.api("POST", "/api/history", testKey, `{"channel":"room","since":{"offset":2,"epoch":"`+h["epoch"].(string)+`"}}`)
	if status != 200 || fmt.Sprint(m["result"].(map[string]any)["publications"]) != "[map[channel:room data:3 offset:3]]" {
		t.Fatalf("API history: %d %v", status, m)
	}
	for _, tc := range []struct {
		body   string
		status int
		code   int
	}{
		{`{"channel":"room","limit":51}`, 400, 400},
		{`{"channel":"room","since":{"offset":1,"epoch":"X"}}`, 412, 412},
		{`{"channel":"bad name"}`, 400, 422},
		{`{"channel":"room","limit":"many"}`, 400, 400},
	} {
		if status, m := ts.api("POST", "/api/history", testKey, tc.body); status != tc.status || errorCode(m) != tc.code {
			t.Errorf("history %s: %d %v", tc.body, status, m)
		}
	}
	p := a.MustCall(map[string]any{"command": "presence", "channel": "room"})
	if p["num_clients"] != 2.0 || len(anySlice(p["clients"])) != 2 {
		t.Fatalf("presence: %v", p)
	}
	b.Conn.Close() // dropped without a close frame
	for {
		m := a.Next()
		if m["leave"] != nil {
			break
		}
	}
	status, m = ts.api("POST", "/api/presence_stats", testKey, `{"channel":"room"}`)
	if status != 200 || m["result"].(map[string]any)["num_clients"] != 1.0 {
		t.Fatalf("presence stats: %d %v", status, m)
	}
	status, m = ts.api("POST", "/api/presence", testKey, `{"channel":"room"}`)
	raw, _ := json.Marshal(m)
	if status != 200 || !strings.Contains(string(raw), `"transport":"websocket"`) {
		t.Fatalf("API presence: %d %s", status, raw)
	}
}
