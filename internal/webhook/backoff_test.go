package webhook

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/broker/memory"
	"github.com/switchboardhq/switchboard/internal/metrics"
)

// TestBackoff: the pause doubles from BackoffMin, is capped at
// BackoffMax, and keeps at least half of its nominal value (jitter takes a
// random part of the other half).
func TestBackoff(t *testing.T) {
	d, err := New(Options{Endpoint: "http://127.0.0.1:1/", Queue: memory.New(memory.Options{}), NodeID: "n",
		Metrics: metrics.New(prometheus.NewRegistry()), BackoffMin: 100 * time.Millisecond, BackoffMax: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		attempt int
		nominal time.Duration
	}{
		{0, 100 * time.Millisecond}, {1, 200 * time.Millisecond}, {2, 400 * time.Millisecond},
		{4, 1600 * time.Millisecond}, {5, 3 * time.Second}, {6, 3 * time.Second}, {1000, 3 * time.Second},
	}
	for _, tc := range cases {
		for range 200 {
			got := d.backoff(tc.attempt)
			if got < tc.nominal/2 || got > tc.nominal {
				t.Fatalf("attempt %d: pause %s, want %s to %s", tc.attempt, got, tc.nominal/2, tc.nominal)
			}
		}
	}
}
