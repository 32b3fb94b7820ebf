package server_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/testenv"
)

// TestNATSSettings: the nats_* keys and the history keys reach the
// stream and the presence bucket the node creates.
func TestNATSSettings(t *testing.T) {
	srv := testenv.StartNATS(t, testenv.NATSOptions{})
	start(t, func(c *config.Config) {
		c.Broker = srv.URL()
		c.NATSStorage = "memory"
		c.NATSPrefix = "sbtest"
		c.NATSHistoryMaxAge = 3 * time.Hour
		c.HistorySize = 70
		c.PresenceTTL = 2 * time.Hour
		c.IdempotencyWindow = 10 * time.Minute
		c.Namespaces = []auth.Namespace{{Name: "ns", Subscribe: auth.SubscribeAnyone, IdempotencyWindow: 20 * time.Minute}}
	})
	nc, err := gonats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name, err := js.StreamNameBySubject(ctx, "sbtest.hist.>")
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := s.CachedInfo().Config; cfg.Storage != jetstream.MemoryStorage || cfg.MaxAge != 3*time.Hour ||
		cfg.MaxMsgsPerSubject < 70 || cfg.MaxMsgsPerSubject > 100 || cfg.Replicas != 1 || cfg.Duplicates != 20*time.Minute {
		t.Fatalf("history stream %s: storage %v, max age %s, %d per channel, %d replicas, duplicate window %s",
			name, cfg.Storage, cfg.MaxAge, cfg.MaxMsgsPerSubject, cfg.Replicas, cfg.Duplicates)
	}
	kv, err := js.KeyValue(ctx, "sbtest_presence")
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info := st.(*jetstream.KeyValueBucketStatus).StreamInfo()
	if info.Config.Storage != jetstream.MemoryStorage || st.TTL() < 2*time.Hour {
		t.Fatalf("presence bucket: storage %v, ttl %s", info.Config.Storage, st.TTL())
	}
}

// TestSubscribeWhileNATSDown: with NATS stopped, a client's subscribe is
// answered promptly with 503 (retry), and the client subscribes once NATS
// is back; a subscription made before the outage keeps receiving.
func TestSubscribeWhileNATSDown(t *testing.T) {
	srv := testenv.StartNATS(t, testenv.NATSOptions{Persist: true})
	ts := start(t, func(c *config.Config) { c.Broker = srv.URL() })
	c := ts.dial()
	c.Subscribe("before")
	srv.Stop()
	eventuallyOK(t, "the node to notice NATS is gone", func() bool {
		resp, err := http.Get("http://" + ts.Addr() + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	begin := time.Now()
	r := c.Call(map[string]any{"command": "subscribe", "channel": "during"})
	if code := errorCode(r); code != 503 {
		t.Fatalf("subscribe while NATS is down: %v, want error 503", r)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("the 503 took %s", d)
	}
	srv.Restart(t)
	eventuallyOK(t, "subscribe after NATS returns", func() bool {
		r := c.Call(map[string]any{"command": "subscribe", "channel": "during"})
		if errorCode(r) == 503 {
			return false
		}
		if r["error"] != nil {
			t.Fatalf("subscribe after NATS returns: %v", r)
		}
		return true
	})
	for _, ch := range []string{"during", "before"} {
		var off float64
		eventuallyOK(t, "publish to "+ch, func() bool {
			status, m := ts.api("POST", "/api/publish", testKey, `{"channel":"`+ch+`","data":1}`)
			if status != 200 {
				return false
			}
			off = m["result"].(map[string]any)["offset"].(float64)
			return true
		})
		expectPub(t, c.Next(), ch, off)
	}
}
