package websocket

import (
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/jonboulle/clockwork"
)

// The event-loop reader, the part that does not depend on the platform. The
// poller (epoll_linux.go) watches every connection's socket; when one is
// readable it hands the connection to a worker, which reads what is there
// without blocking into a pooled scratch buffer, feeds it to conn.process and
// re-arms the socket. An idle connection holds no goroutine and no buffer:
// only its conn and a slot in the poller's table. It keeps a buffer of its
// own (ep.pend) only while it holds an incomplete frame.
//
// Who reads a connection: at most one party holds ep.busy at a time (a
// worker serving a batch, or a closer ending the reading side), so the
// batches of one connection are processed one after the other, in order. The
// socket is re-armed only after busy is released; an event that arrives
// while busy is set is dropped, which loses nothing because re-arming
// reports a socket that is still readable again.
//
// Closing: conn.Close (the session's writer) sends the close frame,
// half-closes TCP and starts a timer of closeGrace, since raw reads have no
// deadline; input is read and discarded until the client closes or the timer
// fires, then the socket is unregistered and closed (conn.readerExit), once.

// epConn is a connection's event-loop state.
type epConn struct {
	rc     syscall.RawConn // nil when the connection is not on the event loop
	handle uint64          // the poller's slot index and generation

	// Guarded by conn.mu:
	busy  bool        // a worker or a closer owns the reading side
	stop  bool        // reading must end after the current batch
	grace *time.Timer // ends the drain after the close frame was sent

	// Owned by whoever holds busy:
	pend     []byte // an incomplete frame, nil when there is none
	draining bool   // the parser ended the connection: discard input
}

// polled reports whether the connection is read by the event loop.
func (e *epConn) polled() bool { return e.rc != nil }

const (
	// readBudget bounds the reads of one batch, so that a client sending
	// without pause does not keep a worker from other connections; the
	// re-armed socket is reported again at once.
	readBudget = 4
	// Workers are started on demand and leave after workerIdle without
	// work, so an idle server has none. Up to workerPool.base run at once;
	// more (up to maxWorkers, one per workerStall) only while the queue of
	// waiting connections does not move, which means the workers are
	// blocked (in a slow broker call behind HandleMessage, say) rather than
	// busy parsing.
	maxWorkers  = 256
	workerStall = 20 * time.Millisecond
	workerIdle  = 10 * time.Second
)

// startGrace ends the drain after d unless the reader finishes first.
func (c *conn) startGrace(d time.Duration) {
	c.mu.Lock()
	if !c.readerDone && c.ep.grace == nil {
		c.ep.grace = time.AfterFunc(d, c.stopReading)
	}
	c.mu.Unlock()
}

// stopReading ends the reading side: at once when no worker holds it,
// otherwise when the worker's batch is over.
func (c *conn) stopReading() {
	c.mu.Lock()
	if c.readerDone {
		c.mu.Unlock()
		return
	}
	c.ep.stop = true
	if c.ep.busy {
		c.mu.Unlock()
		return
	}
	c.ep.busy = true
	c.mu.Unlock()
	c.finishRead()
}

// finishRead takes the connection off the event loop, then closes it or
// tells the session the peer is gone. The caller holds busy, which is never
// released afterwards.
func (c *conn) finishRead() {
	c.hd.ep.remove(c)
	c.ep.pend = nil
	c.readerExit()
}

// serveReady serves one batch: it reads what the socket holds and re-arms
// it, or finishes the connection. The caller holds busy.
func (c *conn) serveReady(scratch []byte) {
	over := c.readAvailable(scratch)
	c.mu.Lock()
	over = over || c.ep.stop
	if !over {
		c.ep.busy = false
	}
	c.mu.Unlock()
	if !over {
		if c.hd.ep.arm(c) == nil {
			return
		}
		// Not re-armed (the socket was closed): take the reading side back
		// to finish it, unless a closer got it first.
		c.mu.Lock()
		if c.ep.busy || c.readerDone {
			c.mu.Unlock()
			return
		}
		c.ep.busy = true
		c.mu.Unlock()
	}
	c.finishRead()
}

// readAvailable reads what the socket holds, up to readBudget reads, and
// feeds it to the parser. It reports whether reading is over: the client
// closed or reset the connection, or the conn was closed.
func (c *conn) readAvailable(scratch []byte) bool {
	if len(c.ep.pend) > 0 && !c.ep.draining {
		// Bytes that came with the handshake; for a frame still incomplete
		// this only reads its header again.
		c.feed(nil)
	}
	for range readBudget {
		n, err := c.rawRead(scratch)
		if err == errWouldBlock {
			return false
		}
		if err != nil || n == 0 {
			return true
		}
		if !c.ep.draining {
			c.feed(scratch[:n])
		}
		if n < len(scratch) {
			// Most likely all there was. If not, or if the client closed
			// meanwhile, the re-armed socket is reported again.
			return false
		}
	}
	return false
}

// feed hands bytes read from the socket to the frame parser. An incomplete
// frame at the end is kept in ep.pend, sized for the whole frame once its
// header is in, and dropped when the frame completes. When the parser ends
// the connection the session is closed and later input is discarded.
func (c *conn) feed(data []byte) {
	buf := data
	if c.ep.pend != nil {
		buf = append(c.ep.pend, data...)
	}
	consumed, need, d := c.process(buf)
	if d != nil {
		c.ep.pend, c.ep.draining = nil, true
		c.end(d)
		return
	}
	rest := buf[consumed:]
	switch {
	case len(rest) == 0:
		c.ep.pend = nil
	case c.ep.pend != nil && cap(buf) >= need && cap(buf) <= max(2*need, 4096):
		c.ep.pend = buf[:copy(buf, rest)]
	default:
		// From the scratch buffer, or a buffer much larger than needed.
		c.ep.pend = append(make([]byte, 0, max(need, len(rest))), rest...)
	}
}

// workerPool runs connections' batches on an elastic set of goroutines.
// submit never blocks, so the poller never waits for a slow connection; when
// every worker is busy, connections queue (each at most once, since it is
// submitted only while it holds busy). While the queue is not empty a timer
// checks that it moves; when no worker has taken a connection from it for
// workerStall, the workers are blocked (in slow commands) rather than busy,
// and one more worker is started.
type workerPool struct {
	base  int                       // workers started without waiting: 2 per CPU, at least 4
	quit  chan struct{}             // closed when the event loop is gone: idle workers leave
	clock clockwork.Clock           // the stall and idle timers' time source (Options.Clock)
	serve func(c *conn, buf []byte) // serves one batch of c: conn.serveReady, or a test's

	mu       sync.Mutex
	idle     []chan *conn    // parked workers, the most recently parked last
	n        int             // running workers
	queue    []*conn         // connections waiting for a worker
	moved    time.Time       // when the queue was last taken from, or filled from empty
	watchdog clockwork.Timer // checks the queue for a stall, armed while it is not empty
	watching bool
}

func newWorkerPool(clock clockwork.Clock) workerPool {
	return workerPool{
		base:  max(4, 2*runtime.GOMAXPROCS(0)),
		quit:  make(chan struct{}),
		clock: clock,
		serve: (*conn).serveReady,
	}
}

func (wp *workerPool) submit(c *conn) {
	wp.mu.Lock()
	if k := len(wp.idle); k > 0 {
		ch := wp.idle[k-1]
		wp.idle[k-1] = nil
		wp.idle = wp.idle[:k-1]
		wp.mu.Unlock()
		ch <- c // buffered, and its worker waits for it
		return
	}
	if wp.n < wp.base {
		wp.n++
		wp.mu.Unlock()
		go wp.work(c)
		return
	}
	if len(wp.queue) == 0 {
		wp.moved = wp.clock.Now()
	}
	wp.queue = append(wp.queue, c)
	wp.watchLocked()
	wp.mu.Unlock()
}

// watchLocked arms the stall check. wp.mu must be held.
func (wp *workerPool) watchLocked() {
	if wp.watching {
		return
	}
	wp.watching = true
	if wp.watchdog == nil {
		wp.watchdog = wp.clock.AfterFunc(workerStall, wp.checkStall)
	} else {
		wp.watchdog.Reset(workerStall)
	}
}

// checkStall starts one more worker when the queue has not moved for
// workerStall, and keeps checking while the queue is not empty.
func (wp *workerPool) checkStall() {
	wp.mu.Lock()
	wp.watching = false
	if len(wp.queue) == 0 {
		wp.mu.Unlock()
		return
	}
	extra := wp.n < maxWorkers && wp.clock.Since(wp.moved) >= workerStall
	if extra {
		wp.n++
		wp.moved = wp.clock.Now() // give it time to take one before the next
	}
	wp.watchLocked()
	wp.mu.Unlock()
	if extra {
		go wp.work(nil)
	}
}

// work serves c (if any), then whatever is queued or handed to it, until it
// has been idle for workerIdle or the pool quits.
func (wp *workerPool) work(c *conn) {
	ch := make(chan *conn, 1)
	t := wp.clock.NewTimer(workerIdle)
	defer t.Stop()
	for {
		if c != nil {
			bp := bufPool.Get().(*[]byte)
			wp.serve(c, (*bp)[:cap(*bp)])
			bufPool.Put(bp)
		}

		wp.mu.Lock()
		if len(wp.queue) > 0 {
			c = wp.queue[0]
			wp.queue[0] = nil
			wp.queue = wp.queue[1:]
			if len(wp.queue) == 0 {
				wp.queue = nil
			}
			wp.moved = wp.clock.Now()
			wp.mu.Unlock()
			continue
		}
		wp.idle = append(wp.idle, ch)
		wp.mu.Unlock()
		t.Reset(workerIdle)
		select {
		case c = <-ch:
			continue
		case <-t.Chan():
		case <-wp.quit:
		}
		wp.mu.Lock()
		if i := slices.Index(wp.idle, ch); i >= 0 {
			wp.idle = slices.Delete(wp.idle, i, i+1)
			wp.n--
			wp.mu.Unlock()
			return
		}
		wp.mu.Unlock()
		c = <-ch // a submitter took this worker just as it was leaving
	}
}
