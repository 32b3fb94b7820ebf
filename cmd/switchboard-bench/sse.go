package main

import (
	"bytes"
	"errors"
	"net/url"
	"strconv"
)

// The Server-Sent Events client: a GET on the SSE endpoint read by the same
// event loops as the WebSockets. The body is an HTTP/1.1 chunked stream of
// events separated by blank lines; a publication is an event without a
// type whose data is {"channel":C,"data":D,"offset":N}, and the "connected"
// event says the stream is subscribed.

// States of conn.chunkLeft besides a positive byte count.
const (
	chunkSize = -1 // expecting a chunk-size line
	chunkCRLF = -2 // expecting the CRLF that ends a chunk's data
)

// sseRequest returns the request that opens a stream of channel.
func sseRequest(path, host, channel string) string {
	return "GET " + path + "?channel=" + url.QueryEscape(channel) + " HTTP/1.1\r\nHost: " + host +
		"\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
}

// processSSE handles the bytes of an SSE stream and returns how many it
// used (it keeps what it cannot use yet itself). p.mu is held.
func (p *poller) processSSE(c *conn, data []byte, now int64) int {
	used := 0
	if c.state == stHandshake {
		end := bytes.Index(data, []byte("\r\n\r\n"))
		if end < 0 {
			if len(data) > 16<<10 {
				p.drop(c, -1, errors.New("response head too long"))
			}
			return 0
		}
		head := data[:end]
		line, _, _ := bytes.Cut(head, []byte("\r\n"))
		if !bytes.HasPrefix(line, []byte("HTTP/1.1 200")) {
			p.drop(c, -1, errors.New("stream refused: "+string(line)))
			return 0
		}
		c.chunked = bytes.Contains(bytes.ToLower(head), []byte("transfer-encoding: chunked"))
		c.chunkLeft = chunkSize
		c.state = stSubscribing
		used = end + 4
	}
	rest := data[used:]
	if !c.chunked {
		c.events = append(c.events, rest...)
	} else {
		for len(rest) > 0 && c.state != stClosed {
			switch {
			case c.chunkLeft == chunkCRLF:
				if len(rest) < 2 {
					return len(data) - len(rest)
				}
				rest, c.chunkLeft = rest[2:], chunkSize
			case c.chunkLeft == chunkSize:
				i := bytes.Index(rest, []byte("\r\n"))
				if i < 0 {
					return len(data) - len(rest)
				}
				sizeText, _, _ := bytes.Cut(rest[:i], []byte(";"))
				n, err := strconv.ParseInt(string(bytes.TrimSpace(sizeText)), 16, 64)
				if err != nil {
					p.drop(c, -1, errors.New("bad chunk size"))
					return len(data)
				}
				if n == 0 {
					p.drop(c, 0, errors.New("stream ended"))
					return len(data)
				}
				rest, c.chunkLeft = rest[i+2:], int(n)
			default:
				n := min(c.chunkLeft, len(rest))
				c.events = append(c.events, rest[:n]...)
				rest, c.chunkLeft = rest[n:], c.chunkLeft-n
				if c.chunkLeft == 0 {
					c.chunkLeft = chunkCRLF
				}
			}
		}
	}
	p.sseEvents(c, now)
	return len(data) - len(rest)
}

// sseEvents handles the complete events in c.events. p.mu is held.
func (p *poller) sseEvents(c *conn, now int64) {
	buf := c.events
	for c.state != stClosed {
		i := bytes.Index(buf, []byte("\n\n"))
		if i < 0 {
			break
		}
		ev := buf[:i]
		buf = buf[i+2:]
		var typ, data []byte
		for _, line := range bytes.Split(ev, []byte("\n")) {
			switch {
			case bytes.HasPrefix(line, []byte("event:")):
				typ = bytes.TrimSpace(line[len("event:"):])
			case bytes.HasPrefix(line, []byte("data:")):
				d := bytes.TrimPrefix(line[len("data:"):], []byte(" "))
				if data != nil {
					data = append(data, '\n')
				}
				data = append(data, d...)
			}
		}
		switch string(typ) {
		case "":
			if bytes.HasPrefix(data, []byte(`{"channel":`)) {
				p.publication(c, data, now)
			}
		case "connected":
			if off, ok := numberAfter(data, `"offset":`); ok {
				c.lastOffset, c.hasOffset = off, true
			}
			c.epoch, _ = stringAfter(data, `"epoch":"`)
			p.subscribed(c)
		case "unrecovered":
			p.st.Unrecovered++
		case "disconnect":
			code, _ := numberAfter(data, `"code":`)
			p.drop(c, int(code), errors.New("disconnected by server"))
		}
	}
	if len(buf) == 0 {
		c.events = nil
	} else if len(buf) != len(c.events) {
		c.events = append(c.events[:0], buf...)
	}
}
