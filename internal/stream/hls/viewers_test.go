package hls

import (
	"testing"
	"time"
)

// TestViewersWindow: a client counts while it fetched a playlist within the
// window, once however often it did.
func TestViewersWindow(t *testing.T) {
	v := viewers{window: 10 * time.Second}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at   time.Duration
		id   string // "" counts without a request
		want int
	}{
		{0, "a", 1},
		{time.Second, "a", 1},
		{5 * time.Second, "b", 2},
		{12 * time.Second, "", 1},
		{16 * time.Second, "", 0},
	}
	for _, s := range steps {
		var got int
		if s.id == "" {
			got = v.count(t0.Add(s.at))
		} else {
			got = v.seen(s.id, t0.Add(s.at))
		}
		if got != s.want {
			t.Fatalf("at %s: %d viewers, want %d", s.at, got, s.want)
		}
	}
}
