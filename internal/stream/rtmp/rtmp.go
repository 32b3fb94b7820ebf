// Package rtmp is the RTMP ingest of live streams: encoders (OBS, ffmpeg)
// publish to rtmp://HOST:PORT/NAMESPACE/NAME?key=CREDENTIAL and the
// stream's access units go to the stream registry. H.264, H.265 (enhanced
// RTMP), AV1 and VP9 (enhanced RTMP) video and AAC and Opus (enhanced
// RTMP) audio are carried; other codecs in a publish are ignored. RTMP
// playback is not served: viewers use LL-HLS or WHEP.
//
// The protocol work (handshake, chunking, AMF, FLV tags) is done by
// github.com/bluenviron/gortmplib.
package rtmp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortmplib"

	"github.com/switchboardhq/switchboard/internal/stream"
)

// Options configure a Server.
type Options struct {
	// Registry receives the published streams. Required.
	Registry *stream.Registry
	// Authorizer checks the credential in the URL's "key" parameter.
	// Required.
	Authorizer *stream.Authorizer
	// HandshakeTimeout bounds the time from accepting a connection to its
	// first media (handshake, connect, publish, track headers). Default 10s.
	HandshakeTimeout time.Duration
	// ReadTimeout closes a publisher silent for this long. Default 10s.
	ReadTimeout time.Duration
	// MaxPending bounds the connections still in their handshake (not yet
	// publishing); one over it is closed at once, so that idle or slow
	// connections cannot pile up. Default 64.
	MaxPending int
	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
}

// Server accepts RTMP publishers. Create it with New, run it with Serve,
// stop it with Close.
type Server struct {
	opts Options
	log  *slog.Logger

	pending atomic.Int64 // connections not yet publishing

	mu     sync.Mutex // guards the fields below
	ln     net.Listener
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup // one per connection goroutine
}

// New returns a server.
func New(opts Options) *Server {
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 10 * time.Second
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = 10 * time.Second
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 64
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Server{opts: opts, log: opts.Logger.With("component", "rtmp"), conns: map[net.Conn]struct{}{}}
}

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("rtmp: server closed")

// Serve accepts connections on ln until Close; it returns ErrServerClosed
// then, or the listener's error.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	s.ln = ln
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("rtmp: accept: %w", err)
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer s.forget(c)
			s.handle(c)
		}()
	}
}

func (s *Server) forget(c net.Conn) {
	_ = c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Close stops accepting, closes every connection (their streams end) and
// waits for their goroutines until ctx is done. It is idempotent.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	if s.ln != nil {
		_ = s.ln.Close()
	}
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("rtmp: close: %w", ctx.Err())
	}
}

// handle runs one connection to its end.
func (s *Server) handle(c net.Conn) {
	log := s.log.With("remote", c.RemoteAddr().String())
	defer func() {
		// A panic of the protocol library on input it did not expect ends
		// this connection only (its stream ends by the deferred Close).
		if p := recover(); p != nil {
			log.Warn("rtmp connection failed on malformed input", "panic", p)
		}
	}()
	err := s.serveConn(c, log)
	switch {
	case err == nil, errors.Is(err, stream.ErrEnded):
		log.Debug("rtmp connection closed")
	case errors.Is(err, stream.ErrKicked), errors.Is(err, stream.ErrClosed):
		log.Info("rtmp publisher disconnected", "reason", err)
	default:
		log.Warn("rtmp connection refused or failed", "err", err)
	}
}

func (s *Server) serveConn(c net.Conn, log *slog.Logger) error {
	if s.pending.Add(1) > int64(s.opts.MaxPending) {
		s.pending.Add(-1)
		return fmt.Errorf("rtmp: more than %d connections in their handshake; closed", s.opts.MaxPending)
	}
	pending := true
	defer func() {
		if pending {
			s.pending.Add(-1)
		}
	}()
	_ = c.SetDeadline(time.Now().Add(s.opts.HandshakeTimeout))
	sc := &gortmplib.ServerConn{RW: c}
	if err := sc.Initialize(); err != nil {
		return fmt.Errorf("rtmp: handshake or connect: %w", err)
	}
	if err := sc.AcceptConn(); err != nil {
		return fmt.Errorf("rtmp: connect: %w", err)
	}
	path := strings.Trim(sc.URL.Path, "/")
	if !sc.Publish {
		_ = sc.RejectAction()
		return fmt.Errorf("rtmp: play %s refused: RTMP playback is not served, use LL-HLS or WHEP", path)
	}
	if err := s.admit(path, sc); err != nil {
		_ = sc.RejectAction()
		return err
	}
	rd := &gortmplib.Reader{Conn: sc}
	if err := rd.Initialize(); err != nil {
		return fmt.Errorf("rtmp: %s: reading the track headers: %w", path, err)
	}
	in, err := newIngest(rd)
	if err != nil {
		return fmt.Errorf("rtmp: %s: %w", path, err)
	}
	pub, err := s.opts.Registry.Publish(path, stream.PublisherInfo{Protocol: "rtmp", Remote: c.RemoteAddr().String()}, in.tracks)
	if err != nil {
		return err
	}
	defer pub.Close()
	s.pending.Add(-1)
	pending = false
	in.pub = pub
	stop := context.AfterFunc(doneContext(pub.Done()), func() { _ = c.Close() })
	defer stop()
	log.Info("rtmp publisher started", "path", path, "ignored", strings.Join(in.ignored, ","))
	for {
		_ = c.SetDeadline(time.Now().Add(s.opts.ReadTimeout))
		if err := read(rd); err != nil {
			if perr := pub.Err(); perr != nil {
				return perr
			}
			return fmt.Errorf("rtmp: %s: %w", path, err)
		}
		if in.err != nil {
			return in.err
		}
	}
}

// admit checks the path and the credential, and that the path is free.
func (s *Server) admit(path string, sc *gortmplib.ServerConn) error {
	if err := s.opts.Registry.CheckPath(path); err != nil {
		return err
	}
	cred := stream.ParseCredential(sc.URL.Query().Get("key"))
	if err := s.opts.Authorizer.Authorize(stream.ActionPublish, path, cred); err != nil {
		return fmt.Errorf("rtmp: publish %s: %w", path, err)
	}
	if _, err := s.opts.Registry.Get(path); err == nil {
		return fmt.Errorf("%w: %s", stream.ErrPublisherExists, path)
	}
	return nil
}

// doneContext returns a context cancelled when done closes.
func doneContext(done <-chan struct{}) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-done
		cancel()
	}()
	return ctx
}

// read reads one message. A panic in the library on input it did not
// expect (data for a track it did not announce) ends this connection only.
func read(rd *gortmplib.Reader) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed RTMP data: %v", p)
		}
	}()
	return rd.Read()
}
