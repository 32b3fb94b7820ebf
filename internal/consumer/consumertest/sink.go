// Package consumertest is for the consumers' tests: a Sink publishes
// through the real in-memory broker, with its idempotency keys, and
// subscribes to every channel it is told of, recording each publication
// delivered, so that a test can check that every row or record was
// published exactly once and in order.
package consumertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/broker/memory"
)

// Sink is a subscriber on an in-memory broker. Create it with NewSink.
type Sink struct {
	b *memory.Broker

	mu  sync.Mutex
	got map[string][]broker.Publication // by channel, in delivery order
	n   int
	// changed is closed and replaced on each delivery.
	changed chan struct{}
}

// NewSink starts an in-memory broker subscribed to channels; it is closed
// when the test ends.
func NewSink(tb testing.TB, channels ...string) *Sink {
	tb.Helper()
	s := &Sink{b: memory.New(memory.Options{}), got: map[string][]broker.Publication{}, changed: make(chan struct{})}
	ctx := context.Background()
	if err := s.b.Start(ctx, s); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.b.Close(ctx) })
	for _, ch := range channels {
		if err := s.b.Subscribe(ctx, ch); err != nil {
			tb.Fatal(err)
		}
	}
	return s
}

// Publish is a consumer.PublishFunc onto the broker, with a 10-minute
// idempotency window.
func (s *Sink) Publish(ctx context.Context, channel string, data []byte, key string) (bool, error) {
	_, err := s.b.Publish(ctx, channel, data, broker.PublishOptions{HistorySize: 10, IdempotencyKey: key, IdempotencyWindow: 10 * time.Minute})
	if errors.Is(err, broker.ErrDuplicate) {
		return true, nil
	}
	return false, err
}

// HandlePublication implements broker.Handler.
func (s *Sink) HandlePublication(channel string, pub broker.Publication, _ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got[channel] = append(s.got[channel], pub)
	s.n++
	close(s.changed)
	s.changed = make(chan struct{})
}

// HandleEvent implements broker.Handler.
func (s *Sink) HandleEvent(string, []byte) {}

// Count returns how many publications were delivered.
func (s *Sink) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// WaitFor waits until at least n publications were delivered, failing the
// test when ctx ends first.
func (s *Sink) WaitFor(ctx context.Context, tb testing.TB, n int) {
	tb.Helper()
	for {
		s.mu.Lock()
		got, changed := s.n, s.changed
		s.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			tb.Fatalf("%d publications delivered, want %d: %v", got, n, ctx.Err())
		}
	}
}

// Check fails the test unless each channel's publications are exactly
// want's data, in that order, with offsets 1, 2, 3..., and no other
// channel got any.
func (s *Sink) Check(tb testing.TB, want map[string][]string) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch, pubs := range s.got {
		if _, ok := want[ch]; !ok {
			tb.Errorf("channel %q got %d publications, want none", ch, len(pubs))
		}
	}
	for ch, w := range want {
		pubs := s.got[ch]
		got := make([]string, len(pubs))
		for i, p := range pubs {
			got[i] = string(p.Data)
			if p.Offset != uint64(i+1) {
				tb.Errorf("channel %q: publication %d has offset %d", ch, i, p.Offset)
				break
			}
		}
		if !slices.Equal(got, w) {
			tb.Errorf("channel %q: %s", ch, diff(got, w))
		}
	}
}

// diff describes the first difference between got and want.
func diff(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("publication %d is %s, want %s (%d publications, want %d)", i, got[i], want[i], len(got), len(want))
		}
	}
	return fmt.Sprintf("%d publications, want %d", len(got), len(want))
}
