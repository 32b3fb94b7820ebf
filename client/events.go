package client

import "sync"

// events runs callbacks one at a time, in the order they were queued, on
// its own goroutine: never on the socket's reader, so that a callback may
// call the Client (and wait for a reply the reader must deliver). The
// queue is unbounded; a slow callback costs memory, not lost events.
type events struct {
	mu     sync.Mutex
	q      []func()
	wake   chan struct{}
	closed bool
	done   chan struct{}
}

func newEvents() *events {
	e := &events{wake: make(chan struct{}, 1), done: make(chan struct{})}
	go e.run()
	return e
}

// push queues f. After stop it does nothing.
func (e *events) push(f func()) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.q = append(e.q, f)
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// stop lets the goroutine run what is queued and exit; done is closed then.
func (e *events) stop() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *events) run() {
	defer close(e.done)
	for {
		e.mu.Lock()
		q, closed := e.q, e.closed
		e.q = nil
		e.mu.Unlock()
		for _, f := range q {
			f()
		}
		if len(q) > 0 {
			continue
		}
		if closed {
			return
		}
		<-e.wake
	}
}
