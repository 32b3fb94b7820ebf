package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"hash/maphash"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// The API stream (GET /api/stream) is the server API over one WebSocket: a
// backend that publishes a lot keeps a connection open and sends its calls
// as text frames, {"id":N,"method":"publish","params":{...}}, without
// waiting for each answer. Every call is answered by a frame
// {"id":N,"result":...} or {"id":N,"error":{"code","message"}}, in the
// order the calls finish. Calls that name a channel run in the order they
// were sent, per channel; the others may run concurrently. What one read
// brings in is decoded at once, and the answers ready together go out in
// one write, so a busy stream spends a fraction of a system call per call
// where HTTP spends two (docs/protocol.md, "The API stream").

// streamLanes is how many calls of one stream run at once. A call goes to
// the lane of its channel, which keeps one channel's calls in order.
const streamLanes = 8

// inlineBelow: while calls take less than this on average, the reader
// runs a call itself when nothing of its lane is waiting, which spares a
// goroutine hand-off per call (a local broker's publish takes a few µs); a
// slower broker's calls go to the lanes, to run concurrently.
const inlineBelow = 30 * time.Microsecond

// streamLaneQueue is how many calls wait per lane before the stream stops
// reading (the backend's writes then block: backpressure, not loss).
const streamLaneQueue = 256

// Close codes of the API stream, besides the standard ones.
const (
	// streamCloseShutdown: the server is shutting down; reconnect.
	streamCloseShutdown = ws.StatusGoingAway
	// streamCloseBinary: a binary frame; the stream takes JSON text.
	streamCloseBinary = ws.StatusUnsupportedData
	// streamCloseTooBig: a frame over the API's body size limit.
	streamCloseTooBig = ws.StatusMessageTooBig
)

// streamCall is one decoded call of a stream.
type streamCall struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

// streamAnswer is the frame answering a call.
type streamAnswer struct {
	ID     json.RawMessage `json:"id"`
	Result any             `json:"result,omitempty"`
	Error  *protocol.Error `json:"error,omitempty"`
}

// apiStream is one open API stream.
type apiStream struct {
	a    *API
	nc   net.Conn
	ctx  context.Context
	stop context.CancelFunc
	seed maphash.Seed

	wmu sync.Mutex // held while writing to nc, and while taking answers to write

	pending [streamLanes]atomic.Int32 // calls handed to each lane and not yet run
	meanNs  atomic.Int64              // moving average of a call's duration

	mu      sync.Mutex
	answers [][]byte // encoded answers waiting for the writer
	wake    chan struct{}
	closed  bool
}

// streams tracks the open streams, to close them at shutdown.
type streams struct {
	mu     sync.Mutex
	open   map[*apiStream]struct{}
	closed bool
}

// CloseStreams closes every open API stream with close code 1001 (going
// away) and refuses new ones. The server calls it when it shuts down.
func (a *API) CloseStreams() {
	a.streams.mu.Lock()
	a.streams.closed = true
	open := make([]*apiStream, 0, len(a.streams.open))
	for s := range a.streams.open {
		open = append(open, s)
	}
	a.streams.mu.Unlock()
	for _, s := range open {
		s.closeWith(streamCloseShutdown, "server shutting down", true)
	}
}

// stream upgrades GET /api/stream to an API stream. The API key was
// checked by ServeHTTP, on the upgrade request.
func (a *API) stream(w http.ResponseWriter, r *http.Request) {
	if rec, ok := w.(*statusRecorder); ok {
		rec.status = http.StatusSwitchingProtocols
		w = rec.ResponseWriter
	}
	a.streams.mu.Lock()
	closed := a.streams.closed
	a.streams.mu.Unlock()
	if closed {
		writeError(w, http.StatusServiceUnavailable, protocol.ErrUnavailable.WithMessage("server shutting down"))
		return
	}
	up := ws.HTTPUpgrader{Timeout: 10 * time.Second}
	nc, rw, _, err := up.Upgrade(r, w)
	if err != nil {
		return // the upgrader answered the client
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &apiStream{a: a, nc: nc, ctx: ctx, stop: stop, seed: maphash.MakeSeed(), wake: make(chan struct{}, 1)}
	a.streams.mu.Lock()
	if a.streams.open == nil {
		a.streams.open = make(map[*apiStream]struct{})
	}
	a.streams.open[s] = struct{}{}
	a.streams.mu.Unlock()
	_ = nc.SetDeadline(time.Time{})
	br := rw.Reader
	if br.Buffered() == 0 { // a larger buffer: one read takes in many calls
		br = bufio.NewReaderSize(nc, 64<<10)
	}
	go s.serve(br)
}

// serve reads calls until the connection ends, with a writer and the
// lanes beside it.
func (s *apiStream) serve(br *bufio.Reader) {
	var lanes [streamLanes]chan streamCall
	var wg sync.WaitGroup
	for i := range lanes {
		lanes[i] = make(chan streamCall, streamLaneQueue)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range lanes[i] {
				s.run(c)
				s.pending[i].Add(-1)
			}
		}()
	}
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		s.writeLoop()
	}()
	code, reason := s.readLoop(br, lanes[:])
	for _, l := range lanes {
		close(l)
	}
	wg.Wait() // the calls read are answered before the close frame
	s.closeWith(code, reason, false)
	<-writerDone
	s.stop()
	// Read what the client still sends, for a while, before closing:
	// closing with unread input makes the kernel reset the connection,
	// and the client could lose the close frame that says why.
	if tc, ok := s.nc.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_ = s.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, _ = io.Copy(io.Discard, io.LimitReader(br, 16<<20))
	_ = s.nc.Close()
	s.a.streams.mu.Lock()
	delete(s.a.streams.open, s)
	s.a.streams.mu.Unlock()
}

// readLoop decodes calls and hands them to their lanes until the client
// closes or breaks the protocol; it returns the close code to answer with.
func (s *apiStream) readLoop(br *bufio.Reader, lanes []chan streamCall) (ws.StatusCode, string) {
	rd := &wsutil.Reader{Source: br, State: ws.StateServerSide, CheckUTF8: true, OnIntermediate: s.control}
	limit := s.a.opts.MaxBodySize
	for {
		hdr, err := rd.NextFrame()
		if err != nil {
			return ws.StatusNormalClosure, ""
		}
		if hdr.OpCode.IsControl() {
			if err := s.control(hdr, rd); err != nil {
				return ws.StatusNormalClosure, "" // a close frame: answered by closeWith
			}
			continue
		}
		if hdr.OpCode == ws.OpBinary {
			return streamCloseBinary, "the API stream takes JSON text frames"
		}
		if hdr.Length > limit {
			return streamCloseTooBig, "frame over " + strconv.FormatInt(limit, 10) + " bytes"
		}
		data, err := io.ReadAll(io.LimitReader(rd, limit+1))
		if err != nil {
			if errors.Is(err, wsutil.ErrInvalidUTF8) {
				return ws.StatusInvalidFramePayloadData, "invalid UTF-8"
			}
			return ws.StatusNormalClosure, ""
		}
		if int64(len(data)) > limit { // fragments add up past the limit
			return streamCloseTooBig, "message over " + strconv.FormatInt(limit, 10) + " bytes"
		}
		var c streamCall
		if err := json.Unmarshal(data, &c); err != nil {
			s.queue(streamAnswer{ID: json.RawMessage("null"), Error: protocol.ErrBadRequest.WithMessage("a call must be a JSON object: %s", protocol.JSONProblem(err))})
			continue
		}
		l := s.laneOf(c)
		if s.pending[l].Load() == 0 && s.meanNs.Load() < inlineBelow.Nanoseconds() {
			s.run(c) // nothing of its lane waits, and calls are quick: no hand-off
			continue
		}
		s.pending[l].Add(1)
		lanes[l] <- c
	}
}

// errPeerClosed ends the read loop when the client sends a close frame.
var errPeerClosed = errors.New("api stream: closed by the client")

// control handles a control frame: a ping is answered with a pong, a pong
// ignored, a close ends the stream (closeWith answers it).
func (s *apiStream) control(hdr ws.Header, r io.Reader) error {
	payload, err := io.ReadAll(io.LimitReader(r, 125))
	if err != nil {
		return err
	}
	switch hdr.OpCode {
	case ws.OpPing:
		s.wmu.Lock()
		_ = s.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		err = ws.WriteFrame(s.nc, ws.NewPongFrame(payload))
		s.wmu.Unlock()
		return err
	case ws.OpClose:
		return errPeerClosed
	}
	return nil
}

// laneOf returns the lane of a call: its channel's, or lane 0 for calls
// without one.
func (s *apiStream) laneOf(c streamCall) int {
	var p struct {
		Channel string `json:"channel"`
	}
	if len(c.Params) == 0 || json.Unmarshal(c.Params, &p) != nil || p.Channel == "" {
		return 0
	}
	return int(maphash.String(s.seed, p.Channel) % streamLanes)
}

// run answers a call and updates the mean call duration.
func (s *apiStream) run(c streamCall) {
	start := time.Now()
	s.answer(c)
	d := time.Since(start).Nanoseconds()
	old := s.meanNs.Load()
	s.meanNs.Store(old + (d-old)/8) // racy between lanes, which is fine for a hint
}

// answer runs a call and queues its answer. A call without an id is a
// notification: it is answered only when it fails (with "id":null), which
// spares the stream a write per call when the backend does not need the
// results.
func (s *apiStream) answer(c streamCall) {
	id := c.ID
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	m, ok := s.a.methods[c.Method]
	if !ok {
		s.queue(streamAnswer{ID: id, Error: protocol.ErrUnknownCommand.WithMessage("no API method %q", c.Method)})
		return
	}
	params := []byte(c.Params)
	if len(params) == 0 {
		params = []byte("{}")
	}
	res, perr := m(s.ctx, params)
	if perr == nil && len(c.ID) == 0 {
		return
	}
	s.queue(streamAnswer{ID: id, Result: res, Error: perr})
}

// queue encodes an answer for the writer.
func (s *apiStream) queue(ans streamAnswer) {
	var b []byte
	if raw, ok := ans.Result.(rawResult); ok && ans.Error == nil {
		b = append(append(append(append(append(b, `{"id":`...), ans.ID...), `,"result":`...), raw...), '}')
	} else {
		var err error
		if b, err = json.Marshal(ans); err != nil {
			b, _ = json.Marshal(streamAnswer{ID: ans.ID, Error: protocol.ErrInternal.WithMessage("cannot encode the result")})
		}
	}
	s.mu.Lock()
	if !s.closed {
		s.answers = append(s.answers, b)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// writeLoop writes the answers as they come, all that are ready in one
// write, until the stream closes.
func (s *apiStream) writeLoop() {
	var buf []byte
	for {
		select {
		case <-s.wake:
		case <-s.ctx.Done():
			return
		}
		s.wmu.Lock() // before taking the batch: closeWith writes after it
		s.mu.Lock()
		batch := s.answers
		s.answers = nil
		s.mu.Unlock()
		buf = buf[:0]
		for _, b := range batch {
			buf = appendTextFrame(buf, b)
		}
		var err error
		if len(buf) > 0 {
			_ = s.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			_, err = s.nc.Write(buf)
		}
		s.wmu.Unlock()
		if err != nil {
			s.stop() // a backend that takes no answers: the stream ends
			_ = s.nc.Close()
			return
		}
	}
}

// closeWith writes whatever answers are queued and a close frame, then
// stops the writer; hard closes the connection too (at shutdown, while
// the read loop still runs). Only the first call has an effect.
func (s *apiStream) closeWith(code ws.StatusCode, reason string, hard bool) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	batch := s.answers
	s.answers = nil
	s.mu.Unlock()
	s.stop() // the writer exits; what it had not written is in batch
	var buf []byte
	for _, b := range batch {
		buf = appendTextFrame(buf, b)
	}
	buf = append(buf, ws.MustCompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, reason)))...)
	_ = s.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = s.nc.Write(buf)
	if hard {
		_ = s.nc.Close()
	}
}

// appendTextFrame appends an unmasked, unfragmented text frame of payload.
func appendTextFrame(buf, payload []byte) []byte {
	n := len(payload)
	buf = append(buf, 0x81)
	switch {
	case n < 126:
		buf = append(buf, byte(n))
	case n <= 0xFFFF:
		buf = append(buf, 126, byte(n>>8), byte(n))
	default:
		buf = append(buf, 127, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(buf, payload...)
}
