//go:build unix

package websocket

import (
	"errors"
	"os"
	"syscall"
)

const rawWriteSupported = true

// writeNow makes one non-blocking write of b to the connection's socket and
// returns how much it took: all of it, part of it, or nothing when the
// socket's buffer is full. It never waits.
func writeNow(rc syscall.RawConn, b []byte) (int, error) {
	var n int
	var werr error
	err := rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			k, e := syscall.Write(int(fd), b[n:])
			if e == syscall.EINTR {
				continue
			}
			if e != nil {
				if e != syscall.EAGAIN {
					werr = e
				}
				break
			}
			n += k
		}
		return true // done either way: never wait for the socket
	})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, nil // a past deadline of a blocking write: leave it to the writer
	}
	if err != nil {
		return n, err
	}
	return n, werr
}
