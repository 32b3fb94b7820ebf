package webhook_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker/memory"
)

// BenchmarkDeliver measures events delivered per second on the memory
// broker: each iteration is one subscription (channel.occupied and
// member.added) to a receiver on loopback that verifies signatures.
func BenchmarkDeliver(b *testing.B) {
	rc := newReceiver(b)
	d, _ := dispatcher(b, memory.New(memory.Options{}), "n1", rc, nil)
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		s := strconv.Itoa(i)
		if err := d.Joined(ctx, "ch-"+s, "c-"+s, "u-"+s); err != nil {
			b.Fatal(err)
		}
	}
	rc.wait(2 * b.N)
	b.StopTimer()
	b.ReportMetric(float64(2*b.N)/time.Since(start).Seconds(), "events/s")
}
