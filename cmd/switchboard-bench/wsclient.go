package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// This file is the client side of the load tool: WebSocket connections on
// raw non-blocking sockets, driven by a few event loops (one epoll instance
// each) instead of goroutines, so that a worker process holding thousands of
// connections runs a handful of goroutines and spends little CPU per idle
// connection. Each connection is a small state machine: connecting, HTTP
// upgrade, subscribing, open.

// Connection states.
const (
	stConnecting = iota
	stHandshake
	stSubscribing
	stOpen
	stClosed
)

// Protocol kinds the client speaks.
const (
	kindSwitchboard = "switchboard"
	kindBaseline    = "baseline"
)

// Reply ids the client uses on Switchboard.
const (
	idConnect   = 1
	idSubscribe = 2
)

const (
	epollIn    = syscall.EPOLLIN | syscall.EPOLLRDHUP
	epollInOut = epollIn | syscall.EPOLLOUT
	// ipBindAddressNoPort (IP_BIND_ADDRESS_NO_PORT) defers the choice of the
	// source port to connect, so that bind to a source address does not
	// reserve a port for every destination.
	ipBindAddressNoPort = 24
	wsGUID              = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
)

// clientConfig says where and how a worker's connections connect.
type clientConfig struct {
	// Addr is the server's host:port (IPv4).
	Addr string `json:"addr"`
	// Path is the WebSocket endpoint's path.
	Path string `json:"path"`
	// Kind is kindSwitchboard or kindBaseline.
	Kind string `json:"kind"`
	// Sources are local IPv4 addresses to bind connections to, used in turn;
	// empty lets the kernel choose.
	Sources []string `json:"sources,omitempty"`
	// Pollers is the number of event loops.
	Pollers int `json:"pollers"`
	// InFlight bounds the connections setting up at once.
	InFlight int `json:"inflight"`
	// SSE makes the connections Server-Sent Events streams (GET Path with
	// the channel as a query parameter) instead of WebSockets. They only
	// receive.
	SSE bool `json:"sse,omitempty"`
	// Recover makes a connection that subscribes again after losing its
	// connection ask Switchboard for what it missed ("since" its last
	// offset and epoch).
	Recover bool `json:"recover"`
	// ReadDelay, when positive, makes a busy event loop (one that found many
	// ready connections) pause this long before polling again, so that
	// several messages pile up per socket and are taken with one read. It
	// trades up to ReadDelay of measured latency for much less client CPU.
	ReadDelay time.Duration `json:"read_delay"`
}

// conn is one client WebSocket connection. Fields are owned by the poller
// that serves it unless marked otherwise.
type conn struct {
	w       *client
	p       *poller
	idx     int    // global index, fixed for the conn's life
	channel string // the channel it subscribes to
	connect bool   // send the connect command (to learn the client id)

	fd      int
	state   int
	started int64 // ns, when the current socket was created
	key     string
	rbuf    []byte // unparsed bytes (a partial frame or handshake)
	frag    []byte // a fragmented message being assembled
	setup   bool   // the first setup has completed (or failed)

	lastOffset uint64
	hasOffset  bool
	epoch      string
	sentSince  bool // the pending subscribe asked for recovery

	// SSE streams only: the chunked body decoder's state.
	chunked   bool
	chunkLeft int    // bytes left in the current chunk, or a chunk* state
	events    []byte // undelivered event-stream text
	warmed    atomic.Bool

	// Set by the poller, read by status queries:
	clientID     atomic.Pointer[string]
	subscribedAt atomic.Int64 // ns of the last successful subscribe
	droppedAt    atomic.Int64 // ns of the last loss of the connection
	attempts     int          // consecutive failed reconnect attempts

	pubSeq uint64 // owned by the worker's publisher

	wmu    sync.Mutex // guards wbuf, closed and the EPOLLOUT interest
	wbuf   []byte
	closed bool
}

// pstats are one poller's counters, guarded by poller.mu.
type pstats struct {
	Received  uint64 // publications received (warm-ups excluded)
	Warm      uint64 // warm-up publications received
	Bytes     uint64 // payload bytes of publications received
	Gaps      uint64 // publications missing by offset (Switchboard only)
	Reordered uint64 // publications whose offset went backwards or repeated
	Errors    uint64 // error replies from the server
	Lat       hist   // publish-to-receive latency, µs
	// Closes counts connections lost, by WebSocket close code (0: the TCP
	// connection ended without a close frame).
	Closes map[int]uint64
	// ResubGapped counts publications skipped across reconnects (offset
	// in the new subscribe reply minus the last one received).
	ResubGapped uint64
	// EpochChanged counts resubscriptions that found a new stream epoch,
	// where a gap cannot be computed.
	EpochChanged uint64
	// Recovered counts publications received in subscribe replies after
	// a reconnect; Recoveries and Unrecovered count the replies that did
	// and did not recover.
	Recovered   uint64
	Recoveries  uint64
	Unrecovered uint64
	FirstRecv   int64
	LastRecv    int64
}

func (s *pstats) merge(o *pstats) {
	s.Received += o.Received
	s.Warm += o.Warm
	s.Bytes += o.Bytes
	s.Gaps += o.Gaps
	s.Reordered += o.Reordered
	s.Errors += o.Errors
	s.Lat.merge(&o.Lat)
	for k, v := range o.Closes {
		if s.Closes == nil {
			s.Closes = map[int]uint64{}
		}
		s.Closes[k] += v
	}
	s.ResubGapped += o.ResubGapped
	s.EpochChanged += o.EpochChanged
	s.Recovered += o.Recovered
	s.Recoveries += o.Recoveries
	s.Unrecovered += o.Unrecovered
	if o.FirstRecv != 0 && (s.FirstRecv == 0 || o.FirstRecv < s.FirstRecv) {
		s.FirstRecv = o.FirstRecv
	}
	if o.LastRecv > s.LastRecv {
		s.LastRecv = o.LastRecv
	}
}

// poller is one event loop.
type poller struct {
	w    *client
	epfd int
	buf  []byte

	mu sync.Mutex // held while events are handled; guards st
	st pstats
}

// client is the set of connections of one worker process.
type client struct {
	cfg     clientConfig
	dst     syscall.SockaddrInet4
	host    string
	sources []netip.Addr
	pollers []*poller
	table   []atomic.Pointer[conn] // by file descriptor
	stop    atomic.Bool
	wg      sync.WaitGroup

	mu    sync.Mutex // guards conns
	conns []*conn

	// Initial setup accounting.
	setupMu    sync.Mutex
	setupHist  hist
	opened     int
	failed     int
	failures   map[string]int
	setupCount atomic.Int64  // connections whose first setup has ended
	setupDone  chan struct{} // signalled when setupCount grows
	sem        chan struct{} // bounds setups in flight

	reconnect   atomic.Bool
	jitter      atomic.Int64 // ns
	reconnected atomic.Int64
}

func newClient(cfg clientConfig, maxFD int) (*client, error) {
	ap, err := netip.ParseAddrPort(cfg.Addr)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("server address %q: want IPv4 host:port", cfg.Addr)
	}
	w := &client{
		cfg:       cfg,
		dst:       syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()},
		host:      cfg.Addr,
		table:     make([]atomic.Pointer[conn], maxFD+64),
		failures:  map[string]int{},
		setupDone: make(chan struct{}, 1),
		sem:       make(chan struct{}, max(1, cfg.InFlight)),
	}
	for _, s := range cfg.Sources {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("source address %q: want IPv4", s)
		}
		w.sources = append(w.sources, a)
	}
	n := max(1, cfg.Pollers)
	for i := 0; i < n; i++ {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return nil, fmt.Errorf("epoll: %w", err)
		}
		p := &poller{w: w, epfd: fd, buf: make([]byte, 256<<10)}
		w.pollers = append(w.pollers, p)
		w.wg.Add(1)
		go p.run()
	}
	return w, nil
}

// close stops the event loops and closes every connection.
func (w *client) close() {
	w.stop.Store(true)
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.conns {
		c.wmu.Lock()
		if !c.closed {
			c.closed = true
			_ = syscall.Close(c.fd)
		}
		c.wmu.Unlock()
	}
	for _, p := range w.pollers {
		_ = syscall.Close(p.epfd)
	}
}

// open starts count connections with global indexes first..first+count-1,
// at most cfg.InFlight setting up at once, and waits until each is
// subscribed or has failed, or until timeout.
func (w *client) open(first, count int, channelOf func(int) string, connect bool, timeout time.Duration) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	target := w.setupCount.Load() + int64(count)
	giveUp := func() {
		left := int(target - w.setupCount.Load())
		w.setupMu.Lock()
		w.failed += left
		w.failures["timeout"] += left
		w.setupMu.Unlock()
	}
	for i := 0; i < count; i++ {
		c := &conn{w: w, idx: first + i, channel: channelOf(first + i), connect: connect}
		c.p = w.pollers[c.idx%len(w.pollers)]
		w.mu.Lock()
		w.conns = append(w.conns, c)
		w.mu.Unlock()
		select {
		case w.sem <- struct{}{}:
		case <-deadline.C:
			giveUp()
			return
		}
		w.dial(c)
	}
	for w.setupCount.Load() < target {
		select {
		case <-w.setupDone:
		case <-deadline.C:
			giveUp()
			return
		}
	}
}

// finishSetup records the outcome of a connection's first setup.
func (w *client) finishSetup(c *conn, err error) {
	if c.setup {
		return
	}
	c.setup = true
	w.setupMu.Lock()
	if err != nil {
		w.failed++
		w.failures[errorClass(err)]++
	} else {
		w.opened++
		w.setupHist.record(uint64(time.Now().UnixNano()-c.started) / 1000)
	}
	w.setupMu.Unlock()
	select {
	case <-w.sem:
	default:
	}
	w.setupCount.Add(1)
	select {
	case w.setupDone <- struct{}{}:
	default:
	}
}

func errorClass(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	s := err.Error()
	if len(s) > 60 {
		s = s[:60]
	}
	return s
}

// dial starts a new socket for c and registers it with c's poller.
func (w *client) dial(c *conn) {
	c.started = time.Now().UnixNano()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		w.dialFailed(c, fmt.Errorf("socket: %w", err))
		return
	}
	_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	if len(w.sources) > 0 {
		src := w.sources[c.idx%len(w.sources)]
		_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: src.As4()}); err != nil {
			_ = syscall.Close(fd)
			w.dialFailed(c, fmt.Errorf("bind %s: %w", src, err))
			return
		}
	}
	err = syscall.Connect(fd, &w.dst)
	if err != nil && err != syscall.EINPROGRESS {
		_ = syscall.Close(fd)
		w.dialFailed(c, fmt.Errorf("connect: %w", err))
		return
	}
	if fd >= len(w.table) {
		_ = syscall.Close(fd)
		w.dialFailed(c, fmt.Errorf("descriptor %d over the table size", fd))
		return
	}
	c.wmu.Lock()
	c.fd, c.state, c.closed, c.wbuf = fd, stConnecting, false, nil
	c.rbuf, c.frag, c.events = nil, nil, nil
	c.wmu.Unlock()
	w.table[fd].Store(c)
	ev := syscall.EpollEvent{Events: epollInOut, Fd: int32(fd)}
	if err := syscall.EpollCtl(c.p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		w.table[fd].Store(nil)
		_ = syscall.Close(fd)
		w.dialFailed(c, fmt.Errorf("epoll add: %w", err))
	}
}

// dialFailed handles a socket that could not even be started.
func (w *client) dialFailed(c *conn, err error) {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	c.state = stClosed
	if !c.setup {
		w.finishSetup(c, err)
		return
	}
	w.scheduleReconnect(c)
}

// scheduleReconnect dials c again after a random delay, growing with the
// number of consecutive failures, like a client SDK's backoff with jitter.
func (w *client) scheduleReconnect(c *conn) {
	if !w.reconnect.Load() || w.stop.Load() {
		return
	}
	j := w.jitter.Load()
	base := int64(100 * time.Millisecond << min(c.attempts, 4))
	d := time.Duration(rand.Int64N(max(j, 1)))
	if c.attempts > 0 {
		d += time.Duration(rand.Int64N(base))
	}
	c.attempts++
	time.AfterFunc(d, func() { w.dial(c) })
}

// snapshot returns the merged counters of all pollers, resetting them when
// reset is set.
func (w *client) snapshot(reset bool) pstats {
	var out pstats
	for _, p := range w.pollers {
		p.mu.Lock()
		out.merge(&p.st)
		if reset {
			p.st = pstats{}
		}
		p.mu.Unlock()
	}
	return out
}

// openConns returns the connections, in index order of creation.
func (w *client) allConns() []*conn {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*conn(nil), w.conns...)
}
