package stream

import (
	"context"
	"sync"
	"sync/atomic"
)

// Reader is one output's view of a stream: a bounded queue of the units
// written since it attached. Next is for one goroutine; Close and the
// counters are safe from any.
//
// When the queue is full the reader is slow: its queued units are
// dropped, and so is every unit until the next video keyframe (for a
// stream with video), so that what it reads next decodes. Next reports how
// many were dropped before the unit it returns. The publisher and the
// other readers never wait for a reader.
type Reader struct {
	s        *Stream
	protocol string
	notify   chan struct{} // 1-slot: a unit or the end arrived
	closed   atomic.Bool
	dropped  atomic.Uint64 // total units lost

	mu      sync.Mutex // guards the fields below
	buf     []*Unit    // ring of cap QueueSize
	head, n int
	waitKey bool // dropping until a video keyframe, after a loss
	// starting: skipping (not counted as lost) until the first video
	// keyframe, for a reader that attached mid-GOP.
	starting bool
	pending  int   // units dropped since the last Next
	ended    error // the stream's end reason, delivered after the queue
}

func newReader(s *Stream, protocol string, size int) *Reader {
	return &Reader{s: s, protocol: protocol, notify: make(chan struct{}, 1), buf: make([]*Unit, size)}
}

// Stream returns the reader's stream.
func (rd *Reader) Stream() *Stream { return rd.s }

// Tracks returns the stream's tracks (Unit.Track indexes it).
func (rd *Reader) Tracks() []*Track { return rd.s.tracks }

// Protocol returns the protocol the reader was attached for.
func (rd *Reader) Protocol() string { return rd.protocol }

// Dropped returns how many units the reader has lost by falling behind.
func (rd *Reader) Dropped() uint64 { return rd.dropped.Load() }

// Next returns the next unit, waiting for one. dropped is how many units
// were lost just before it (0 normally). When the stream has ended and
// the queue is drained it returns the end reason (ErrEnded, ErrKicked,
// ErrClosed); after Close it returns ErrEnded; it returns ctx.Err() when
// ctx is done first. The unit is shared: do not modify it.
func (rd *Reader) Next(ctx context.Context) (u *Unit, dropped int, err error) {
	for {
		rd.mu.Lock()
		if rd.n > 0 {
			u = rd.buf[rd.head]
			rd.buf[rd.head] = nil
			rd.head = (rd.head + 1) % len(rd.buf)
			rd.n--
			dropped, rd.pending = rd.pending, 0
			rd.mu.Unlock()
			return u, dropped, nil
		}
		if rd.ended != nil {
			err = rd.ended
			rd.mu.Unlock()
			return nil, 0, err
		}
		rd.mu.Unlock()
		select {
		case <-rd.notify:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
}

// Close detaches the reader; later Next calls return ErrEnded. It is
// idempotent.
func (rd *Reader) Close() {
	if rd.closed.Swap(true) {
		return
	}
	rd.s.removeReader(rd)
	rd.end(ErrEnded)
	rd.mu.Lock()
	clear(rd.buf)
	rd.n = 0
	rd.mu.Unlock()
}

// push queues u, dropping as the type comment says. Called with s.mu held.
func (rd *Reader) push(u *Unit) {
	rd.mu.Lock()
	rd.pushLocked(u)
	rd.mu.Unlock()
	select {
	case rd.notify <- struct{}{}:
	default:
	}
}

// pushLocked queues u. rd.mu must be held.
func (rd *Reader) pushLocked(u *Unit) {
	if rd.ended != nil {
		return
	}
	if rd.n == len(rd.buf) {
		rd.drop(rd.n)
		clear(rd.buf)
		rd.head, rd.n = 0, 0
		rd.waitKey = rd.s.hasVideo
		rd.starting = false
	}
	if rd.starting {
		if !rd.s.isVideoKey(u) {
			return
		}
		rd.starting = false
	}
	if rd.waitKey {
		if !rd.s.isVideoKey(u) {
			rd.drop(1)
			return
		}
		rd.waitKey = false
	}
	rd.buf[(rd.head+rd.n)%len(rd.buf)] = u
	rd.n++
}

// drop counts n lost units. rd.mu must be held.
func (rd *Reader) drop(n int) {
	if n == 0 {
		return
	}
	rd.pending += n
	rd.dropped.Add(uint64(n))
	rd.s.reg.dropped.Add(uint64(n))
}

// end records the stream's end; Next returns it once the queue is drained.
func (rd *Reader) end(reason error) {
	rd.mu.Lock()
	if rd.ended == nil {
		rd.ended = reason
	}
	rd.mu.Unlock()
	select {
	case rd.notify <- struct{}{}:
	default:
	}
}
