package brokertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/switchboardhq/switchboard/internal/broker"
)

// PublishOnceRacing publishes to channel through every node at once, keys
// different idempotency keys each repeated repeats times per node, with
// opts (whose key it sets), and checks that each key was stored once, that
// every repeat answered the same position, and that the keys took offsets
// 1 to keys. It returns the channel's epoch. For tests of brokers that
// several nodes share.
func PublishOnceRacing(t *testing.T, ctx context.Context, channel string, nodes []broker.Broker, keys, repeats int, opts broker.PublishOptions) string {
	t.Helper()
	var mu sync.Mutex
	byKey := map[string]map[broker.Position]bool{}
	stored := 0
	var wg sync.WaitGroup
	for k := range keys {
		key := fmt.Sprint("key-", k)
		mu.Lock() // goroutines of earlier keys are reading byKey
		byKey[key] = map[broker.Position]bool{}
		mu.Unlock()
		for r := range repeats {
			for _, n := range nodes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					o := opts
					o.IdempotencyKey = key
					pos, err := n.Publish(ctx, channel, []byte(fmt.Sprint(r)), o)
					if err != nil && !errors.Is(err, broker.ErrDuplicate) {
						t.Error(err)
						return
					}
					mu.Lock()
					defer mu.Unlock()
					byKey[key][pos] = true
					if err == nil {
						stored++
					}
				}()
			}
		}
	}
	wg.Wait()
	if stored != keys {
		t.Fatalf("%d publications stored for %d keys", stored, keys)
	}
	var offs []uint64
	var epoch string
	for key, seen := range byKey {
		if len(seen) != 1 {
			t.Fatalf("key %s answered positions %v", key, seen)
		}
		for p := range seen {
			offs, epoch = append(offs, p.Offset), p.Epoch
		}
	}
	slices.Sort(offs)
	for i, o := range offs {
		if o != uint64(i+1) {
			t.Fatalf("offsets of the keys %v, want 1 to %d", offs, keys)
		}
	}
	return epoch
}
