package sfu

import (
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// allocDown is a subscriber's downTrack of a three-layer track whose
// layers measured the given bitrates, all being received.
func allocDown(bitrates [3]int64) *downTrack {
	up := &upTrack{kind: webrtc.RTPCodecTypeVideo}
	for q, b := range bitrates {
		l := &layer{quality: q}
		l.bitrate.Store(b)
		l.lastSeen.Store(time.Now().Add(time.Hour).UnixNano()) // active for the whole test
		up.layers[q] = l
	}
	return newDownTrack(up, &Participant{sig: nopSignaler{}})
}

// TestAllocatePacing: the layer follows the budget down at once, and up
// only once the higher layer has fitted for upHold; a move up that fails
// within upFailed doubles the next wait; a layer whose bitrate reads less
// than the one below (a publisher that stalled it) costs as much as that
// one; an estimate limited by the traffic allows a paced try one layer
// beyond it; without an estimate only the preferences count.
func TestAllocatePacing(t *testing.T) {
	type step struct {
		at     time.Duration
		budget int
		want   int
		probe  bool // the estimate is limited by the traffic
	}
	for _, tc := range []struct {
		name     string
		bitrates [3]int64
		start    int // the layer forwarded before the first step
		steps    []step
	}{
		{"down at once, up after the hold", [3]int64{150_000, 500_000, 1_500_000}, 2, []step{
			{0, 2_000_000, 2, false},
			{500 * time.Millisecond, 300_000, 0, false},
			{time.Second, 700_000, 0, false}, // layer 1 fits (575 kbit/s): the wait starts
			{1500 * time.Millisecond, 700_000, 0, false},
			{2 * time.Second, 700_000, 1, false},
			{2500 * time.Millisecond, 5_000_000, 1, false},
			{3500 * time.Millisecond, 5_000_000, 2, false},
		}},
		{"a failed move up doubles the wait, a steady layer resets it", [3]int64{150_000, 500_000, 1_500_000}, 2, []step{
			{0, 300_000, 0, false},
			{time.Second, 700_000, 0, false},
			{2 * time.Second, 700_000, 1, false},
			{3 * time.Second, 300_000, 0, false}, // 1 s after moving up: failed
			{3500 * time.Millisecond, 700_000, 0, false},
			{4500 * time.Millisecond, 700_000, 0, false}, // 1 s is no longer enough
			{5500 * time.Millisecond, 700_000, 1, false}, // 2 s is
			{16 * time.Second, 700_000, 1, false},        // kept for 10 s: back to 1 s
			{17 * time.Second, 300_000, 0, false},        // a late fall is no failure
			{18 * time.Second, 700_000, 0, false},
			{19 * time.Second, 700_000, 1, false},
		}},
		{"a layer reading less than the one below costs as much as it", [3]int64{150_000, 500_000, 100_000}, 1, []step{
			{0, 560_000, 1, false},
			{5 * time.Second, 560_000, 1, false}, // 575 kbit/s for layer 2
			{6 * time.Second, 600_000, 1, false},
			{7 * time.Second, 600_000, 2, false},
		}},
		{"a budget under the lowest layer still gets the lowest", [3]int64{150_000, 500_000, 1_500_000}, 2, []step{
			{0, 50_000, 0, false},
		}},
		{"probing: a try one layer up beyond the budget, paced, and backed off when it fails", [3]int64{150_000, 360_000, 750_000}, 0, []step{
			{0, 200_000, 0, true},               // layer 1 costs 414 kbit/s: over twice the budget, no try
			{time.Second, 285_000, 0, false},    // within twice, but the estimate is not held by the traffic
			{2 * time.Second, 285_000, 0, true}, // a try: the wait starts
			{3 * time.Second, 285_000, 1, true},
			{4 * time.Second, 150_000, 0, false}, // it failed: the next wait is 2 s
			{5 * time.Second, 285_000, 0, true},
			{6 * time.Second, 285_000, 0, true},
			{7 * time.Second, 285_000, 1, true},
			{8 * time.Second, 400_000, 1, true},  // the estimate grew with the traffic; layer 2 (862 kbit/s) is over twice it
			{9 * time.Second, 500_000, 1, true},  // layer 2 (862 kbit/s) within twice: a try
			{10 * time.Second, 500_000, 1, true}, // the wait is still 2 s
			{11 * time.Second, 500_000, 2, true},
		}},
		{"a tried layer is kept for its grace while the estimate does not fall by 10 %", [3]int64{150_000, 360_000, 750_000}, 0, []step{
			{0, 285_000, 0, true},
			{time.Second, 285_000, 1, true},      // tried with 285 kbit/s
			{2 * time.Second, 300_000, 1, false}, // under the layer's 360, but not falling
			{3 * time.Second, 260_000, 1, false}, // a wobble: within 10 % of 285
			{4 * time.Second, 290_000, 1, false},
			{5500 * time.Millisecond, 290_000, 0, false}, // the grace is over
		}},
		{"a failed move up doubles the wait once, however many steps down", [3]int64{150_000, 500_000, 1_500_000}, 0, []step{
			{0, 5_000_000, 0, false},
			{time.Second, 5_000_000, 2, false},
			{2 * time.Second, 1_000_000, 1, false},
			{3 * time.Second, 300_000, 0, false},
			{4 * time.Second, 5_000_000, 0, false},
			{6 * time.Second, 5_000_000, 2, false}, // 2 s, not 4
		}},
		{"no estimate", [3]int64{150_000, 500_000, 1_500_000}, 0, []step{
			{0, -1, 2, false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := allocDown(tc.bitrates)
			d.target, d.current = tc.start, tc.start
			t0 := time.Now()
			for i, s := range tc.steps {
				d.allocateAt(s.budget, s.probe, t0.Add(s.at))
				d.mu.Lock()
				got := d.target
				d.current = d.target // as if the keyframe came at once
				d.mu.Unlock()
				if got != s.want {
					t.Fatalf("step %d (%s, budget %d): layer %d, want %d", i, s.at, s.budget, got, s.want)
				}
			}
		})
	}
}
