package redis_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/broker/redis"
	"github.com/switchboardhq/switchboard/internal/testenv"
)

// counter is a broker.Handler that only counts deliveries.
type counter struct{ n atomic.Int64 }

func (c *counter) HandlePublication(string, broker.Publication, string) { c.n.Add(1) }
func (c *counter) HandleEvent(string, []byte)                           {}

// BenchmarkPublish measures the publish round trip (script, stream append,
// PUBLISH) against a local redis-server, next to a bare PING round trip,
// with another node subscribed to
// the channel so that every publication is also delivered. "serial" is one
// publisher waiting for each reply; "parallel" is 16×GOMAXPROCS publishers
// whose commands the client pipelines on shared connections.
func BenchmarkPublish(b *testing.B) {
	r := testenv.StartRedis(b, testenv.RedisOptions{})
	ctx := context.Background()
	pub := newBroker(b, r.URL(), redis.Options{})
	sub := newBroker(b, r.URL(), redis.Options{})
	cnt := &counter{}
	if err := sub.Start(ctx, cnt); err != nil {
		b.Fatal(err)
	}
	// A bare PING round trip on the same machine, to read the figures
	// below against: the machines are shared and their load varies.
	raw := rawClient(b, r.URL())
	b.Run("ping-baseline", func(b *testing.B) {
		for b.Loop() {
			if err := raw.Do(ctx, raw.B().Ping().Build()).Error(); err != nil {
				b.Fatal(err)
			}
		}
	})
	opts := broker.PublishOptions{HistorySize: 100, HistoryTTL: time.Minute}
	for _, size := range []int{16, 1024} {
		data := []byte(`"` + string(bytes.Repeat([]byte("x"), size-2)) + `"`)
		for _, mode := range []string{"serial", "parallel"} {
			ch := fmt.Sprintf("bench-%s-%d", mode, size)
			if err := sub.Subscribe(ctx, ch); err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("%s/%dB", mode, size), func(b *testing.B) {
				b.SetBytes(int64(size))
				b.ReportAllocs()
				if mode == "serial" {
					for b.Loop() {
						if _, err := pub.Publish(ctx, ch, data, opts); err != nil {
							b.Fatal(err)
						}
					}
					return
				}
				b.SetParallelism(16)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := pub.Publish(ctx, ch, data, opts); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
	// Idempotency keys: a new key each time (the check and the extra SET in
	// the script), and the same key again (a duplicate: one GET).
	data := []byte(`"` + string(bytes.Repeat([]byte("x"), 14)) + `"`)
	keyed := opts
	keyed.IdempotencyWindow = time.Minute
	b.Run("serial-new-key/16B", func(b *testing.B) {
		b.ReportAllocs()
		run, i := time.Now().UnixNano(), 0 // keys new to every run, -count included
		for b.Loop() {
			i++
			keyed.IdempotencyKey = fmt.Sprint(run, "-", i)
			if _, err := pub.Publish(ctx, "bench-keyed", data, keyed); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("serial-repeated-key/16B", func(b *testing.B) {
		b.ReportAllocs()
		keyed.IdempotencyKey = "again"
		for b.Loop() {
			if _, err := pub.Publish(ctx, "bench-keyed", data, keyed); err != nil && !errors.Is(err, broker.ErrDuplicate) {
				b.Fatal(err)
			}
		}
	})
	b.Logf("%d publications delivered to the subscribed node", cnt.n.Load())
}

// BenchmarkAddPresence measures renewing presence entries (what every node
// does for each of its present subscriptions three times per presence_ttl)
// one after another and with 64 in flight, as the hub's refresh does: the
// client pipelines concurrent calls, so one round trip carries many.
func BenchmarkAddPresence(b *testing.B) {
	r := testenv.StartRedis(b, testenv.RedisOptions{})
	ctx := context.Background()
	br := newBroker(b, r.URL(), redis.Options{})
	for _, inFlight := range []int{1, 64} {
		b.Run(fmt.Sprintf("in-flight=%d", inFlight), func(b *testing.B) {
			var next atomic.Int64
			work := func() error {
				i := next.Add(1)
				info := broker.ClientInfo{Client: fmt.Sprintf("c%d", i%10000), User: "u"}
				return br.AddPresence(ctx, fmt.Sprintf("room-%d", i%1000), info, time.Minute)
			}
			if inFlight == 1 {
				for b.Loop() {
					if err := work(); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			b.SetParallelism(inFlight) // × GOMAXPROCS goroutines
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := work(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
