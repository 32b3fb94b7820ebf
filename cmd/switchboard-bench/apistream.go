package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// apiStreams publishes through Switchboard's API stream (GET /api/stream):
// a few persistent WebSocket connections, each carrying the calls of many
// publishers at once (--via stream).
type apiStreams struct {
	conns []*apiStreamConn
	next  atomic.Uint64
	// notify sends calls without ids: the server answers only failures,
	// and publish returns once the call is written.
	notify bool
}

// apiStreamConn is one API stream: calls go out as masked text frames,
// answers come back by id to the caller waiting for them.
type apiStreamConn struct {
	nc  net.Conn
	wmu sync.Mutex
	ids atomic.Uint64

	mu      sync.Mutex
	waiting map[uint64]chan error
	err     error // set when the reader stopped
}

// dialAPIStreams opens n API streams to addr.
func dialAPIStreams(ctx context.Context, addr, key string, n int, notify bool) (*apiStreams, error) {
	s := &apiStreams{notify: notify}
	for range n {
		d := ws.Dialer{Timeout: 10 * time.Second, Header: ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"apikey " + key}})}
		nc, br, _, err := d.Dial(ctx, "ws://"+addr+"/api/stream")
		if err != nil {
			s.close()
			return nil, fmt.Errorf("api stream: %w", err)
		}
		if br == nil {
			br = bufio.NewReaderSize(nc, 64<<10)
		}
		c := &apiStreamConn{nc: nc, waiting: make(map[uint64]chan error)}
		go c.read(br)
		s.conns = append(s.conns, c)
	}
	return s, nil
}

func (s *apiStreams) close() {
	for _, c := range s.conns {
		c.nc.Close()
	}
}

// publish sends one publication over the next stream and waits for its
// answer.
func (s *apiStreams) publish(ctx context.Context, channel string, data []byte) error {
	c := s.conns[s.next.Add(1)%uint64(len(s.conns))]
	if s.notify {
		return c.send(s.call(nil, 0, channel, data))
	}
	id := c.ids.Add(1)
	done := make(chan error, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.err
	}
	c.waiting[id] = done
	c.mu.Unlock()
	if err := c.send(s.call(nil, id, channel, data)); err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// call appends a publish call to b; id 0 leaves the id out (a
// notification).
func (s *apiStreams) call(b []byte, id uint64, channel string, data []byte) []byte {
	b = append(b, '{')
	if id != 0 {
		b = append(b, `"id":`...)
		b = strconv.AppendUint(b, id, 10)
		b = append(b, ',')
	}
	b = append(b, `"method":"publish","params":{"channel":"`...)
	b = append(b, channel...)
	b = append(b, `","data":`...)
	b = append(b, data...)
	return append(b, "}}"...)
}

// send writes one call as a masked text frame.
func (c *apiStreamConn) send(call []byte) error {
	f := ws.MaskFrameInPlace(ws.NewTextFrame(call))
	c.wmu.Lock()
	err := ws.WriteFrame(c.nc, f)
	c.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("api stream: %w", err)
	}
	c.mu.Lock()
	err = c.err // a failed notification closes nothing, but a dead stream shows here
	c.mu.Unlock()
	return err
}

// read hands each answer to its caller until the connection ends.
func (c *apiStreamConn) read(br *bufio.Reader) {
	var err error
	for {
		var h ws.Header
		if h, err = ws.ReadHeader(br); err != nil {
			break
		}
		payload := make([]byte, h.Length)
		if _, err = io.ReadFull(br, payload); err != nil {
			break
		}
		if h.OpCode == ws.OpClose {
			err = fmt.Errorf("api stream closed by the server")
			break
		}
		var ans struct {
			ID    uint64          `json:"id"`
			Error json.RawMessage `json:"error"`
		}
		if json.Unmarshal(payload, &ans) != nil {
			continue
		}
		if ans.ID == 0 {
			continue // a failed notification: its publication shows as lost
		}
		c.mu.Lock()
		done := c.waiting[ans.ID]
		delete(c.waiting, ans.ID)
		c.mu.Unlock()
		if done == nil {
			continue
		}
		if len(ans.Error) > 0 {
			done <- fmt.Errorf("publish: %s", ans.Error)
		} else {
			done <- nil
		}
	}
	c.mu.Lock()
	c.err = fmt.Errorf("api stream: %w", err)
	for id, done := range c.waiting {
		done <- c.err
		delete(c.waiting, id)
	}
	c.mu.Unlock()
}
