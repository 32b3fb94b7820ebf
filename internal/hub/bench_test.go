package hub_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/broker/memory"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// countingTransport discards what it is given and counts messages, so a
// benchmark can wait for every delivery.
type countingTransport struct {
	mu   sync.Mutex
	n    int
	cond *sync.Cond
}

func newCounting() *countingTransport {
	t := &countingTransport{}
	t.cond = sync.NewCond(&t.mu)
	return t
}

func (t *countingTransport) Name() string { return "bench" }
func (t *countingTransport) WriteMessages(msgs []hub.Message) error {
	t.mu.Lock()
	t.n += len(msgs)
	t.cond.Broadcast()
	t.mu.Unlock()
	return nil
}
func (t *countingTransport) Close(protocol.Disconnect) error { return nil }

func (t *countingTransport) wait(n int) {
	t.mu.Lock()
	for t.n < n {
		t.cond.Wait()
	}
	t.mu.Unlock()
}

// BenchmarkFanout publishes to one channel with N local subscribers and
// waits until every subscriber's writer has taken the publication: the
// engine's cost per publication (encode once, queue N times, N writers),
// without sockets. deliveries/s is N per publication.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			h := hub.New(hub.Config{Metrics: metrics.New(prometheus.NewRegistry()), HistorySize: 10}, memory.New(memory.Options{}), nil)
			if err := h.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { shutdown(b, h) })
			ts := make([]*countingTransport, n)
			for i := range ts {
				ts[i] = newCounting()
				s := h.NewSession(ts[i], hub.SessionInfo{RemoteAddr: fmt.Sprintf("10.0.%d.%d:1", i/250, i%250)})
				s.HandleMessage([]byte(`{"command":"subscribe","channel":"fan"}`))
			}
			data := []byte(`{"text":"0123456789012345678901234567890123456789012345678901234567890123456789"}`)
			b.ReportAllocs()
			b.ResetTimer()
			published := 0
			for b.Loop() {
				if _, err := h.Publish(context.Background(), "fan", data, "bench"); err != nil {
					b.Fatal(err)
				}
				published++
			}
			for _, t := range ts {
				t.wait(published)
			}
			b.ReportMetric(float64(published*n)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkQueueAndWriter measures one session's outbound path: queueing
// messages and the writer taking them in batches.
func BenchmarkQueueAndWriter(b *testing.B) {
	h := hub.New(hub.Config{Metrics: metrics.New(prometheus.NewRegistry()), HistorySize: 10, QueueMaxMessages: 1 << 20, QueueMaxBytes: 1 << 30}, memory.New(memory.Options{}), nil)
	if err := h.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { shutdown(b, h) })
	t := newCounting()
	s := h.NewSession(t, hub.SessionInfo{RemoteAddr: "10.0.0.1:1"})
	s.HandleMessage([]byte(`{"command":"subscribe","channel":"q"}`))
	data := []byte(`"0123456789012345678901234567890123456789"`)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		_, _ = h.Publish(context.Background(), "q", data, "bench")
		n++
	}
	t.wait(n)
}

// shutdown stops a benchmark's hub, so that no goroutine outlives it.
func shutdown(b *testing.B, h *hub.Hub) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		b.Error(err)
	}
}
