package websocket

import "syscall"

// writeNow writes b to the socket of rc once, without waiting for it to
// become writable: a full socket buffer (EAGAIN) writes nothing and is not
// an error. It goes through Control rather than Write: RawConn.Write fails
// once the deadline of an earlier blocking write has passed, and the hub
// already makes sure that one writer at a time touches the connection.
func writeNow(rc syscall.RawConn, b []byte) (int, error) {
	var n int
	var werr error
	err := rc.Control(func(fd uintptr) {
		for {
			n, werr = syscall.Write(int(fd), b)
			if werr != syscall.EINTR {
				return
			}
		}
	})
	if n < 0 {
		n = 0
	}
	if werr == syscall.EAGAIN {
		werr = nil
	}
	if err == nil && werr != nil {
		err = werr
	}
	return n, err
}
