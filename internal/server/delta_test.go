package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/fossil"
)

// feedUpdate is a realistic publication: a JSON object of about 1 KB of
// which a few fields change from one update to the next.
func feedUpdate(i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"seq":%d,"symbol":"SWB","price":%d.%02d,"volume":%d,"note":"ünïcödé ✓","book":[`, i, 100+i%7, i%100, 1000+i*13)
	for l := range 14 {
		if l > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"level":%d,"bid":%d.5,"ask":%d.5,"size":%d}`, l, 99-l, 101+l, (l+1)*10+i%3)
	}
	b.WriteString(`]}`)
	return b.String()
}

// TestDeltaRecoveryAfterReconnect cuts a delta subscriber's connection 30
// times while a publisher publishes a feed through the API. After each
// reconnect it subscribes with delta and the last position it holds; it
// rebuilds every publication from the whole ones and the deltas, and
// across all connections must hold each publication exactly once, in
// order, byte for byte as published.
func TestDeltaRecoveryAfterReconnect(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.HistorySize = 100000 })
	var mu sync.Mutex
	published := map[uint64]string{}
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
			data := feedUpdate(i)
			body := fmt.Sprintf(`{"channel":"ticks","data":%s}`, data)
			req, _ := http.NewRequestWithContext(context.Background(), "POST", "http://"+ts.Addr()+"/api/publish", strings.NewReader(body))
			req.Header.Set("Authorization", "apikey "+testKey)
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			var r struct {
				Result struct {
					Offset uint64 `json:"offset"`
				} `json:"result"`
			}
			err = jsonDecode(resp, &r)
			resp.Body.Close()
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			published[r.Result.Offset] = data
			mu.Unlock()
			time.Sleep(300 * time.Microsecond)
		}
	}()

	type got struct {
		offset uint64
		data   string
	}
	var all []got
	var deltas int
	var epoch string
	var since map[string]any
	var start uint64
	// 30 cuts at least, and more on a slow machine until 50 publications
	// and a delta were seen (bounded).
	for round := 0; round < 30 || (len(all) < 50 || deltas == 0) && round < 300; round++ {
		c := ts.dial()
		cmd := map[string]any{"command": "subscribe", "channel": "ticks", "delta": "fossil"}
		if since != nil {
			cmd["since"] = since
		}
		res := c.MustCall(cmd)
		if res["delta"] != true || since != nil && res["recovered"] != true {
			t.Fatalf("round %d: subscribe answered %v", round, res)
		}
		if epoch == "" {
			epoch = res["epoch"].(string)
			start = uint64(res["offset"].(float64))
		}
		// The SDK's state: the data of the last publication on this
		// connection; a new connection starts with none.
		var prev []byte
		take := func(m map[string]any) {
			s, ok := m["data"].(string)
			if !ok {
				t.Fatalf("round %d: data is not a string: %v", round, m)
			}
			data := []byte(s)
			if m["delta"] == true {
				if prev == nil {
					t.Fatalf("round %d: a delta first: %v", round, m)
				}
				var err error
				if data, err = fossil.Apply(prev, data); err != nil {
					t.Fatalf("round %d: offset %v: %v", round, m["offset"], err)
				}
				deltas++
			}
			prev = data
			all = append(all, got{uint64(m["offset"].(float64)), string(data)})
		}
		for _, p := range anySlice(res["publications"]) {
			if p.(map[string]any)["delta"] != nil {
				t.Fatalf("round %d: a recovered publication came as a delta: %v", round, p)
			}
			take(p.(map[string]any))
		}
		deadline := time.Now().Add(time.Duration(2+round%4) * time.Millisecond)
		for time.Now().Before(deadline) {
			m, err := c.NextErr(3 * time.Millisecond)
			if err != nil {
				break
			}
			if m["channel"] == "ticks" {
				take(m)
			}
		}
		c.Conn.Close() // abruptly: no close frame
		last := start
		if len(all) > 0 {
			last = all[len(all)-1].offset
		}
		since = map[string]any{"offset": last, "epoch": epoch}
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for i, g := range all {
		if want := start + uint64(i) + 1; g.offset != want {
			t.Fatalf("publication %d has offset %d, want %d: lost or duplicated", i, g.offset, want)
		}
		if g.data != published[g.offset] {
			t.Fatalf("offset %d rebuilt as %q, published %q", g.offset, g.data, published[g.offset])
		}
	}
	if len(all) < 50 || deltas == 0 {
		t.Fatalf("only %d publications (%d deltas) seen", len(all), deltas)
	}
	t.Logf("%d publications rebuilt exactly across the connections, %d of them from deltas", len(all), deltas)
}

func jsonDecode(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }
