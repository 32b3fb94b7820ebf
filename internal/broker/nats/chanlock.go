package nats

import (
	"context"
)

// Per-channel locks and the cache of each channel's newest message.

func (b *Broker) lockChannel(ctx context.Context, channel string) (*chanLock, error) {
	if err := ctx.Err(); err != nil {
		return nil, err // select below would pick a free lock at random
	}
	b.pubMu.Lock()
	l := b.pubLocks[channel]
	if l == nil {
		l = &chanLock{sem: make(chan struct{}, 1)}
		b.pubLocks[channel] = l
	}
	l.refs++
	b.pubMu.Unlock()
	select {
	case l.sem <- struct{}{}:
		return l, nil
	case <-ctx.Done():
		b.release(channel, l)
		return nil, ctx.Err()
	}
}

func (b *Broker) unlockChannel(channel string, l *chanLock) {
	<-l.sem
	b.release(channel, l)
}

func (b *Broker) release(channel string, l *chanLock) {
	b.pubMu.Lock()
	if l.refs--; l.refs == 0 {
		delete(b.pubLocks, channel)
	}
	b.pubMu.Unlock()
}

func (b *Broker) cachedTip(channel string) (tip, bool) {
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	t, ok := b.tips[channel]
	return t, ok
}

func (b *Broker) setTip(channel string, t tip) {
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	if _, ok := b.tips[channel]; !ok && len(b.tips) >= maxTips {
		for k := range b.tips { // evict one at random
			delete(b.tips, k)
			break
		}
	}
	b.tips[channel] = t
}

func (b *Broker) dropTip(channel string) {
	b.pubMu.Lock()
	delete(b.tips, channel)
	b.pubMu.Unlock()
}

// bound gives ctx the request timeout when it has no deadline, and ends it
// when the connection to the server is lost, so that a request in flight
// then fails at once (as unavailable) instead of at its timeout.
