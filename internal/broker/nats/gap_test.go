package nats

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/testenv"
)

// chanSink records the offsets delivered per channel.
type chanSink struct {
	mu   sync.Mutex
	offs map[string][]uint64
}

func (s *chanSink) HandlePublication(channel string, pub broker.Publication, _ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offs[channel] = append(s.offs[channel], pub.Offset)
}

func (s *chanSink) HandleEvent(string, []byte) {}

func (s *chanSink) get(channel string) []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.offs[channel])
}

// waitFor waits until channel's deliveries include offset and returns them.
func (s *chanSink) waitFor(t *testing.T, channel string, offset uint64) []uint64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := s.get(channel)
		if slices.Contains(got, offset) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("channel %s: delivered %v, never offset %d", channel, got, offset)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStalledCatchUpDoesNotBlockOtherChannels stalls the history read that
// fills a gap in one channel and checks that another channel keeps being
// delivered meanwhile, and that the stalled channel then gets everything,
// in order, once: announcements are handed to a goroutine per channel,
// never read from history on the connection's dispatcher.
func TestStalledCatchUpDoesNotBlockOtherChannels(t *testing.T) {
	srv := testenv.StartNATS(t, testenv.NATSOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	b, err := New(ctx, Options{URL: srv.URL(), GapTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	entered := make(chan struct{}, 16)
	gate := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release) // runs before Close
	b.beforeCatchUp = func(channel string) {
		if channel == "stalled" {
			entered <- struct{}{}
			<-gate
		}
	}
	s := &chanSink{offs: map[string][]uint64{}}
	if err := b.Start(ctx, s); err != nil {
		t.Fatal(err)
	}
	publish := func(channel string, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if _, err := b.Publish(ctx, channel, []byte(`0`), broker.PublishOptions{HistorySize: 100}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, ch := range []string{"stalled", "free"} {
		if err := b.Subscribe(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	publish("stalled", 1)
	s.waitFor(t, "stalled", 1)
	storeSilently(t, b, "stalled") // 2: a gap
	publish("stalled", 1)          // 3 waits for it; the gap timer reads history
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("no catch-up of channel stalled started")
	}
	publish("stalled", 2) // 4 and 5 wait behind the gap

	publish("free", 20)
	want := make([]uint64, 20)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	if got := s.waitFor(t, "free", 20); !slices.Equal(got, want) {
		t.Fatalf("free channel: delivered %v", got)
	}
	if got := s.get("stalled"); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("stalled channel delivered %v while its gap was open, want [1]", got)
	}

	release()
	s.waitFor(t, "stalled", 5)
	publish("stalled", 1) // 6: anything repeated shows before it
	if got := s.waitFor(t, "stalled", 6); fmt.Sprint(got) != "[1 2 3 4 5 6]" {
		t.Fatalf("stalled channel: delivered %v, want [1 2 3 4 5 6]", got)
	}
}
