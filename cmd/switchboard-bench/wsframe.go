package main

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"syscall"
)

// Writing to and parsing from a raw WebSocket connection: frames, masking,
// the upgrade answer, and the few JSON fields the load tool reads.

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
