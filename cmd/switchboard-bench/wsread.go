package main

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"syscall"
	"time"
)

// The poller: reading every connection of a worker from one epoll set and
// handling what the server sends.

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
