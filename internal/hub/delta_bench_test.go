package hub_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/broker/memory"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// byteCounter is a transport that discards messages and counts them and
// their bytes.
type byteCounter struct {
	mu    sync.Mutex
	n     int
	bytes int
	cond  *sync.Cond
}

func newByteCounter() *byteCounter {
	t := &byteCounter{}
	t.cond = sync.NewCond(&t.mu)
	return t
}

func (t *byteCounter) Name() string { return "bench" }
func (t *byteCounter) WriteMessages(msgs []hub.Message) error {
	t.mu.Lock()
	for _, m := range msgs {
		t.n++
		t.bytes += len(m.Data)
	}
	t.cond.Broadcast()
	t.mu.Unlock()
	return nil
}
func (t *byteCounter) Close(protocol.Disconnect) error { return nil }

func (t *byteCounter) wait(n int) (bytes int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.n < n {
		t.cond.Wait()
	}
	return t.bytes
}

// feedUpdate is publication i of a realistic feed: a JSON object of about
// 1 KB of which a few fields change from one update to the next.
func feedUpdate(i int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"symbol":"SWB","name":"Switchboard Holdings","exchange":"XNAS","currency":"USD","price":%d.%02d,"change":%d.%02d,"volume":%d,"updated_at":"2026-12-04T12:%02d:%02dZ","status":"open","book":[`,
		100+i%10, i%100, i%5, i%100, 1000000+i*37, i/60%60, i%60)
	for l := range 16 {
		if l > 0 {
			b.WriteByte(',')
		}
		size := (l + 1) * 100
		if l == i%16 {
			size += i
		}
		fmt.Fprintf(&b, `{"level":%d,"bid":%d.25,"ask":%d.75,"size":%d}`, l, 99-l, 101+l, size)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// BenchmarkDeltaFeed publishes a feed of ~1 KB updates to 1,000
// subscribers of one channel, plain and with "delta":"fossil": the
// engine's CPU per delivery (the delta made once per publication, shared
// by all) and the bytes each subscriber is sent. Each publication waits
// until every subscriber's writer took the one before, so that both
// variants write once per delivery (a faster publisher would otherwise
// let the writers batch more, which is another measure). cpu-ns/delivery
// is the process's CPU time (user and system), which a busy machine
// disturbs less than the elapsed time.
func BenchmarkDeltaFeed(b *testing.B) {
	const n = 1000
	for _, delta := range []bool{false, true} {
		b.Run(fmt.Sprintf("delta=%v", delta), func(b *testing.B) {
			h := hub.New(hub.Config{Metrics: metrics.New(prometheus.NewRegistry()), HistorySize: 10}, memory.New(memory.Options{}), nil)
			if err := h.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { shutdown(b, h) })
			sub := `{"command":"subscribe","channel":"feed"}`
			if delta {
				sub = `{"command":"subscribe","channel":"feed","delta":"fossil"}`
			}
			ts := make([]*byteCounter, n)
			for i := range ts {
				ts[i] = newByteCounter()
				s := h.NewSession(ts[i], hub.SessionInfo{RemoteAddr: fmt.Sprintf("10.0.%d.%d:1", i/250, i%250)})
				s.HandleMessage([]byte(sub))
			}
			const variants = 64
			feed := make([][]byte, variants)
			for i := range feed {
				feed[i] = feedUpdate(i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			published := 0
			for b.Loop() {
				if _, err := h.Publish(context.Background(), "feed", feed[published%variants], "bench"); err != nil {
					b.Fatal(err)
				}
				published++
				for _, t := range ts {
					t.wait(published)
				}
			}
			cpu = cpuTime() - cpu
			bytes := 0
			for _, t := range ts {
				bytes += t.wait(published)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(published*n), "ns/delivery")
			if cpu > 0 {
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(published*n), "cpu-ns/delivery")
			}
			b.ReportMetric(float64(bytes)/float64(published*n), "B/delivery")
			b.ReportMetric(float64(len(feed[0])), "B/publication")
		})
	}
}
