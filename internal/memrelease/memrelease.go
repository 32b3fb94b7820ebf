// Package memrelease returns a quiet node's free heap memory to the
// operating system.
//
// Go's runtime keeps the heap it has used up to about twice what is live
// (GOGC=100) and returns only what lies beyond that. A realtime node's heap
// is mostly long-lived connection state, and a burst of connections or
// publications leaves it holding as much again in free pages that nothing
// will use until the next burst: on an idle node with 19,000 connections
// that is more than half of its resident memory. The loop here watches the
// runtime's own counters and, when no collection has run for a whole
// interval (the node allocates little: it is quiet) and the free pages the
// runtime still holds are large against the live heap, collects once and
// returns them (debug.FreeOSMemory). A busy node collects often and is left
// alone, so the loop costs nothing where CPU matters; a quiet node pays one
// collection per interval at most, and only when there is memory to give
// back. It is the idea behind periodic collections in other managed
// runtimes that uncommit an idle heap.
package memrelease

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Counters the loop reads from runtime/metrics.
const (
	gcCycles  = "/gc/cycles/total:gc-cycles"
	heapFree  = "/memory/classes/heap/free:bytes" // free, not yet returned
	heapLive  = "/memory/classes/heap/objects:bytes"
	minUnused = 4 << 20 // below this there is too little to be worth a collection
)

// Stats is what the loop reads of the runtime at each check.
type Stats struct {
	Cycles uint64 // collections so far
	Free   uint64 // heap bytes free and still held by the process
	Live   uint64 // heap bytes in objects (live, or dead and not yet swept)
}

// Read returns the runtime's current Stats.
func Read() Stats {
	s := []metrics.Sample{{Name: gcCycles}, {Name: heapFree}, {Name: heapLive}}
	metrics.Read(s)
	var st Stats
	if s[0].Value.Kind() == metrics.KindUint64 {
		st.Cycles = s[0].Value.Uint64()
	}
	if s[1].Value.Kind() == metrics.KindUint64 {
		st.Free = s[1].Value.Uint64()
	}
	if s[2].Value.Kind() == metrics.KindUint64 {
		st.Live = s[2].Value.Uint64()
	}
	return st
}

// Worth reports whether a node whose runtime read prev one interval ago
// and now reads now should return its free memory: no collection ran in
// between, and the free pages are over 4 MiB and over a quarter of the
// heap's objects.
func Worth(prev, now Stats) bool {
	return now.Cycles == prev.Cycles && now.Free > minUnused && now.Free > now.Live/4
}

// Run checks every interval until ctx is done, returning free memory when
// Worth says so. released is called after each return (for a metric); it
// may be nil. An interval of 0 or less returns at once.
func Run(ctx context.Context, interval time.Duration, log *slog.Logger, released func()) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	prev := Read()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := Read()
		if Worth(prev, now) {
			debug.FreeOSMemory()
			after := Read()
			log.Debug("returned free memory to the system", "free_before", now.Free, "free_after", after.Free)
			if released != nil {
				released()
			}
			now = after // the collection it ran is ours, not a sign of load
		}
		prev = now
	}
}
