package webhook_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	natsbroker "github.com/switchboardhq/switchboard/internal/broker/nats"
	redisbroker "github.com/switchboardhq/switchboard/internal/broker/redis"
	"github.com/switchboardhq/switchboard/internal/testenv"
	"github.com/switchboardhq/switchboard/internal/webhook"
)

// stoppable is a real broker server the test stops and starts again, and
// the queue of a node on it.
type stoppable struct {
	name string
	open func(t *testing.T) (q webhook.Queue, stop, start func())
}

func stoppables() []stoppable {
	ctx := context.Background()
	return []stoppable{
		{"redis", func(t *testing.T) (webhook.Queue, func(), func()) {
			r := testenv.StartRedis(t, testenv.RedisOptions{AOF: true})
			b, err := redisbroker.New(ctx, redisbroker.Options{URL: r.URL()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close(ctx) })
			return b, r.Stop, func() { r.Restart(t) }
		}},
		{"nats", func(t *testing.T) (webhook.Queue, func(), func()) {
			n := testenv.StartNATS(t, testenv.NATSOptions{Persist: true})
			b, err := natsbroker.New(ctx, natsbroker.Options{URL: n.URL(), WebhookAckWait: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close(ctx) })
			return b, n.Stop, func() { n.Restart(t) }
		}},
	}
}

// TestHeldUntilTheBrokerIsBack: while the broker is down, a join and a
// connection are refused (an error, in bounded time), and a leave and a
// disconnection, which cannot be refused, are held; once the broker is
// back the held ones are written and their events arrive, and the undoing
// leave and disconnection of the refused ones change nothing.
func TestHeldUntilTheBrokerIsBack(t *testing.T) {
	for _, sb := range stoppables() {
		t.Run(sb.name, func(t *testing.T) {
			q, stop, start := sb.open(t)
			rc := newReceiver(t)
			d, m := dispatcher(t, q, "n1", rc, func(o *webhook.Options) {
				o.Partitions = 2
				o.LeaseTTL = 3 * time.Second
			})
			bounded := func() context.Context {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				t.Cleanup(cancel)
				return ctx
			}
			if err := d.ClientConnected(bounded(), "n1-1", "ann", "websocket"); err != nil {
				t.Fatal(err)
			}
			if err := d.Joined(bounded(), "ch", "n1-1", "ann"); err != nil {
				t.Fatal(err)
			}
			rc.wait(3)

			stop()
			d.Left(bounded(), "ch", "n1-1", "ann")
			d.ClientDisconnected(bounded(), "n1-1", "ann", "websocket")
			if err := d.ClientConnected(bounded(), "n1-2", "bob", "sse"); err == nil {
				t.Fatal("a connection was reported with the broker down")
			}
			d.ClientDisconnected(bounded(), "n1-2", "bob", "sse") // the engine's undo
			if err := d.Joined(bounded(), "ch", "n1-2", "bob"); err == nil {
				t.Fatal("a join was reported with the broker down")
			}
			d.Left(bounded(), "ch", "n1-2", "bob") // the engine's undo
			if n := gauge(m.WebhookHeld); n != 4 {
				t.Fatalf("%v reports held, want 4", n)
			}

			start()
			rc.wait(6)
			eventually(t, "the held reports to be written", func() bool { return gauge(m.WebhookHeld) == 0 })
			time.Sleep(200 * time.Millisecond) // nothing more comes
			got := summary(rc.got())
			equal(t, sortStrings(got[3:]), []string{
				"channel.vacated ch ann n1-1 ",
				"client.disconnected  ann n1-1 ",
				"member.removed ch ann n1-1 ",
			})
			if len(got) != 6 {
				t.Fatalf("events: %v", got)
			}
		})
	}
}

// gauge reads a gauge.
func gauge(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		panic(err)
	}
	return m.GetGauge().GetValue()
}
