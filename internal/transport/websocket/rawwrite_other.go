//go:build !unix

package websocket

import (
	"errors"
	"syscall"
)

const rawWriteSupported = false

func writeNow(syscall.RawConn, []byte) (int, error) {
	return 0, errors.New("websocket: no non-blocking writes on this platform")
}
