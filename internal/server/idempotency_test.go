package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

// published is the result of a publish on any endpoint.
type published struct {
	Offset    float64
	Epoch     string
	Duplicate bool
}

func asPublished(t *testing.T, where string, res any) published {
	t.Helper()
	m, ok := res.(map[string]any)
	if !ok {
		t.Fatalf("%s: result %v", where, res)
	}
	p := published{}
	p.Offset, _ = m["offset"].(float64)
	p.Epoch, _ = m["epoch"].(string)
	if d, ok := m["duplicate"]; ok {
		if d != true {
			t.Fatalf(`%s: "duplicate" is %v; it is present only when true`, where, d)
		}
		p.Duplicate = true
	}
	if p.Offset == 0 || p.Epoch == "" {
		t.Fatalf("%s: result %v has no position", where, m)
	}
	return p
}

// apiPublish publishes through /api/publish of ts.
func apiPublish(t *testing.T, ts *testServer, channel, key string, data any) published {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"channel": channel, "data": data, "idempotency_key": key})
	status, m := ts.api("POST", "/api/publish", testKey, string(b))
	if status != 200 {
		t.Fatalf("/api/publish: %d %v", status, m)
	}
	return asPublished(t, "/api/publish", m["result"])
}

// wsPublish publishes with the publish command of c.
func wsPublish(t *testing.T, c *wstest.Client, channel, key string, data any) published {
	t.Helper()
	return asPublished(t, "publish command", c.MustCall(map[string]any{"command": "publish", "channel": channel, "data": data, "idempotency_key": key}))
}

// httpPublish publishes through POST /publish of ts, the key in the body
// or in the Idempotency-Key header.
func httpPublish(t *testing.T, ts *testServer, channel, key string, inHeader bool, data any) published {
	t.Helper()
	body := map[string]any{"channel": channel, "data": data}
	header := map[string]string{"Content-Type": "application/json"}
	if inHeader {
		header["Idempotency-Key"] = key
	} else {
		body["idempotency_key"] = key
	}
	b, _ := json.Marshal(body)
	a := ts.httpDo("POST", "/publish", header, string(b))
	if a.status != 200 {
		t.Fatalf("/publish: %d %v", a.status, a.body)
	}
	return asPublished(t, "/publish", a.body["result"])
}

// expectOnce reads sub's next publications on channel: want's data at
// their offsets, then a marker published now, so that a second delivery of
// any of them would show before the marker.
func expectOnce(t *testing.T, ts *testServer, sub *wstest.Client, channel string, want ...published) {
	t.Helper()
	for _, p := range want {
		expectPub(t, sub.Next(), channel, p.Offset)
	}
	marker := ts.publish(channel, "marker")
	expectPub(t, sub.Next(), channel, marker)
}

// TestIdempotentPublish: on every endpoint, a repeat of an idempotency key
// on a channel answers the original offset and epoch with
// "duplicate":true and publishes nothing; the same key on another channel
// publishes; an invalid key is refused with 400.
func TestIdempotentPublish(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.IdempotencyWindow = time.Hour })
	sub := ts.dial()
	sub.Subscribe("idem")
	pub := ts.dial()

	t.Run("server API", func(t *testing.T) {
		first := apiPublish(t, ts, "idem", "api-1", "a")
		again := apiPublish(t, ts, "idem", "api-1", "a, but sent again")
		if first.Duplicate || again != (published{first.Offset, first.Epoch, true}) {
			t.Fatalf("first %+v, repeat %+v", first, again)
		}
		expectOnce(t, ts, sub, "idem", first)
	})

	t.Run("publish command", func(t *testing.T) {
		first := wsPublish(t, pub, "idem", "ws-1", "w")
		again := wsPublish(t, pub, "idem", "ws-1", "w")
		if first.Duplicate || again != (published{first.Offset, first.Epoch, true}) {
			t.Fatalf("first %+v, repeat %+v", first, again)
		}
		// A repeat after reconnecting, as a client outbox sends it.
		other := ts.dial()
		if got := wsPublish(t, other, "idem", "ws-1", "w"); got != again {
			t.Fatalf("repeat on a new connection %+v, want %+v", got, again)
		}
		expectOnce(t, ts, sub, "idem", first)
	})

	t.Run("HTTP publish", func(t *testing.T) {
		first := httpPublish(t, ts, "idem", "http-1", false, "h")
		byHeader := httpPublish(t, ts, "idem", "http-1", true, "h")
		if first.Duplicate || byHeader != (published{first.Offset, first.Epoch, true}) {
			t.Fatalf("first %+v, repeat by header %+v", first, byHeader)
		}
		// The key space is one: the API's key repeated over HTTP.
		if got := httpPublish(t, ts, "idem", "api-1", true, "h"); !got.Duplicate {
			t.Fatalf("a key of the server API repeated on /publish: %+v", got)
		}
		expectOnce(t, ts, sub, "idem", first)
	})

	t.Run("browsers may send the header", func(t *testing.T) {
		a := ts.httpDo("OPTIONS", "/publish", map[string]string{"Origin": "http://" + ts.Addr(), "Access-Control-Request-Headers": "idempotency-key"}, "")
		if a.status != 204 || !strings.Contains(a.header.Get("Access-Control-Allow-Headers"), "Idempotency-Key") {
			t.Fatalf("preflight: %d, Access-Control-Allow-Headers %q", a.status, a.header.Get("Access-Control-Allow-Headers"))
		}
	})

	t.Run("batch and broadcast", func(t *testing.T) {
		status, m := ts.api("POST", "/api/batch", testKey, `{"commands":[
			{"method":"publish","params":{"channel":"idem","data":1,"idempotency_key":"batch-1"}},
			{"method":"publish","params":{"channel":"idem","data":1,"idempotency_key":"batch-1"}},
			{"method":"publish","params":{"channel":"idem-other","data":1,"idempotency_key":"batch-1"}},
			{"method":"publish","params":{"channel":"idem","data":1,"idempotency_key":""}}]}`)
		if status != 200 {
			t.Fatalf("batch: %d %v", status, m)
		}
		replies := m["result"].(map[string]any)["replies"].([]any)
		r := func(i int) any { return replies[i].(map[string]any)["result"] }
		first, again := asPublished(t, "batch 0", r(0)), asPublished(t, "batch 1", r(1))
		other := asPublished(t, "batch 2", r(2))
		if first.Duplicate || again != (published{first.Offset, first.Epoch, true}) || other.Duplicate || other.Offset != 1 {
			t.Fatalf("batch results %v", replies)
		}
		if code := errorCode(replies[3].(map[string]any)); code != 400 {
			t.Fatalf("empty key in a batch: %v", replies[3])
		}
		status, m = ts.api("POST", "/api/broadcast", testKey, `{"channels":["idem","idem-other"],"data":2,"idempotency_key":"batch-1"}`)
		results, _ := m["result"].(map[string]any)["results"].([]any)
		if status != 200 || len(results) != 2 {
			t.Fatalf("broadcast: %d %v", status, m)
		}
		for i, want := range []published{again, {other.Offset, other.Epoch, true}} {
			res := results[i].(map[string]any)
			if got := asPublished(t, "broadcast", res); got != want {
				t.Fatalf("broadcast to %v: %+v, want %+v", res["channel"], got, want)
			}
		}
		expectOnce(t, ts, sub, "idem", first)
	})

	t.Run("invalid keys", func(t *testing.T) {
		long := strings.Repeat("k", 65)
		api := map[string]string{
			"empty":     `{"channel":"idem","data":1,"idempotency_key":""}`,
			"too long":  `{"channel":"idem","data":1,"idempotency_key":"` + long + `"}`,
			"not ASCII": `{"channel":"idem","data":1,"idempotency_key":"caf\u00e9"}`,
			"a number":  `{"channel":"idem","data":1,"idempotency_key":5}`,
		}
		for name, body := range api {
			if status, m := ts.api("POST", "/api/publish", testKey, body); status != 400 || errorCode(m) != 400 {
				t.Errorf("/api/publish, key %s: %d %v", name, status, m)
			}
			frame := strings.Replace(body, `{"channel"`, `{"id":99,"command":"publish","channel"`, 1)
			pub.SendRaw(frame)
			if m := pub.Next(); errorCode(m) != 400 || m["id"] != float64(99) {
				t.Errorf("publish command, key %s: %v", name, m)
			}
			if a := ts.httpDo("POST", "/publish", nil, body); a.status != 400 || errorCode(a.body) != 400 {
				t.Errorf("/publish, key %s: %d %v", name, a.status, a.body)
			}
		}
		ct := "application/json"
		for name, h := range map[string]map[string]string{
			"header too long":          {"Content-Type": ct, "Idempotency-Key": long},
			"header and body disagree": {"Content-Type": ct, "Idempotency-Key": "one"},
		} {
			a := ts.httpDo("POST", "/publish", h, `{"channel":"idem","data":1,"idempotency_key":"two"}`)
			if a.status != 400 || errorCode(a.body) != 400 {
				t.Errorf("/publish, %s: %d %v", name, a.status, a.body)
			}
		}
		// Nothing above was published.
		expectOnce(t, ts, sub, "idem")
	})

	if n := ts.metric(`switchboard_publications_deduplicated_total{source="api"}`); n != 4 {
		t.Errorf("deduplicated API publishes: %v, want 4", n)
	}
	if n := ts.metric(`switchboard_publications_deduplicated_total{source="client"}`); n != 4 {
		t.Errorf("deduplicated client publishes: %v, want 4", n)
	}
}

// TestIdempotentPublishAcrossNodes: a publication with a key through node
// A, repeated through node B on every endpoint, is published once: the
// subscriber (on a third node) receives it once and every reply carries
// its offset and epoch.
func TestIdempotentPublishAcrossNodes(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			nodes := cluster(t, be.url(), 3, nil)
			a, b, c := nodes[0], nodes[1], nodes[2]
			sub := c.dial()
			sub.Subscribe("cross")
			pubB := b.dial()
			for i := range 3 {
				key := fmt.Sprint("outbox-", i)
				first := apiPublish(t, a, "cross", key, i)
				if first.Duplicate {
					t.Fatalf("first publish of %s is a duplicate: %+v", key, first)
				}
				want := published{first.Offset, first.Epoch, true}
				for where, got := range map[string]published{
					"API on B":             apiPublish(t, b, "cross", key, i),
					"publish command on B": wsPublish(t, pubB, "cross", key, i),
					"/publish on B":        httpPublish(t, b, "cross", key, true, i),
					"API on C":             apiPublish(t, c, "cross", key, i),
				} {
					if got != want {
						t.Fatalf("%s: %+v, want %+v", where, got, want)
					}
				}
				expectOnce(t, a, sub, "cross", first)
			}
			// Repeats racing on two nodes: one publication.
			const racers = 8
			results := make(chan published, racers)
			errs := make(chan error, racers)
			for i := range racers {
				node := []*testServer{a, b}[i%2]
				go func() {
					p, err := raceAPIPublish(node, "cross", "race", i)
					if err != nil {
						errs <- err
						return
					}
					results <- p
				}()
			}
			var stored []published
			var dups int
			for range racers {
				select {
				case err := <-errs:
					t.Fatal(err)
				case p := <-results:
					if p.Duplicate {
						dups++
						continue
					}
					stored = append(stored, p)
				}
			}
			if len(stored) != 1 || dups != racers-1 {
				t.Fatalf("racing repeats: %d stored (%v), %d duplicates", len(stored), stored, dups)
			}
			expectOnce(t, a, sub, "cross", stored[0])
		})
	}
}

// raceAPIPublish is apiPublish for another goroutine than the test's: it
// returns its failures.
func raceAPIPublish(ts *testServer, channel, key string, data any) (published, error) {
	b, _ := json.Marshal(map[string]any{"channel": channel, "data": data, "idempotency_key": key})
	req, err := http.NewRequest("POST", "http://"+ts.Addr()+"/api/publish", bytes.NewReader(b))
	if err != nil {
		return published{}, err
	}
	req.Header.Set("Authorization", "apikey "+testKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return published{}, err
	}
	defer resp.Body.Close()
	var m struct {
		Result struct {
			Offset    float64 `json:"offset"`
			Epoch     string  `json:"epoch"`
			Duplicate bool    `json:"duplicate"`
		} `json:"result"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 200 {
		return published{}, fmt.Errorf("/api/publish: %d %v", resp.StatusCode, err)
	}
	return published{m.Result.Offset, m.Result.Epoch, m.Result.Duplicate}, nil
}
