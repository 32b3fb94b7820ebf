// Package websocket serves Switchboard's protocol over WebSocket (RFC 6455),
// JSON in text frames by default, or its binary form (package pb) in
// binary frames for clients that negotiate the subprotocol
// "switchboard.v1.protobuf": the upgrade on net/http, frame parsing, the writer that frames
// a session's queued messages and coalesces them into few socket writes,
// server pings, idle timeouts and close codes.
//
// Framing uses github.com/gobwas/ws, a low-level library that lets the
// server frame each message itself. Frames are parsed from a byte buffer
// (conn.process), so one parser serves both readers: the event-loop reader
// (Linux, the default there; see epoll_linux.go), with which an idle
// connection holds no goroutine and no buffer, and a portable reader with a
// goroutine per connection.
package websocket

import (
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/jonboulle/clockwork"

	"github.com/switchboardhq/switchboard/internal/httpx"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/origin"
	"github.com/switchboardhq/switchboard/internal/protocol"
	"github.com/switchboardhq/switchboard/internal/protocol/pb"
	"github.com/switchboardhq/switchboard/internal/proxy"
	"github.com/switchboardhq/switchboard/internal/wheel"
)

// Options configure the WebSocket endpoint. Zero fields take the defaults
// documented on them.
type Options struct {
	// MaxMessageSize is the largest message a client may send, in bytes; a
	// larger one closes the connection with 1009. Default 65536.
	MaxMessageSize int
	// PingInterval is how often the server pings each connection. Default 25s.
	PingInterval time.Duration
	// IdleTimeout closes a connection from which nothing (not even a pong)
	// was received for this long, with 4002. Default 60s.
	IdleTimeout time.Duration
	// WriteTimeout bounds one socket write; a client that does not take
	// its data within it is closed with 4004. Default 10s.
	WriteTimeout time.Duration
	// Guard checks each upgrade's Host and Origin before anything else
	// (allowed_hosts, allowed_origins) and logs refusals; the server shares
	// one among its endpoints. Allowing any origin ("*") exposes the
	// endpoint to cross-site WebSocket hijacking when cookies are used for
	// authentication. Requests without an Origin header (not from a
	// browser) are allowed. Default: a Guard that allows same-origin and
	// non-browser requests to loopback names and IP addresses only.
	Guard *origin.Guard
	// Logger receives the endpoint's logs. Default slog.Default().
	Logger *slog.Logger
	// Reader selects how connections are read: ReaderEpoll ("epoll", Linux
	// only) watches all sockets from one shared goroutine and reads them on
	// a small pool of workers, so an idle connection holds no goroutine and
	// no buffer; ReaderGoroutine ("goroutine") reads each connection on a
	// goroutine of its own, which costs at least 4 KiB of stack per
	// connection. Default DefaultReader: "epoll" on Linux, "goroutine"
	// elsewhere. See CheckReader.
	Reader string
	// Compression offers permessage-deflate (RFC 7692) to clients that ask
	// for it, always with no context takeover in both directions, so that
	// each message is compressed on its own: a publication is compressed
	// once and the same bytes go to every subscriber that negotiated it.
	// Default false.
	Compression bool
	// CompressionMinSize is the size below which a message is sent
	// uncompressed. Default 0 (compress all); the server passes 256.
	CompressionMinSize int
	// CompressionLevel is the deflate level, 1 to 9. Default 1.
	CompressionLevel int
	// Metrics, when set, counts compressed messages.
	Metrics *metrics.Metrics
	// Clock is the time source of pings, idle timeouts and the event loop's
	// worker pool. Default: the real clock; tests pass a fake one. Socket
	// deadlines (WriteTimeout, the close grace period) always use real
	// time, since the kernel enforces them.
	Clock clockwork.Clock
}

// The values of Options.Reader.
const (
	ReaderEpoll     = "epoll"
	ReaderGoroutine = "goroutine"
)

// DefaultReader is the reader used when Options.Reader is empty.
const DefaultReader = defaultReader

// CheckReader returns an error unless name is a reader this build can use,
// or empty (the default).
func CheckReader(name string) error {
	switch name {
	case "", ReaderGoroutine:
		return nil
	case ReaderEpoll:
		if epollSupported {
			return nil
		}
		return errors.New(`websocket: reader "epoll" is only available on Linux`)
	}
	return fmt.Errorf(`websocket: unknown reader %q (want "epoll" or "goroutine")`, name)
}

func (o *Options) setDefaults() {
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = 65536
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 25 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 60 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	httpx.Defaults(&o.Logger, &o.Guard)
	if o.CompressionLevel < flate.BestSpeed || o.CompressionLevel > flate.BestCompression {
		o.CompressionLevel = flate.BestSpeed
	}
	if o.Reader == "" {
		o.Reader = DefaultReader
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
}

// Handler is the http.Handler of the WebSocket endpoint.
type Handler struct {
	hub  *hub.Hub
	opts Options
	log  *slog.Logger
	ka   *keepalive
	pong []byte        // an empty pong frame
	ep   *poller       // the event loop, nil with the goroutine reader
	zc   *deflateCache // compressed publications, nil without Options.Compression
	pbc  sharedCache   // publications in the binary protocol's encoding
}

// NewHandler returns the endpoint's handler. Call Close to stop its pinger
// and event loop. An Options.Reader that CheckReader rejects is logged and
// replaced by the goroutine reader.
func NewHandler(h *hub.Hub, opts Options) *Handler {
	opts.setDefaults()
	hd := &Handler{
		hub:  h,
		opts: opts,
		log:  opts.Logger.With("component", "websocket"),
		pong: ws.MustCompileFrame(ws.NewPongFrame(nil)),
	}
	hd.pbc.init(encodeBinary)
	if err := CheckReader(opts.Reader); err != nil {
		hd.log.Warn("using the goroutine reader", "err", err)
		hd.opts.Reader = ReaderGoroutine
	}
	if hd.opts.Compression {
		hd.zc = newDeflateCache(hd.opts.CompressionLevel)
		if m := opts.Metrics; m != nil {
			hd.zc.sent, hd.zc.received, hd.zc.saved = m.Compressed.WithLabelValues("sent"), m.Compressed.WithLabelValues("received"), m.CompressionSaved
		}
	}
	if hd.opts.Reader == ReaderEpoll {
		p, err := newPoller(hd.log, hd.opts.Clock)
		if err != nil {
			hd.log.Warn("event loop unavailable, using the goroutine reader", "err", err)
			hd.opts.Reader = ReaderGoroutine
		} else {
			hd.ep = p
		}
	}
	hd.ka = newKeepalive(hd.opts.Clock, opts.PingInterval, opts.IdleTimeout)
	return hd
}

// Close stops the handler's keepalive goroutine and refuses new connections
// to its event loop. Open connections are closed by the hub's Shutdown; the
// event loop ends by itself once the last one is gone (at most closeGrace
// after its close frame), as the goroutine reader's goroutines do.
func (hd *Handler) Close() {
	hd.ka.stop()
	if hd.ep != nil {
		hd.ep.stop()
	}
}

// ServeHTTP upgrades the request to a WebSocket and starts serving it.
func (hd *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if hd.hub.Draining() {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	if !hd.opts.Guard.Check(w, r) {
		return // refused with 421 (Host) or 403 (Origin)
	}
	// A connection token may come with the handshake ("?token=" or
	// "Authorization: Bearer"), instead of in the connect command. A bad one
	// is refused before the upgrade.
	var creds *hub.Credentials
	if tok := handshakeToken(r); tok != "" {
		c, perr := hd.hub.Authenticate(tok)
		if perr != nil {
			status := http.StatusUnauthorized
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			b := append([]byte(`{"error":`), protocol.AppendErrorObject(nil, perr)...)
			_, _ = w.Write(append(b, "}\n"...))
			return
		}
		creds = c
	}
	up := ws.HTTPUpgrader{Timeout: hd.opts.WriteTimeout, Protocol: knownSubprotocol}
	var neg *negotiator
	if hd.zc != nil {
		neg = newNegotiator()
		up.Negotiate = neg.negotiate
	}
	nc, rw, hs, err := up.Upgrade(r, w)
	if err != nil {
		// The upgrader has already answered with an HTTP error.
		hd.log.Debug("upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	c := &conn{hd: hd, nc: nc, deflate: neg != nil && neg.accepted(), binary: hs.Protocol == pb.Subprotocol}
	// Bytes the client sent right behind its handshake sit in the hijacked
	// reader; take them over so the reader can drop it.
	var pre []byte
	if n := rw.Reader.Buffered(); n > 0 {
		b, _ := rw.Reader.Peek(n)
		pre = append([]byte(nil), b...)
	}
	// The event loop takes the connection before the session exists (and
	// could close it): whether it is polled is fixed from here on.
	polled := hd.ep != nil && hd.ep.register(c, pre)
	// Headers are kept for the connect hook only when one is configured
	// (PassHeaders is nil otherwise), and only those it may see.
	c.sess = hd.hub.NewSession(c, hub.SessionInfo{RemoteAddr: r.RemoteAddr, Credentials: creds, Headers: proxy.PickHeaders(r.Header, hd.hub.PassHeaders())})
	c.touch()
	hd.ka.add(c)
	if polled {
		// A worker takes the first batch: pre, and what followed it.
		hd.ep.submit(c)
		return
	}
	// A fresh goroutine with a small stack serves the connection, so the
	// net/http goroutine (and its grown stack) ends here.
	go c.readLoop(pre)
}

// encodeBinary encodes a JSON protocol message in the binary protocol,
// in one allocation: the binary form is never longer than the JSON but for
// a few bytes of field headers.
func encodeBinary(msg []byte) []byte { return pb.AppendReply(make([]byte, 0, len(msg)+16), msg) }

// SubprotocolJSON names the JSON protocol, the default when a client asks
// for no subprotocol.
const SubprotocolJSON = "switchboard.v1.json"

// knownSubprotocol selects, among the subprotocols a client offers, the
// first the server speaks: the JSON protocol or its binary form. A client
// that offers none gets the JSON protocol and no Sec-WebSocket-Protocol.
func knownSubprotocol(p string) bool { return p == SubprotocolJSON || p == pb.Subprotocol }

// handshakeToken returns the connection token of an upgrade request: the
// Authorization header's bearer token, else the token query parameter.
func handshakeToken(r *http.Request) string {
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return r.URL.Query().Get("token")
}

// conn is one WebSocket connection; it implements hub.Transport.
type conn struct {
	hd   *Handler
	nc   net.Conn
	sess *hub.Session

	deflate bool // permessage-deflate was negotiated
	binary  bool // the binary protocol (pb.Subprotocol) was negotiated: binary frames both ways

	lastRead atomic.Int64 // unix milliseconds (Options.Clock) of the last frame received
	kaSlot   wheel.Slot   // guarded by the keepalive wheel's lock

	// Owned by the session's writer:
	broken bool    // a write failed, possibly mid-frame: no close frame can follow
	owed   *[]byte // what a direct write could not put in the socket buffer, written first next time

	// Owned by the reader:
	frag      []byte // a fragmented message being assembled
	fragValid int    // frag[:fragValid] is checked to be complete UTF-8
	fragging  bool
	fragZ     bool // the fragmented message is compressed

	mu         sync.Mutex // guards readerDone, closeSent, peerCode and parts of ep
	readerDone bool
	closeSent  bool
	peerCode   uint16 // the code of the client's valid close frame, echoed by Close

	ep epConn // the event loop's state; unused by the goroutine reader
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// Name implements hub.Transport.
func (c *conn) Name() string { return "websocket" }

// WriteMessages implements hub.Transport: it frames every message into one
// buffer, after any bytes a direct write left owed, and writes it with one
// call.
func (c *conn) WriteMessages(msgs []hub.Message) error {
	bp := bufPool.Get().(*[]byte)
	buf := (*bp)[:0]
	if c.owed != nil {
		buf = append(buf, *c.owed...)
		c.owed = nil
	}
	buf = c.frameAll(buf, msgs)
	rest := buf
	var err error
	if c.ep.polled() {
		// A non-blocking write first: it usually takes everything, and
		// then needs neither a deadline (a timer) nor the poller.
		var n int
		n, err = writeNow(c.ep.rc, rest)
		rest = rest[n:]
	}
	if err == nil && len(rest) > 0 {
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.hd.opts.WriteTimeout))
		_, err = c.nc.Write(rest)
	}
	putBuf(bp, buf)
	if err != nil {
		c.broken = true
		return transportErr(err)
	}
	return nil
}

// putBuf gives a write buffer back to the pool, unless it grew too large
// to keep.
func putBuf(bp *[]byte, buf []byte) {
	if cap(buf) <= 256<<10 {
		*bp = buf[:0]
		bufPool.Put(bp)
	}
}

// transportErr is a failed write's error as the hub wants it:
// hub.ErrTransportClosed when the connection was already closed.
func transportErr(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return hub.ErrTransportClosed
	}
	return err
}

// frameAll appends every message of msgs to buf as a frame, and counts
// the compressed ones.
func (c *conn) frameAll(buf []byte, msgs []hub.Message) []byte {
	var nz, saved int // messages compressed, bytes that saved
	for _, m := range msgs {
		var z bool
		var sv int
		buf, z, sv = c.appendFrame(buf, m)
		if z {
			nz, saved = nz+1, saved+sv
		}
	}
	if nz > 0 {
		c.hd.zc.count(nz, saved)
	}
	return buf
}

// appendFrame appends m to buf as one frame: control bytes as they are;
// a message as a text frame, or in the binary protocol's encoding as a
// binary frame, compressed when that was negotiated and pays. A
// publication (m.At != 0) is shared by its subscribers, and so are its
// encoded and compressed forms, each made once (sharedCache). It reports
// whether the frame is compressed, and the bytes that saved.
func (c *conn) appendFrame(buf []byte, m hub.Message) (out []byte, isCompressed bool, saved int) {
	if m.Control {
		return append(buf, m.Data...), false, 0
	}
	op, data := ws.OpText, m.Data
	if c.binary {
		op = ws.OpBinary
		if m.At != 0 {
			data = c.hd.pbc.get(m.Data)
		} else { // a reply, for this connection alone
			data = encodeBinary(m.Data)
		}
	}
	if c.deflate && len(data) >= c.hd.opts.CompressionMinSize {
		var z []byte
		if m.At != 0 {
			z = c.hd.zc.get(data)
		} else {
			z = compressed(data, c.hd.opts.CompressionLevel)
		}
		if z != nil {
			buf = appendHeader(buf, op, true, len(z))
			return append(buf, z...), true, len(data) - len(z)
		}
	}
	buf = appendHeader(buf, op, false, len(data))
	return append(buf, data...), false, 0
}

// rsv1 is the first reserved bit of a frame's first byte: with
// permessage-deflate, it marks a compressed message (RFC 7692 section 6).
const rsv1 = 0x40

// appendHeader appends an unmasked, final frame header, with RSV1 set
// when compressed.
func appendHeader(dst []byte, op ws.OpCode, compressed bool, n int) []byte {
	// RFC 6455 section 5.2: FIN and the opcode, then the payload length in
	// 7 bits, or 126 and 16 bits, or 127 and 64 bits; a server's frames are
	// not masked. Written by hand because it runs once per delivery and the
	// library's io.Writer form allocates.
	b0 := 0x80 | byte(op)
	if compressed {
		b0 |= rsv1
	}
	dst = append(dst, b0)
	switch {
	case n < 126:
		return append(dst, byte(n))
	case n <= 0xffff:
		return append(dst, 126, byte(n>>8), byte(n))
	default:
		return binary.BigEndian.AppendUint64(append(dst, 127), uint64(n))
	}
}

var errBroken = errors.New("websocket: connection broken by a failed write")

// closeGrace is how long the server waits for the client to answer its close
// frame before it drops the TCP connection.
const closeGrace = 2 * time.Second

// Close implements hub.Transport: it sends a close frame with d (or with the
// client's own code when the client closed first), half-closes the TCP
// connection, and lets the reader drain the client's answer.
func (c *conn) Close(d protocol.Disconnect) error {
	c.hd.ka.remove(c)
	c.mu.Lock()
	if c.peerCode != 0 && d == protocol.DisconnectNormal {
		// The session ends because the client closed (Session.PeerGone):
		// echo its code, as RFC 6455 section 5.5.1 suggests. A close the
		// server had started already keeps its own code.
		d = protocol.Disconnect{Code: c.peerCode}
	}
	c.mu.Unlock()
	var werr error
	if c.broken {
		werr = errBroken
	} else {
		body := ws.NewCloseFrameBody(ws.StatusCode(d.Code), d.Reason)
		_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, werr = c.nc.Write(ws.MustCompileFrame(ws.NewCloseFrame(body)))
	}
	c.mu.Lock()
	c.closeSent = true
	done := c.readerDone
	c.mu.Unlock()
	if done || werr != nil {
		err := c.nc.Close()
		if !done && c.ep.polled() {
			// A closed socket reports no more events: end the reader here.
			c.stopReading()
		}
		return err
	}
	if tc, ok := c.nc.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	if c.ep.polled() {
		// Raw reads have no deadline: a timer ends the drain instead.
		c.startGrace(closeGrace)
		return nil
	}
	return c.nc.SetReadDeadline(time.Now().Add(closeGrace))
}

// touch records that something arrived from the client.
func (c *conn) touch() { c.lastRead.Store(c.hd.opts.Clock.Now().UnixMilli()) }

// readLoop reads frames until the connection fails or closes.
func (c *conn) readLoop(pre []byte) {
	buf := make([]byte, 0, 512)
	buf = append(buf, pre...)
	var err error
	for {
		var consumed, need int
		var d *protocol.Disconnect
		consumed, need, d = c.process(buf)
		if d != nil {
			c.end(d)
			c.drain(buf[:cap(buf)])
			break
		}
		buf = buf[:copy(buf, buf[consumed:])]
		if need > cap(buf) {
			nb := make([]byte, len(buf), need)
			copy(nb, buf)
			buf = nb
		} else if len(buf) == cap(buf) {
			nb := make([]byte, len(buf), 2*cap(buf))
			copy(nb, buf)
			buf = nb
		}
		if err != nil {
			break
		}
		var n int
		n, err = c.nc.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > 4096 && len(buf) < cap(buf)/4 {
			// Shrink after a large message so an idle connection keeps little.
			buf = append(make([]byte, 0, max(512, len(buf))), buf...)
		}
	}
	c.readerExit()
}

// drain discards what the client still sends until it closes or the close
// grace period set by Close passes, so that the close frame is not lost to a
// TCP reset caused by unread data.
func (c *conn) drain(scratch []byte) {
	for {
		if _, err := c.nc.Read(scratch); err != nil {
			return
		}
	}
}

// readerExit closes the connection once both the reader is done and the
// close frame is sent (or the peer is gone).
func (c *conn) readerExit() {
	c.mu.Lock()
	c.readerDone = true
	sent := c.closeSent
	if c.ep.grace != nil {
		c.ep.grace.Stop()
		c.ep.grace = nil
	}
	c.mu.Unlock()
	if sent {
		_ = c.nc.Close()
		return
	}
	c.sess.PeerGone()
}
