package hub

import (
	"testing"
	"time"
)

func TestHoldFor(t *testing.T) {
	const ms = int64(time.Millisecond)
	d := 30 * time.Millisecond
	for _, tc := range []struct {
		name                string
		d                   time.Duration
		lastWrite, gap, now int64
		want                time.Duration
	}{
		{"delay off", 0, 100 * ms, 5 * ms, 110 * ms, 0},
		{"never written", d, 0, 0, 110 * ms, 0},
		{"stream: waits out the rest", d, 100 * ms, 5 * ms, 110 * ms, 20 * time.Millisecond},
		{"stream after a held write (gap d)", d, 100 * ms, 31 * ms, 110 * ms, 20 * time.Millisecond},
		{"first gap unknown counts as a stream", d, 100 * ms, 0, 101 * ms, 29 * time.Millisecond},
		{"occasional: previous gap over 2d", d, 100 * ms, 61 * ms, 110 * ms, 0},
		{"occasional: one message a second", d, 100 * ms, 1000 * ms, 101 * ms, 0},
		{"delay already over", d, 100 * ms, 5 * ms, 140 * ms, 0},
	} {
		if got := holdFor(tc.d, tc.lastWrite, tc.gap, tc.now); got != tc.want {
			t.Errorf("%s: holdFor = %v, want %v", tc.name, got, tc.want)
		}
	}
}
