package main

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
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

// busyEvents is the number of ready connections in one poll from which an
// event loop counts as busy (see clientConfig.ReadDelay).
const busyEvents = 32

func (p *poller) run() {
	defer p.w.wg.Done()
	events := make([]syscall.EpollEvent, 512)
	for !p.w.stop.Load() {
		n, err := syscall.EpollWait(p.epfd, events, 100)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return
		}
		if n == 0 {
			continue
		}
		p.mu.Lock()
		for i := 0; i < n; i++ {
			fd := int(events[i].Fd)
			c := p.w.table[fd].Load()
			if c == nil || c.fd != fd {
				continue
			}
			p.handle(c, events[i].Events)
		}
		p.mu.Unlock()
		if d := p.w.cfg.ReadDelay; d > 0 && n >= busyEvents {
			time.Sleep(d)
		}
	}
}

// handle serves one readiness event. p.mu is held.
func (p *poller) handle(c *conn, ev uint32) {
	if c.state == stConnecting {
		if ev&(syscall.EPOLLOUT|syscall.EPOLLERR|syscall.EPOLLHUP) == 0 {
			return
		}
		soerr, err := syscall.GetsockoptInt(c.fd, syscall.SOL_SOCKET, syscall.SO_ERROR)
		if err == nil && soerr != 0 {
			err = syscall.Errno(soerr)
		}
		if err != nil {
			p.drop(c, -1, fmt.Errorf("connect: %w", err))
			return
		}
		c.state = stHandshake
		ev := syscall.EpollEvent{Events: epollIn, Fd: int32(c.fd)}
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, c.fd, &ev)
		var kb [16]byte
		for i := range kb {
			kb[i] = byte(rand.Uint32())
		}
		c.key = base64.StdEncoding.EncodeToString(kb[:])
		req := "GET " + p.w.cfg.Path + " HTTP/1.1\r\nHost: " + p.w.host +
			"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + c.key +
			"\r\nSec-WebSocket-Version: 13\r\n\r\n"
		if p.w.cfg.SSE {
			req = sseRequest(p.w.cfg.Path, p.w.host, c.channel)
		}
		if !c.write([]byte(req)) {
			p.drop(c, -1, errors.New("handshake write failed"))
		}
		return
	}
	if ev&syscall.EPOLLOUT != 0 {
		c.flush()
	}
	if ev&(syscall.EPOLLIN|syscall.EPOLLERR|syscall.EPOLLHUP|syscall.EPOLLRDHUP) != 0 {
		p.read(c)
	}
}

// read reads what the socket has and processes it. p.mu is held.
func (p *poller) read(c *conn) {
	for {
		n, err := syscall.Read(c.fd, p.buf)
		if n > 0 {
			now := time.Now().UnixNano()
			data := p.buf[:n]
			fromBuf := true
			if len(c.rbuf) > 0 {
				c.rbuf = append(c.rbuf, data...)
				data, fromBuf = c.rbuf, false
			}
			used := p.process(c, data, now)
			if c.state == stClosed {
				return
			}
			rest := data[used:]
			switch {
			case len(rest) == 0:
				c.rbuf = nil
			case fromBuf:
				c.rbuf = append([]byte(nil), rest...)
			default:
				c.rbuf = c.rbuf[:copy(c.rbuf, rest)]
			}
			if n < len(p.buf) {
				return
			}
			continue
		}
		if err == syscall.EAGAIN {
			return
		}
		if err == syscall.EINTR {
			continue
		}
		if err == nil {
			err = errors.New("connection closed by server")
		}
		p.drop(c, 0, err)
		return
	}
}

// process handles the complete units at the start of data and returns how
// many bytes it used. p.mu is held.
func (p *poller) process(c *conn, data []byte, now int64) int {
	if p.w.cfg.SSE {
		return p.processSSE(c, data, now)
	}
	used := 0
	if c.state == stHandshake {
		end := bytes.Index(data, []byte("\r\n\r\n"))
		if end < 0 {
			if len(data) > 16<<10 {
				p.drop(c, -1, errors.New("handshake response too long"))
			}
			return 0
		}
		if err := checkUpgrade(data[:end], c.key); err != nil {
			p.drop(c, -1, err)
			return 0
		}
		used = end + 4
		p.subscribe(c)
	}
	for c.state != stClosed {
		rest := data[used:]
		if len(rest) < 2 {
			return used
		}
		b0, b1 := rest[0], rest[1]
		l := int(b1 & 0x7f)
		hl := 2
		switch l {
		case 126:
			if len(rest) < 4 {
				return used
			}
			l, hl = int(binary.BigEndian.Uint16(rest[2:])), 4
		case 127:
			if len(rest) < 10 {
				return used
			}
			l, hl = int(binary.BigEndian.Uint64(rest[2:])), 10
		}
		masked := b1&0x80 != 0
		if masked {
			hl += 4
		}
		if l > 64<<20 {
			p.drop(c, -1, errors.New("frame too large"))
			return used
		}
		if len(rest) < hl+l {
			return used
		}
		payload := rest[hl : hl+l]
		if masked {
			maskBytes(payload, rest[hl-4:hl])
		}
		used += hl + l
		fin, op := b0&0x80 != 0, b0&0x0f
		switch op {
		case 0x1, 0x0: // text, continuation
			if !fin || c.frag != nil {
				c.frag = append(c.frag, payload...)
				if !fin {
					continue
				}
				payload, c.frag = c.frag, nil
			}
			p.message(c, payload, now)
		case 0x8: // close
			code := 1005
			if len(payload) >= 2 {
				code = int(binary.BigEndian.Uint16(payload))
			}
			c.write(frame(0x8, payload[:min(len(payload), 2)]))
			p.drop(c, code, fmt.Errorf("closed by server with %d", code))
		case 0x9: // ping
			c.write(frame(0xA, payload))
		}
	}
	return used
}

// subscribe sends the commands that follow the upgrade. p.mu is held.
func (p *poller) subscribe(c *conn) {
	if p.w.cfg.Kind == kindBaseline {
		c.write(frame(0x1, []byte(`{"command":"subscribe","channel":"`+c.channel+`"}`)))
		p.subscribed(c)
		return
	}
	c.state = stSubscribing
	var b []byte
	if c.connect {
		b = append(b, frame(0x1, []byte(`{"command":"connect","id":`+strconv.Itoa(idConnect)+`}`))...)
	}
	cmd := `{"command":"subscribe","channel":"` + c.channel + `","id":` + strconv.Itoa(idSubscribe)
	c.sentSince = p.w.cfg.Recover && c.setup && c.hasOffset
	if c.sentSince {
		cmd += `,"since":{"offset":` + strconv.FormatUint(c.lastOffset, 10) + `,"epoch":"` + c.epoch + `"}`
	}
	b = append(b, frame(0x1, []byte(cmd+"}"))...)
	c.write(b)
}

// subscribed marks c open. p.mu is held.
func (p *poller) subscribed(c *conn) {
	c.state = stOpen
	c.attempts = 0
	c.subscribedAt.Store(time.Now().UnixNano())
	if c.setup {
		p.w.reconnected.Add(1)
	}
	p.w.finishSetup(c, nil)
}

// message handles one text message. p.mu is held.
func (p *poller) message(c *conn, m []byte, now int64) {
	if bytes.HasPrefix(m, []byte(`{"channel":`)) {
		p.publication(c, m, now)
		return
	}
	if bytes.HasPrefix(m, []byte(`{"id":`)) {
		id, _ := numberAfter(m, `{"id":`)
		if bytes.Contains(m, []byte(`"error":`)) {
			p.st.Errors++
			if c.state == stSubscribing && id == idSubscribe {
				p.drop(c, -1, fmt.Errorf("subscribe refused: %.100s", m))
			}
			return
		}
		switch id {
		case idConnect:
			if s, ok := stringAfter(m, `"client":"`); ok {
				c.clientID.Store(&s)
			}
		case idSubscribe:
			p.subscribeReply(c, m)
		}
		return
	}
	if bytes.HasPrefix(m, []byte(`{"error":`)) {
		p.st.Errors++
	}
}

// subscribeReply handles the reply to subscribe: the channel's position
// and, when recovery was asked for, the publications missed. p.mu is held.
func (p *poller) subscribeReply(c *conn, m []byte) {
	head, pubs, _ := bytes.Cut(m, []byte(`"publications":[`))
	off, ok := numberAfter(head, `"offset":`)
	epoch, _ := stringAfter(head, `"epoch":"`)
	recovered := c.sentSince && bytes.Contains(head, []byte(`"recovered":true`))
	switch {
	case !c.hasOffset || !ok:
	case epoch != c.epoch:
		p.st.EpochChanged++
		if c.sentSince {
			p.st.Unrecovered++
		}
	case recovered:
		p.st.Recoveries++
		// Walk the recovered publications: they must continue the offsets.
		next := c.lastOffset + 1
		for {
			i := bytes.Index(pubs, []byte(`,"offset":`))
			if i < 0 {
				break
			}
			pubs = pubs[i:]
			o, _ := numberAfter(pubs, `,"offset":`)
			pubs = pubs[len(`,"offset":`):]
			if o > next {
				p.st.ResubGapped += o - next
			}
			if o >= next {
				p.st.Recovered++
				next = o + 1
			}
		}
		if off >= next {
			p.st.ResubGapped += off - next + 1
		}
	default:
		if c.sentSince {
			p.st.Unrecovered++
		}
		if off > c.lastOffset {
			p.st.ResubGapped += off - c.lastOffset
		}
	}
	c.lastOffset, c.hasOffset, c.epoch = off, ok, epoch
	c.sentSince = false
	p.subscribed(c)
}

// publication accounts for one publication. p.mu is held.
func (p *poller) publication(c *conn, m []byte, now int64) {
	if off, ok := numberAfter(m, `,"offset":`); ok {
		if c.hasOffset {
			switch {
			case off > c.lastOffset+1:
				p.st.Gaps += off - c.lastOffset - 1
			case off <= c.lastOffset:
				p.st.Reordered++
			}
		}
		if off > c.lastOffset || !c.hasOffset {
			c.lastOffset, c.hasOffset = off, true
		}
	}
	seq, _ := numberAfter(m, `"s":`)
	if seq == 0 {
		p.st.Warm++
		c.warmed.Store(true)
		return
	}
	t, ok := numberAfter(m, `"t":`)
	if !ok {
		return
	}
	p.st.Received++
	p.st.Bytes += uint64(len(m))
	if p.st.FirstRecv == 0 {
		p.st.FirstRecv = now
	}
	p.st.LastRecv = now
	var us uint64
	if d := now - int64(t); d > 0 {
		us = uint64(d / 1000)
	}
	p.st.Lat.record(us)
}

// drop closes c's socket after a failure or a close. code is the close code
// received (0: none, -1: a setup failure). p.mu is held.
func (p *poller) drop(c *conn, code int, err error) {
	wasOpen := c.state == stOpen
	c.state = stClosed
	c.wmu.Lock()
	if !c.closed {
		c.closed = true
		p.w.table[c.fd].Store(nil)
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
		_ = syscall.Close(c.fd)
	}
	c.wbuf = nil
	c.wmu.Unlock()
	c.rbuf, c.frag = nil, nil
	if !c.setup {
		p.w.finishSetup(c, err)
		return
	}
	if wasOpen || code >= 0 {
		if p.st.Closes == nil {
			p.st.Closes = map[int]uint64{}
		}
		p.st.Closes[max(code, 0)]++
		c.droppedAt.Store(time.Now().UnixNano())
	}
	p.w.scheduleReconnect(c)
}

// write sends b, queueing what the socket does not take. It reports false
// when the connection is closed. Safe for concurrent use.
func (c *conn) write(b []byte) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return false
	}
	if len(c.wbuf) > 0 {
		c.wbuf = append(c.wbuf, b...)
		return true
	}
	for len(b) > 0 {
		n, err := syscall.Write(c.fd, b)
		if n > 0 {
			b = b[n:]
			continue
		}
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			c.wbuf = append(c.wbuf, b...)
			ev := syscall.EpollEvent{Events: epollInOut, Fd: int32(c.fd)}
			_ = syscall.EpollCtl(c.p.epfd, syscall.EPOLL_CTL_MOD, c.fd, &ev)
			return true
		}
		// The reader sees the failure and drops the connection.
		return true
	}
	return true
}

// flush writes queued bytes once the socket is writable again.
func (c *conn) flush() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for len(c.wbuf) > 0 && !c.closed {
		n, err := syscall.Write(c.fd, c.wbuf)
		if n > 0 {
			c.wbuf = c.wbuf[n:]
			continue
		}
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			return
		}
		c.wbuf = nil
	}
	c.wbuf = nil
	if !c.closed {
		ev := syscall.EpollEvent{Events: epollIn, Fd: int32(c.fd)}
		_ = syscall.EpollCtl(c.p.epfd, syscall.EPOLL_CTL_MOD, c.fd, &ev)
	}
}

// frame returns a masked client frame with the given opcode and payload.
func frame(op byte, payload []byte) []byte {
	n := len(payload)
	b := make([]byte, 0, n+14)
	b = append(b, 0x80|op)
	switch {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], rand.Uint32())
	b = append(b, key[:]...)
	start := len(b)
	b = append(b, payload...)
	maskBytes(b[start:], key[:])
	return b
}

func maskBytes(b, key []byte) {
	for i := range b {
		b[i] ^= key[i&3]
	}
}

// checkUpgrade verifies the server's answer to the upgrade request.
func checkUpgrade(head []byte, key string) error {
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 101")) {
		return fmt.Errorf("upgrade refused: %.80s", line)
	}
	h := sha1.Sum([]byte(key + wsGUID))
	want := base64.StdEncoding.EncodeToString(h[:])
	for _, l := range bytes.Split(rest, []byte("\r\n")) {
		k, v, ok := bytes.Cut(l, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("Sec-WebSocket-Accept")) {
			if string(bytes.TrimSpace(v)) != want {
				return errors.New("upgrade: bad Sec-WebSocket-Accept")
			}
			return nil
		}
	}
	return errors.New("upgrade: no Sec-WebSocket-Accept")
}

// numberAfter parses the unsigned integer that follows the first occurrence
// of key in m.
func numberAfter(m []byte, key string) (uint64, bool) {
	i := bytes.Index(m, []byte(key))
	if i < 0 {
		return 0, false
	}
	var v uint64
	j := i + len(key)
	start := j
	for ; j < len(m) && m[j] >= '0' && m[j] <= '9'; j++ {
		v = v*10 + uint64(m[j]-'0')
	}
	return v, j > start
}

// stringAfter returns the characters that follow key in m up to the next
// double quote (the values it reads hold no escapes).
func stringAfter(m []byte, key string) (string, bool) {
	i := bytes.Index(m, []byte(key))
	if i < 0 {
		return "", false
	}
	rest := m[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return "", false
	}
	return string(rest[:j]), true
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
