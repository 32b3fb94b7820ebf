package webhook

import (
	"runtime"
	"strconv"
	"testing"
)

// BenchmarkConnRecords measures what the connected clients' records cost:
// the heap a sender holds per record, and the bytes stored per record in
// the broker (the encoded record and its key). Each iteration holds
// 100,000 clients of 3 nodes, each with a user id.
func BenchmarkConnRecords(b *testing.B) {
	const n = 100_000
	facts := make([]fact, n)
	for i := range facts {
		facts[i] = fact{
			ID: randomHex(12), Kind: factConn, Time: 1, Node: "node" + strconv.Itoa(i%3),
			Client: "node" + strconv.Itoa(i%3) + "-" + strconv.FormatUint(uint64(1_000_000+i), 36),
			User:   "user-" + strconv.Itoa(i), Transport: "websocket",
		}
	}
	var heap, stored float64
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		st := newPartState()
		for _, f := range facts {
			// The fact's strings are the decoded fact's; only what the
			// record keeps counts (the fact itself is dropped after).
			f.ID, f.Client, f.User = string([]byte(f.ID)), string([]byte(f.Client)), string([]byte(f.User))
			st.applyConn(f, nil)
		}
		st.dirty = map[string]struct{}{} // emptied per batch in a sender
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap = float64(after.HeapAlloc-before.HeapAlloc) / n
		var bytes int
		for c, r := range st.conns {
			bytes += len(connKeyPrefix) + len(c) + len(r.encode())
		}
		stored = float64(bytes) / n
		runtime.KeepAlive(st)
	}
	b.ReportMetric(heap, "heap-B/record")
	b.ReportMetric(stored, "stored-B/record")
}
