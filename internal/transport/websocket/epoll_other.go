//go:build !linux

package websocket

import (
	"errors"
	"log/slog"

	"github.com/jonboulle/clockwork"
)

// Without epoll there is no event loop: every connection is read by a
// goroutine of its own. The poller's methods exist only to keep the shared
// code compiling; newPoller always fails, so none is ever called.

const (
	epollSupported = false
	defaultReader  = ReaderGoroutine
)

var errWouldBlock = errors.New("websocket: would block")

type poller struct{ done chan struct{} }

func newPoller(*slog.Logger, clockwork.Clock) (*poller, error) {
	return nil, errors.New("websocket: no event loop on this platform")
}

func (p *poller) register(*conn, []byte) bool { return false }
func (p *poller) submit(*conn)                {}
func (p *poller) arm(*conn) error             { return errors.New("websocket: no event loop") }
func (p *poller) remove(*conn)                {}
func (p *poller) stop()                       {}

func (c *conn) rawRead([]byte) (int, error) { return 0, errors.New("websocket: no event loop") }
