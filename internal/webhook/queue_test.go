package webhook_test

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/broker/memory"
	natsbroker "github.com/switchboardhq/switchboard/internal/broker/nats"
	redisbroker "github.com/switchboardhq/switchboard/internal/broker/redis"
	"github.com/switchboardhq/switchboard/internal/testenv"
	"github.com/switchboardhq/switchboard/internal/webhook"
)

// queuePair gives two nodes' views of one queue.
type queuePair struct {
	name string
	open func(t *testing.T) (a, b webhook.Queue)
}

func queues() []queuePair {
	ctx := context.Background()
	return []queuePair{
		{"memory", func(t *testing.T) (webhook.Queue, webhook.Queue) {
			q := memory.New(memory.Options{})
			return q, q
		}},
		{"redis", func(t *testing.T) (webhook.Queue, webhook.Queue) {
			r := testenv.StartRedis(t, testenv.RedisOptions{})
			open := func() webhook.Queue {
				b, err := redisbroker.New(ctx, redisbroker.Options{URL: r.URL()})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = b.Close(ctx) })
				return b
			}
			return open(), open()
		}},
		{"nats", func(t *testing.T) (webhook.Queue, webhook.Queue) {
			n := testenv.StartNATS(t, testenv.NATSOptions{})
			open := func() webhook.Queue {
				b, err := natsbroker.New(ctx, natsbroker.Options{URL: n.URL(), WebhookAckWait: 300 * time.Millisecond})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = b.Close(ctx) })
				return b
			}
			return open(), open()
		}},
	}
}

// eventually polls f until it reports true.
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestQueues is the contract every broker's webhook queue keeps: one
// lease holder at a time; entries in append order; the entries a dead
// holder read and did not acknowledge come to the next holder first, in
// order; acknowledged entries are gone; state and liveness marks.
func TestQueues(t *testing.T) {
	for _, qp := range queues() {
		t.Run(qp.name, func(t *testing.T) {
			ctx := context.Background()
			a, b := qp.open(t)
			const ttl = 300 * time.Millisecond
			for i := 1; i <= 5; i++ {
				if err := a.Append(ctx, 1, []byte(strconv.Itoa(i))); err != nil {
					t.Fatal(err)
				}
			}
			if ok, err := a.Lease(ctx, 1, "a", ttl); !ok || err != nil {
				t.Fatalf("lease a: %v %v", ok, err)
			}
			if ok, err := b.Lease(ctx, 1, "b", ttl); ok || err != nil {
				t.Fatalf("lease b while a holds it: %v %v", ok, err)
			}
			if ok, err := b.Lease(ctx, 2, "b", ttl); !ok || err != nil {
				t.Fatalf("lease b of another partition: %v %v", ok, err)
			}
			first, err := a.Read(ctx, 1, "a", 3)
			if err != nil || datas(first) != "1 2 3" {
				t.Fatalf("a read %q, %v", datas(first), err)
			}
			// a dies holding 1-3: b takes the lease once it expires.
			eventually(t, "b to take the lease", func() bool {
				ok, err := b.Lease(ctx, 1, "b", ttl)
				return ok && err == nil
			})
			var got []broker.QueueEntry
			eventually(t, "b to read all five", func() bool {
				es, err := b.Read(ctx, 1, "b", 10)
				if err != nil {
					t.Fatal(err)
				}
				if len(es) > 0 {
					got = append(got, es...)
					ids := make([]string, len(es))
					for i, e := range es {
						ids[i] = e.ID
					}
					if err := b.Ack(ctx, 1, ids); err != nil {
						t.Fatal(err)
					}
				}
				return len(got) >= 5
			})
			if datas(got) != "1 2 3 4 5" {
				t.Fatalf("b read %q, want 1 2 3 4 5 in order", datas(got))
			}
			if es, err := b.Read(ctx, 1, "b", 10); len(es) != 0 || err != nil {
				t.Fatalf("after ack: %q, %v", datas(es), err)
			}

			// State.
			if err := b.SaveState(ctx, 1, map[string][]byte{"x": []byte("1"), "ns:a b/é": []byte("2")}, nil); err != nil {
				t.Fatal(err)
			}
			if err := b.SaveState(ctx, 1, map[string][]byte{"y": []byte("3")}, []string{"x", "never"}); err != nil {
				t.Fatal(err)
			}
			st, err := a.LoadState(ctx, 1)
			if err != nil || len(st) != 2 || !bytes.Equal(st["ns:a b/é"], []byte("2")) || !bytes.Equal(st["y"], []byte("3")) {
				t.Fatalf("state %q, %v", st, err)
			}
			if st, err := a.LoadState(ctx, 3); err != nil || len(st) != 0 {
				t.Fatalf("state of another partition %q, %v", st, err)
			}

			// Liveness.
			if had, err := a.Beat(ctx, "n1", ttl); had || err != nil {
				t.Fatalf("first beat: had %v, %v", had, err)
			}
			if had, err := b.Beat(ctx, "n1", ttl); !had || err != nil {
				t.Fatalf("second beat: had %v, %v", had, err)
			}
			alive, err := b.Alive(ctx, []string{"n1", "n2"})
			if err != nil || !alive["n1"] || alive["n2"] {
				t.Fatalf("alive %v, %v", alive, err)
			}
			eventually(t, "n1's mark to expire", func() bool {
				alive, err := b.Alive(ctx, []string{"n1"})
				return err == nil && !alive["n1"]
			})
			if had, err := a.Beat(ctx, "n1", ttl); had || err != nil {
				t.Fatalf("beat after expiry: had %v, %v", had, err)
			}
		})
	}
}

func datas(es []broker.QueueEntry) string {
	var b bytes.Buffer
	for i, e := range es {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s", e.Data)
	}
	return b.String()
}
