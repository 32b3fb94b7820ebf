package hub

import (
	"errors"
	"runtime"
	"sync"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// NonBlockingWriter is implemented by transports that can try a write
// without blocking. A fan-out then writes to such sessions from the
// goroutine that delivers the publication, in one tight loop, and a session
// needs a writer goroutine only when its socket is full.
type NonBlockingWriter interface {
	// TryWriteMessages writes msgs like WriteMessages but never waits: it
	// writes what the socket takes now and keeps the rest, returning
	// complete false; the next WriteMessages writes the rest first.
	TryWriteMessages(msgs []Message) (complete bool, err error)
}

// flushList collects the sessions that a fan-out made writable, so that
// they are written after the channel's lock is released.
type flushList struct {
	sessions []*Session
}

var flushPool = sync.Pool{New: func() any { return &flushList{sessions: make([]*Session, 0, 64)} }}

// parallelFlushMin is the smallest flush worth spreading over several
// goroutines when the process may run on several cores.
const parallelFlushMin = 256

// run writes every collected session and empties the list. A large list is
// split over GOMAXPROCS goroutines; each session is written by exactly one.
func (fl *flushList) run() {
	ss := fl.sessions
	if p := runtime.GOMAXPROCS(0); p > 1 && len(ss) >= parallelFlushMin {
		var wg sync.WaitGroup
		per := (len(ss) + p - 1) / p
		for lo := per; lo < len(ss); lo += per {
			part := ss[lo:min(lo+per, len(ss))]
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, s := range part {
					s.flush()
				}
			}()
		}
		for _, s := range ss[:per] {
			s.flush()
		}
		wg.Wait()
	} else {
		for _, s := range ss {
			s.flush()
		}
	}
	clear(ss)
	fl.sessions = ss[:0]
}

// release returns the list to the pool.
func (fl *flushList) release() {
	if cap(fl.sessions) <= 1<<16 {
		flushPool.Put(fl)
	}
}

// takeWriterLocked makes the caller the session's writer: with a flush list
// and a transport that writes without blocking, the session joins the list
// to be written by the fan-out; otherwise a writer goroutine starts. Nothing
// happens when a writer is already running. s.mu must be held.
func (s *Session) takeWriterLocked(fl *flushList) {
	if s.writing {
		return
	}
	s.writing = true
	if fl != nil && s.nb != nil && !s.closing && !s.recentlyWritten() {
		fl.sessions = append(fl.sessions, s)
		return
	}
	go s.writeLoop()
}

// recentlyWritten reports whether WriteDelay asks the next write to wait:
// the writer goroutine does the waiting, so such a session is not written
// directly. Called by the session's writer.
func (s *Session) recentlyWritten() bool {
	d := s.hub.cfg.WriteDelay
	return d > 0 && s.lastWrite != 0 && nanotime()-s.lastWrite < int64(d)
}

// flush writes the session's queue without blocking, on behalf of a
// fan-out that made it the session's writer. What the socket does not take
// now, and anything queued meanwhile, is left to a writer goroutine.
func (s *Session) flush() {
	s.mu.Lock()
	if len(s.queue) == 0 || s.closing {
		s.mu.Unlock()
		go s.writeLoop() // closes, or finds the queue empty and stops
		return
	}
	batch := s.takeQueueLocked()
	s.mu.Unlock()

	complete, err := s.nb.TryWriteMessages(batch)
	s.unflushed = !complete
	s.wrote(batch, err)

	s.mu.Lock()
	if err == nil && complete && len(s.queue) == 0 && !s.closing {
		s.writing = false
		s.releaseQueueLocked()
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	go s.writeLoop()
}

// takeQueueLocked hands the queue to the writer as a batch and starts an
// empty one. s.mu must be held.
func (s *Session) takeQueueLocked() []Message {
	batch := s.queue
	s.queue, s.spare = s.spare, nil
	s.queueBytes, s.queueLen, s.forced = 0, 0, 0
	return batch
}

// wrote accounts for a batch the writer wrote (or failed to write): the
// metrics, the batch's buffer kept for reuse, and on an error the session
// closing without queueing more. Called by the session's writer.
func (s *Session) wrote(batch []Message, err error) {
	m := s.hub.metrics
	now := nanotime()
	s.lastWrite = now
	var n, bytes int
	for i := range batch {
		if !batch[i].Control {
			n++
			bytes += len(batch[i].Data)
			if at := batch[i].At; at != 0 {
				m.DeliveryLatency.Observe(float64(now-at) / 1e9)
			}
		}
	}
	m.MessagesSent.Add(float64(n))
	m.BytesSent.Add(float64(bytes))
	m.SocketWrites.Inc()
	clear(batch)

	s.mu.Lock()
	s.spare = batch[:0]
	if err != nil {
		s.queue, s.queueBytes, s.queueLen, s.forced = nil, 0, 0, 0
		if !s.closing {
			s.closing = true
			s.disconnect = protocol.DisconnectWriteTimeout
			if !errors.Is(err, ErrTransportClosed) {
				s.hub.metrics.Disconnect(s.disconnect.Code)
			}
		}
	}
	s.mu.Unlock()
}
