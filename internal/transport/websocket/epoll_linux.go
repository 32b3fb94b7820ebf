package websocket

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"

	"github.com/jonboulle/clockwork"
	"golang.org/x/sys/unix"
)

// The poller: one epoll instance and one goroutine per Handler. It only
// waits, maps events to connections and hands them to the worker pool, which
// does the reading and parsing; one goroutine is far from busy at the rates
// a single node sees, so there is no sharding over several epoll sets.
//
// Sockets are registered with EPOLLIN|EPOLLRDHUP|EPOLLONESHOT, level-
// triggered. After one event the kernel disables the socket until a worker
// re-arms it with EPOLL_CTL_MOD, and re-arming reports it again at once if
// input is still waiting. So the poller never reports a connection whose
// batch is still running (ordering needs no queue per connection), a worker
// may stop after a bounded amount of reading and yield, and nothing is lost
// between the last read and the re-arm. The price is one epoll_ctl per
// batch. Edge-triggered mode would save it but must read until EAGAIN and
// needs a "more arrived while busy" handshake between poller and worker;
// plain level-triggered mode would report a busy socket over and over.
//
// An event carries a handle, the slot index and its generation, not the fd:
// once a connection is closed its fd number can at once be reused by a new
// connection, and an event already harvested for the old one must not reach
// the new one. Every read and epoll_ctl goes through the net.Conn's
// syscall.RawConn, which refuses to run once the conn is closed, so none can
// touch a reused fd either.

const (
	epollSupported = true
	defaultReader  = ReaderEpoll

	epollEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT
)

var errWouldBlock error = unix.EAGAIN

var errLoopClosed = errors.New("websocket: event loop closed")

type poller struct {
	epfd   int
	epf    *os.File        // epfd, parked on by the runtime's poller (see wait)
	eprc   syscall.RawConn // epf's; nil when the runtime cannot poll epfd
	wakefd int             // an eventfd, slot 0: wakes the poller to check for stop
	log    *slog.Logger
	pool   workerPool
	done   chan struct{} // closed when the poller goroutine has finished

	mu       sync.RWMutex
	slots    []pollSlot // indexed by handle; slot 0 is the wake eventfd
	free     []uint32   // unused slot indexes
	count    int        // registered connections
	stopping bool       // no new connections; finish when count reaches 0
	closed   bool       // epfd is closed: no more epoll_ctl
}

type pollSlot struct {
	c   *conn
	gen uint32 // incremented when the slot is freed
}

// newPoller starts the event loop; clock is the worker pool's time source.
func newPoller(log *slog.Logger, clock clockwork.Clock) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN} // handle 0
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(wakefd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	p := &poller{
		epfd:   epfd,
		wakefd: wakefd,
		log:    log,
		pool:   newWorkerPool(clock),
		done:   make(chan struct{}),
		slots:  make([]pollSlot, 1),
	}
	// The event loop waits for epfd to become readable in the runtime's own
	// poller rather than blocked in epoll_wait: a goroutine blocked in a
	// system call keeps its P until the runtime notices, and with one P
	// (a server pinned to one core) every other goroutine waits that long.
	if unix.SetNonblock(epfd, true) == nil {
		p.epf = os.NewFile(uintptr(epfd), "epoll")
		if rc, err := p.epf.SyscallConn(); err == nil {
			p.eprc = rc
		}
	}
	go p.run()
	return p, nil
}

// register puts c on the event loop, with pre (the bytes that came with the
// handshake) as its pending input. c's reading side starts out held (busy):
// the caller must submit c once its session exists, and the first batch
// re-arms the socket. register returns false when the connection cannot be
// polled (not a TCP or Unix socket, or the loop is stopping); the caller then
// uses the goroutine reader.
func (p *poller) register(c *conn, pre []byte) bool {
	var rc syscall.RawConn
	var err error
	switch nc := c.nc.(type) {
	case *net.TCPConn:
		rc, err = nc.SyscallConn()
	case *net.UnixConn:
		rc, err = nc.SyscallConn()
	default:
		return false
	}
	if err != nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping || p.closed {
		return false
	}
	var idx uint32
	if k := len(p.free); k > 0 {
		idx = p.free[k-1]
		p.free = p.free[:k-1]
	} else {
		idx = uint32(len(p.slots))
		p.slots = append(p.slots, pollSlot{})
	}
	s := &p.slots[idx]
	ev := unix.EpollEvent{Events: epollEvents, Fd: int32(idx), Pad: int32(s.gen)}
	var cerr error
	err = rc.Control(func(fd uintptr) {
		cerr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		p.free = append(p.free, idx)
		p.log.Warn("cannot poll connection, using a goroutine", "err", os.NewSyscallError("epoll_ctl", err))
		return false
	}
	c.ep = epConn{rc: rc, handle: uint64(s.gen)<<32 | uint64(idx), busy: true, pend: pre}
	s.c = c
	p.count++
	return true
}

// submit hands c, whose reading side the caller holds, to a worker.
func (p *poller) submit(c *conn) { p.pool.submit(c) }

// arm re-enables c's socket after a batch.
func (p *poller) arm(c *conn) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return errLoopClosed
	}
	ev := unix.EpollEvent{Events: epollEvents, Fd: int32(uint32(c.ep.handle)), Pad: int32(uint32(c.ep.handle >> 32))}
	var cerr error
	if err := c.ep.rc.Control(func(fd uintptr) {
		cerr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
	}); err != nil {
		return err
	}
	return cerr
}

// remove unregisters c's socket (unless it is already closed, which removed
// it) and frees its slot, so that a late event for it finds nothing.
func (p *poller) remove(c *conn) {
	p.mu.Lock()
	if !p.closed {
		_ = c.ep.rc.Control(func(fd uintptr) {
			_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
		})
	}
	idx := uint32(c.ep.handle)
	p.slots[idx] = pollSlot{gen: p.slots[idx].gen + 1}
	p.free = append(p.free, idx)
	p.count--
	last := p.stopping && p.count == 0
	p.mu.Unlock()
	if last {
		p.wake()
	}
}

// stop refuses new connections. The poller finishes once the connections it
// has are gone; they are being closed by the hub's shutdown.
func (p *poller) stop() {
	p.mu.Lock()
	p.stopping = true
	last := p.count == 0
	p.mu.Unlock()
	if last {
		p.wake()
	}
}

func (p *poller) wake() {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if !p.closed {
		one := [8]byte{1}
		_, _ = unix.Write(p.wakefd, one[:])
	}
}

// run waits for events and dispatches them until the poller stops.
func (p *poller) run() {
	defer p.shutdown()
	events := make([]unix.EpollEvent, 128)
	var ready []*conn
	for {
		n, err := p.wait(events)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			p.log.Error("event loop failed", "err", os.NewSyscallError("epoll_wait", err))
			return
		}
		woken := false
		p.mu.RLock()
		for i := range events[:n] {
			h := uint64(uint32(events[i].Pad))<<32 | uint64(uint32(events[i].Fd))
			if h == 0 {
				woken = true
			} else if c := p.lookupLocked(h); c != nil {
				ready = append(ready, c)
			}
		}
		p.mu.RUnlock()
		for i, c := range ready {
			p.dispatch(c)
			ready[i] = nil
		}
		ready = ready[:0]
		if woken {
			var b [8]byte
			_, _ = unix.Read(p.wakefd, b[:])
			p.mu.RLock()
			over := p.stopping && p.count == 0
			p.mu.RUnlock()
			if over {
				return
			}
		}
	}
}

// wait returns the next events. It parks the goroutine in the runtime's
// poller until epfd is readable (its ready list is not empty), then takes
// the events without blocking; where epfd cannot be polled so, it blocks in
// epoll_wait.
func (p *poller) wait(events []unix.EpollEvent) (int, error) {
	if p.eprc == nil {
		return unix.EpollWait(p.epfd, events, -1)
	}
	var n int
	var werr error
	err := p.eprc.Read(func(fd uintptr) bool {
		n, werr = unix.EpollWait(int(fd), events, 0)
		return n > 0 || (werr != nil && werr != unix.EINTR)
	})
	if err != nil {
		p.log.Debug("event loop: cannot park on the epoll descriptor; blocking in epoll_wait", "err", err)
		p.eprc = nil
		return unix.EpollWait(p.epfd, events, -1)
	}
	return n, werr
}

// lookupLocked returns the connection of handle h, or nil when its slot was
// freed (and perhaps reused) since the event was queued. p.mu must be held.
func (p *poller) lookupLocked(h uint64) *conn {
	idx, gen := uint32(h), uint32(h>>32)
	if int(idx) >= len(p.slots) || p.slots[idx].gen != gen {
		return nil
	}
	return p.slots[idx].c
}

// dispatch hands a readable connection to a worker, unless its reading side
// is held (the event is then dropped: the holder re-arms the socket, which
// reports it again) or over.
func (p *poller) dispatch(c *conn) {
	c.mu.Lock()
	if c.ep.busy || c.readerDone {
		c.mu.Unlock()
		return
	}
	c.ep.busy = true
	c.mu.Unlock()
	p.pool.submit(c)
}

// shutdown closes the epoll set. Connections still registered (only after a
// failure of epoll_wait) lose their reader and are finished.
func (p *poller) shutdown() {
	p.mu.Lock()
	p.closed = true
	if p.epf != nil {
		_ = p.epf.Close() // closes epfd
	} else {
		_ = unix.Close(p.epfd)
	}
	_ = unix.Close(p.wakefd)
	var left []*conn
	for _, s := range p.slots {
		if s.c != nil {
			left = append(left, s.c)
		}
	}
	p.mu.Unlock()
	for _, c := range left {
		c.stopReading()
	}
	close(p.pool.quit)
	close(p.done)
}

// rawRead reads from the socket without blocking: errWouldBlock means there
// is nothing more now, (0, nil) the end of the stream.
func (c *conn) rawRead(b []byte) (int, error) {
	op := rawOps.Get().(*rawOp)
	op.b = b
	rerr := c.ep.rc.Read(op.read)
	n, err := op.n, op.err
	op.put()
	if rerr != nil {
		return 0, rerr
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}
