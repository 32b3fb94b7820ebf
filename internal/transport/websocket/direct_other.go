//go:build !linux

package websocket

import (
	"errors"
	"syscall"
)

// writeNow is never called off Linux: connections there are not on the
// event loop, so CanWriteDirect is false.
func writeNow(syscall.RawConn, []byte) (int, error) {
	return 0, errors.New("websocket: direct writes need Linux")
}
