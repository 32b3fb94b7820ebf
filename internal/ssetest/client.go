// Package ssetest is a small Server-Sent Events client for Switchboard's
// tests: it opens a stream over real HTTP, parses it the way a browser's
// EventSource does (line endings, fields, comments) and keeps the last event
// id as the browser would send it back, with bounded waits.
package ssetest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// DefaultTimeout bounds every wait of a Stream.
const DefaultTimeout = 10 * time.Second

// Event is one block of a stream, ended by a blank line. Blocks without data
// (a comment, a retry hint) are events too here, unlike in a browser, so
// that tests can see them.
type Event struct {
	// Type is the event field, or "" (the browser's "message").
	Type string
	// ID is the block's id field; HasID reports whether it had one.
	ID    string
	HasID bool
	// Data is the data lines joined with "\n".
	Data    string
	HasData bool
	// Retry is the block's retry field in milliseconds, or -1.
	Retry int
	// Comments are the block's comment lines, without the colon.
	Comments []string
}

// Stream is an open event stream. Its methods fail the test on error; the
// ...Err variants return it instead.
type Stream struct {
	t    testing.TB
	Resp *http.Response
	// LastEventID is the id a browser would send on reconnect: the last id
	// field read by Next so far.
	LastEventID string

	cancel    context.CancelFunc
	events    chan result
	done      chan struct{}
	closeOnce sync.Once
}

type result struct {
	ev  Event
	err error
}

// Open starts a stream with GET url and the given extra header (may be
// nil). It fails the test unless the answer is 200 text/event-stream.
func Open(t testing.TB, client *http.Client, url string, header http.Header) *Stream {
	t.Helper()
	s, resp, err := OpenErr(t, client, url, header)
	if err != nil {
		t.Fatalf("ssetest: open %s: %v", url, err)
	}
	if s == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("ssetest: open %s: status %d %q, content type %q", url, resp.StatusCode, body, resp.Header.Get("Content-Type"))
	}
	return s
}

// OpenErr starts a stream. When the answer is not 200 text/event-stream it
// returns a nil Stream and the response, whose body the caller reads and
// closes. A request the server drops without an answer is an error.
func OpenErr(t testing.TB, client *http.Client, url string, header http.Header) (*Stream, *http.Response, error) {
	if client == nil {
		client = http.DefaultClient
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("ssetest: %w", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	for k, vs := range header {
		req.Header[k] = vs
	}
	timer := time.AfterFunc(DefaultTimeout, cancel) // bounds waiting for the header
	resp, err := client.Do(req)
	if !timer.Stop() && err == nil {
		err = errors.New("timed out")
	}
	if err != nil {
		cancel()
		return nil, resp, fmt.Errorf("ssetest: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		// The body stays readable: cancel it only with the body.
		resp.Body = cancelOnClose{resp.Body, cancel}
		return nil, resp, nil
	}
	s := &Stream{t: t, Resp: resp, cancel: cancel, events: make(chan result), done: make(chan struct{})}
	go s.readLoop()
	t.Cleanup(s.Close)
	return s, resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// Close cuts the stream: the connection is closed, as when a browser tab
// goes away.
func (s *Stream) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.cancel()
		s.Resp.Body.Close()
	})
}

// Next returns the next block, failing the test on timeout or end.
func (s *Stream) Next() Event {
	s.t.Helper()
	ev, err := s.NextErr(DefaultTimeout)
	if err != nil {
		s.t.Fatalf("ssetest: next event: %v", err)
	}
	return ev
}

// NextErr returns the next block, io.EOF when the server ended the stream,
// or an error after timeout.
func (s *Stream) NextErr(timeout time.Duration) (Event, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r, ok := <-s.events:
		if !ok {
			return Event{}, io.EOF
		}
		if r.err != nil {
			return Event{}, r.err
		}
		if r.ev.HasID {
			s.LastEventID = r.ev.ID
		}
		return r.ev, nil
	case <-t.C:
		return Event{}, fmt.Errorf("ssetest: no event within %s", timeout)
	}
}

// NextData returns the next block that has data (an event a browser
// dispatches), skipping comments and retry hints.
func (s *Stream) NextData() Event {
	s.t.Helper()
	for {
		if ev := s.Next(); ev.HasData {
			return ev
		}
	}
}

// ExpectEnd waits for the server to end the stream, failing the test if
// an event with data comes first.
func (s *Stream) ExpectEnd() {
	s.t.Helper()
	for {
		ev, err := s.NextErr(DefaultTimeout)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			s.t.Fatalf("ssetest: waiting for the end of the stream: %v", err)
		}
		if ev.HasData {
			s.t.Fatalf("ssetest: want the end of the stream, got event %+v", ev)
		}
	}
}

func (s *Stream) readLoop() {
	defer close(s.events)
	sc := bufio.NewScanner(s.Resp.Body)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	sc.Split(scanLines)
	ev := Event{Retry: -1}
	seen := false
	send := func(r result) bool {
		select {
		case s.events <- r:
			return true
		case <-s.done:
			return false
		}
	}
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if seen && !send(result{ev: ev}) {
				return
			}
			ev, seen = Event{Retry: -1}, false
			continue
		}
		seen = true
		if c, ok := strings.CutPrefix(line, ":"); ok {
			ev.Comments = append(ev.Comments, strings.TrimPrefix(c, " "))
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "event":
			ev.Type = value
		case "data":
			if ev.HasData {
				ev.Data += "\n"
			}
			ev.Data += value
			ev.HasData = true
		case "id":
			if !strings.ContainsRune(value, 0) {
				ev.ID, ev.HasID = value, true
			}
		case "retry":
			if n, err := strconv.Atoi(value); err == nil && n >= 0 {
				ev.Retry = n
			}
		}
	}
	// A block not ended by a blank line is discarded, as browsers do.
	if err := sc.Err(); err != nil {
		select {
		case <-s.done:
		default:
			send(result{err: fmt.Errorf("ssetest: read: %w", err)})
		}
	}
}

// scanLines splits at CRLF, LF or CR, the line endings of the format.
func scanLines(data []byte, atEOF bool) (int, []byte, error) {
	i := bytes.IndexAny(data, "\r\n")
	if i < 0 {
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	}
	if data[i] == '\n' {
		return i + 1, data[:i], nil
	}
	// CR: a following LF belongs to it; wait for the next byte if needed.
	if i+1 < len(data) {
		if data[i+1] == '\n' {
			return i + 2, data[:i], nil
		}
		return i + 1, data[:i], nil
	}
	if atEOF {
		return i + 1, data[:i], nil
	}
	return 0, nil, nil
}
