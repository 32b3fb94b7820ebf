package websocket

import (
	"sync"
	"syscall"
	"unsafe"
)

// writeNow writes b to the socket of rc once, without waiting for it to
// become writable: a full socket buffer (EAGAIN) writes nothing and is not
// an error. It goes through Control rather than Write: RawConn.Write fails
// once the deadline of an earlier blocking write has passed, and the hub
// already makes sure that one writer at a time touches the connection.
//
// The write is a raw system call, outside the Go scheduler's knowledge:
// on a non-blocking socket it cannot block, and a scheduled one costs more
// than the write on a busy node. The runtime's monitor takes the processor
// of a goroutine in a system call that lasts over ~20 µs and wakes another
// thread to run it; a fan-out of thousands of ~10 µs writes hit that again
// and again and kept the monitor polling every 20 µs, each a context switch
// on the node's core (a perf profile of a 10,000-subscriber broadcast put
// 10 % of the server's CPU there).
func writeNow(rc syscall.RawConn, b []byte) (int, error) {
	op := rawOps.Get().(*rawOp)
	op.b = b
	err := rc.Control(op.write)
	n, werr := op.n, op.err
	op.put()
	if werr == syscall.EAGAIN {
		werr = nil
	}
	if err == nil && werr != nil {
		err = werr
	}
	return n, err
}

// rawOp carries one raw read or write through RawConn.Control or
// RawConn.Read, whose callback would otherwise be a closure allocated per
// call (two allocations per delivery, most of the event loop's). Its
// callbacks are bound once, when the pool makes it.
type rawOp struct {
	b     []byte
	n     int
	err   error
	write func(fd uintptr)
	read  func(fd uintptr) bool
}

var rawOps = sync.Pool{New: func() any {
	op := new(rawOp)
	op.write = func(fd uintptr) { op.n, op.err = rawIO(syscall.SYS_WRITE, fd, op.b) }
	op.read = func(fd uintptr) bool { op.n, op.err = rawIO(syscall.SYS_READ, fd, op.b); return true }
	return op
}}

// put clears op and gives it back to the pool.
func (op *rawOp) put() {
	op.b, op.n, op.err = nil, 0, nil
	rawOps.Put(op)
}

// rawIO is read(2) or write(2) (trap) on fd as a raw system call, retried
// on EINTR; n is never negative. Only for non-blocking sockets: the event
// loop reads those epoll reported readable and writes without waiting.
func rawIO(trap, fd uintptr, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for {
		r, _, e := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
		switch e {
		case 0:
			return int(r), nil
		case syscall.EINTR:
			continue
		default:
			return 0, e
		}
	}
}
