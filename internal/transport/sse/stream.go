package sse

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/protocol"
	"github.com/switchboardhq/switchboard/internal/wheel"
)

// stream is one SSE response: the hub.Transport of one session. Besides
// writing, it keeps the position of every channel of the stream, so that
// each event id covers all of them.
//
// The response starts (begin) once every channel is subscribed, so that the
// connected event can say exactly where each channel starts. What the
// session's writer hands over before that (recovered publications, notices)
// is kept and written after the connected event, in order.
type stream struct {
	h        *Handler
	w        http.ResponseWriter
	rc       *http.ResponseController
	sess     *hub.Session // set once, before any message can be queued
	channels []string
	index    map[string]int // channel name -> position in channels

	// Guarded by mu, which is held while writing to w. ServeHTTP writes the
	// preamble (begin); the session's writer goroutine writes the rest.
	mu         sync.Mutex
	offsets    []uint64      // per channel: the last offset written (or the start)
	epochs     []string      // per channel: the epoch the offsets belong to
	check      uint32        // protocol.CursorCheck(channels, epochs)
	started    bool          // begin wrote the response header and preamble
	early      []hub.Message // handed over before begin, written by it
	earlyBytes int           // the size of early's data
	closed     bool          // Close ran: nothing more may be written
	broken     bool          // a write failed
	buf        []byte        // reused between writes

	// resets holds the new position of a channel whose unrecovered event is
	// queued but not yet written. Guarded by resetMu, which is taken under
	// the session's lock and so is never held while writing.
	resetMu sync.Mutex
	resets  map[string]broker.Position

	hbSlot wheel.Slot // heartbeat place, guarded by the heartbeat wheel's lock

	done chan struct{} // closed by Close
}

var _ hub.Transport = (*stream)(nil)

func newStream(h *Handler, w http.ResponseWriter, channels []string) *stream {
	st := &stream{
		h:        h,
		w:        w,
		rc:       http.NewResponseController(w),
		channels: channels,
		index:    make(map[string]int, len(channels)),
		offsets:  make([]uint64, len(channels)),
		epochs:   make([]string, len(channels)),
		done:     make(chan struct{}),
	}
	for i, ch := range channels {
		st.index[ch] = i
	}
	return st
}

// Name implements hub.Transport.
func (st *stream) Name() string { return "sse" }

var _ hub.FixedChannels = (*stream)(nil)

// FixedChannels implements hub.FixedChannels: a stream's channels are
// those of its URL, which its event ids cover; server-side subscriptions
// leave it alone.
func (st *stream) FixedChannels() {}

// errClosed reports a write to a stream that was already closed.
var errClosed = errors.New("sse: stream closed")

// Bounds of what a stream keeps before it starts: a subscribe that takes
// long enough to pile up more than this is given up (the client retries).
const (
	maxEarlyMessages = 4096
	maxEarlyBytes    = 1 << 20
)

// errEarlyOverflow reports a stream that could not start in time.
var errEarlyOverflow = errors.New("sse: too much queued before the stream started")

// begin starts the response: the header, then preamble (whose ids cover
// start), then what the writer handed over so far. The channels' positions
// are start from then on. It fails with errClosed when the session closed
// before: the response is untouched then.
func (st *stream) begin(preamble []byte, start []broker.Position) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return errClosed
	}
	for i, p := range start {
		st.offsets[i], st.epochs[i] = p.Offset, p.Epoch
	}
	st.check = protocol.CursorCheck(st.channels, st.epochs)
	h := st.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	st.started = true
	st.w.WriteHeader(http.StatusOK)
	b := preamble
	for i := range st.early {
		b = st.appendMessage(b, &st.early[i])
	}
	st.early, st.earlyBytes = nil, 0
	return st.writeLocked(b)
}

// WriteMessages implements hub.Transport: it renders msgs as events into one
// buffer, writes it and flushes. Before the stream has begun it keeps them.
func (st *stream) WriteMessages(msgs []hub.Message) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed || st.broken {
		return hub.ErrTransportClosed
	}
	if !st.started {
		for _, m := range msgs {
			st.earlyBytes += len(m.Data)
		}
		st.early = append(st.early, msgs...) // Data is never modified: no copy
		if len(st.early) > maxEarlyMessages || st.earlyBytes > maxEarlyBytes {
			return errEarlyOverflow
		}
		return nil
	}
	b := st.buf[:0]
	for i := range msgs {
		b = st.appendMessage(b, &msgs[i])
	}
	err := st.writeLocked(b)
	if cap(b) <= 64<<10 { // keep a modest buffer, drop a huge one
		st.buf = b[:0]
	} else {
		st.buf = nil
	}
	return err
}

// writeLocked writes b and flushes it within the write timeout. st.mu must
// be held.
func (st *stream) writeLocked(b []byte) error {
	// Not every ResponseWriter supports deadlines (HTTP/2 before Go 1.20,
	// some wrappers); the write is then bounded by the server's timeouts.
	_ = st.rc.SetWriteDeadline(time.Now().Add(st.h.opts.WriteTimeout))
	if _, err := st.w.Write(b); err != nil {
		st.broken = true
		return fmt.Errorf("sse: write: %w", err)
	}
	if err := st.rc.Flush(); err != nil {
		st.broken = true
		return fmt.Errorf("sse: flush: %w", err)
	}
	return nil
}

// appendMessage renders one queued message. st.mu must be held.
func (st *stream) appendMessage(b []byte, m *hub.Message) []byte {
	switch {
	case m.Control && m.Channel == "":
		// A heartbeat: bytes prepared by the transport.
		return append(b, m.Data...)
	case m.Control:
		// An unrecovered notice from the subscribe hook: the channel
		// continues from a new position, which the id must cover.
		st.resetMu.Lock()
		pos, ok := st.resets[m.Channel]
		delete(st.resets, m.Channel)
		st.resetMu.Unlock()
		if i, known := st.index[m.Channel]; ok && known {
			st.offsets[i] = pos.Offset
			st.epochs[i] = pos.Epoch
			st.check = protocol.CursorCheck(st.channels, st.epochs)
		}
		b = append(b, "event: unrecovered\n"...)
		b = st.appendID(b)
		return appendData(b, m.Data)
	case m.Offset == 0 && m.Epoch != "":
		// A reset push: the channel's history was lost while subscribed
		// and its offsets start again in a new epoch. To the client it is
		// like a position that could not be recovered.
		if i, ok := st.index[m.Channel]; ok {
			st.offsets[i], st.epochs[i] = 0, m.Epoch
			st.check = protocol.CursorCheck(st.channels, st.epochs)
		}
		b = append(b, "event: unrecovered\n"...)
		b = st.appendID(b)
		return appendData(b, m.Data)
	case m.Offset > 0:
		// A publication: the default event type, so onmessage sees it.
		if i, ok := st.index[m.Channel]; ok {
			st.offsets[i] = max(st.offsets[i], m.Offset)
			b = st.appendID(b)
		}
		return appendData(b, m.Data)
	default:
		// A channel event (join, leave): named by its kind; no id, since
		// it moves no position.
		b = append(b, "event: "...)
		b = append(b, eventKind(m.Data, m.Channel)...)
		b = append(b, '\n')
		return appendData(b, m.Data)
	}
}

// appendID appends the id line covering every channel's position.
func (st *stream) appendID(b []byte) []byte {
	b = append(b, "id: "...)
	b = append(b, protocol.EncodeCursor(st.check, st.offsets)...)
	return append(b, '\n')
}

// appendData appends data as data lines and ends the event. An event's data
// cannot hold a line break, so JSON that has some (as whitespace: JSON
// strings escape theirs) is split into several data lines, which the browser
// joins with "\n": the same JSON value.
func appendData(b, data []byte) []byte {
	for {
		i := bytes.IndexAny(data, "\r\n")
		b = append(b, "data: "...)
		if i < 0 {
			b = append(b, data...)
			return append(b, "\n\n"...)
		}
		b = append(b, data[:i]...)
		b = append(b, '\n')
		data = data[i+1:]
	}
}

// eventKind returns the kind of a channel event push,
// {"channel":C,"<kind>":{...}}: the event type it is sent as ("join",
// "leave"). Anything else is sent as "event".
func eventKind(data []byte, channel string) string {
	prefix := len(`{"channel":"`) + len(channel) + len(`","`)
	if len(data) <= prefix {
		return "event"
	}
	rest := data[prefix:]
	end := bytes.IndexByte(rest, '"')
	if end <= 0 {
		return "event"
	}
	for _, c := range rest[:end] {
		if (c < 'a' || c > 'z') && c != '_' {
			return "event"
		}
	}
	return string(rest[:end])
}

// unrecoveredNotice is the data of an unrecovered event.
type unrecoveredNotice struct {
	Channel string `json:"channel"`
	Offset  uint64 `json:"offset"`
	Epoch   string `json:"epoch"`
}

// firstHook returns the subscribe hook of channel: when the subscription
// could not recover from the position the stream holds, it queues an
// unrecovered event (before anything else of the channel) and records the
// position the channel continues from, which the writer applies when it
// writes the event.
func (st *stream) firstHook(channel string) func(hub.SubscribeResult) []hub.Message {
	return func(res hub.SubscribeResult) []hub.Message {
		if res.Recovered {
			return nil
		}
		st.resetMu.Lock()
		if st.resets == nil {
			st.resets = make(map[string]broker.Position, 1)
		}
		st.resets[channel] = res.Position
		st.resetMu.Unlock()
		data, _ := json.Marshal(unrecoveredNotice{channel, res.Position.Offset, res.Position.Epoch})
		return []hub.Message{{Data: data, Control: true, Channel: channel}}
	}
}

// disconnectNotice is the data of a disconnect event.
type disconnectNotice struct {
	Code      uint16 `json:"code"`
	Reason    string `json:"reason"`
	Reconnect bool   `json:"reconnect"`
}

// announced reports whether a disconnect is sent as a disconnect event
// before the stream ends: when the client must not reconnect (4500 and up),
// and when EventSource's own reconnect cannot work: an expired token (4005)
// would be refused with 401, which stops EventSource for good without
// telling the page why.
func announced(d protocol.Disconnect) bool {
	return !d.Reconnect() || d.Code == protocol.DisconnectTokenExpired.Code
}

// Close implements hub.Transport. A disconnect that allows reconnecting just
// ends the response: EventSource reconnects by itself, with its
// Last-Event-ID. The others (see announced) are first sent as a disconnect
// event, so the client knows to close its EventSource.
func (st *stream) Close(d protocol.Disconnect) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.h.hb.remove(st)
	if st.closed {
		return nil
	}
	st.closed = true
	st.early = nil
	defer close(st.done)
	if !st.started || st.broken || !announced(d) {
		return nil
	}
	data, _ := json.Marshal(disconnectNotice{d.Code, d.Reason, d.Reconnect()})
	b := append([]byte("event: disconnect\n"), appendData(nil, data)...)
	return st.writeLocked(b)
}

// appendRetry appends the reconnection delay hint, in milliseconds.
func appendRetry(b []byte, d time.Duration) []byte {
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, d.Milliseconds(), 10)
	return append(b, "\n\n"...)
}
