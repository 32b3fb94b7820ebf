package memrelease

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func TestWorth(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name       string
		prev, now  Stats
		wantReturn bool
	}{
		{"quiet, much free", Stats{Cycles: 3}, Stats{Cycles: 3, Free: 40 * mib, Live: 30 * mib}, true},
		{"busy: a collection ran", Stats{Cycles: 3}, Stats{Cycles: 4, Free: 40 * mib, Live: 30 * mib}, false},
		{"little free in all", Stats{Cycles: 3}, Stats{Cycles: 3, Free: 3 * mib, Live: 1 * mib}, false},
		{"free small against live", Stats{Cycles: 3}, Stats{Cycles: 3, Free: 10 * mib, Live: 100 * mib}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Worth(tc.prev, tc.now); got != tc.wantReturn {
				t.Fatalf("Worth = %v, want %v", got, tc.wantReturn)
			}
		})
	}
}

var sink [][]byte

// TestRunReturnsFreeMemory leaves the heap holding tens of MiB of free
// pages, as a burst does, and checks that the loop gives them back.
func TestRunReturnsFreeMemory(t *testing.T) {
	for range 64 << 10 {
		sink = append(sink, make([]byte, 1024))
	}
	sink = nil
	runtime.GC() // the garbage is now free heap the runtime still holds
	if st := Read(); st.Free < minUnused {
		t.Skipf("the runtime returned the memory itself (%d bytes free)", st.Free)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var n atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, 20*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)), func() { n.Add(1); cancel() })
	}()
	<-done
	if n.Load() != 1 {
		t.Fatalf("released %d times", n.Load())
	}
	if st := Read(); st.Free >= minUnused {
		t.Fatalf("%d bytes still free and held after the release", st.Free)
	}
}

func TestRunOffReturnsAtOnce(t *testing.T) {
	Run(context.Background(), 0, slog.Default(), nil)
}
