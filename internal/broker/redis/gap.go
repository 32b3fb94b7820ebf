package redis

import (
	"context"
	"errors"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
)

// Delivery of one channel, and the gaps in it.
//
// Everything that reaches a subscription goes through offer: the Pub/Sub
// reader's publications and events, and the positions read when the node
// (re)subscribes. With no gap open, offer delivers at once. A publication
// whose offset is not the next one, or a position ahead of what was
// delivered, opens a gap: one filler goroutine for that channel reads the
// missing publications from history, delivers them, and then releases what
// arrived meanwhile, in order, dropping anything delivered already. The
// reader never waits for Redis, so a slow history read stalls its own
// channel only. At most maxConcurrentFills fillers read at a time.
//
// What waits behind a gap is bounded (Broker.gapItems messages,
// maxGapBytes of data). When a message would exceed that, the buffer is
// replaced by the position of the newest publication seen: once the
// current gap is filled, the filler reads everything up to that position
// from history too. What history no longer holds is skipped and logged, so
// the handler sees a jump in offsets (or a new epoch), as after any loss;
// events in the dropped buffer are lost, as events always may be.
//
// Locks: subscription.mu, then Broker.fillMu.

// kindPosition marks an item that is a position to catch up to, not a
// message.
const kindPosition = 0

// Bounds of a subscription's gap buffer.
const (
	defaultGapItems = 4096
	maxGapBytes     = 8 << 20
)

// maxConcurrentFills bounds the history reads of all fillers at a time,
// so that a reconnection after which many channels are behind does not
// send Redis one read per channel at once.
const maxConcurrentFills = 64

// gapRetries is how many times a filler reads history when Redis is
// unavailable, pausing gapRetryPause times the attempt between reads.
const (
	gapRetries    = 3
	gapRetryPause = 200 * time.Millisecond
)

// item is a message of a channel's Pub/Sub stream, or a position read when
// the node subscribed.
type item struct {
	kind  byte   // kindPublication, kindEvent or kindPosition
	epoch string // publication, position
	pub   broker.Publication
	data  []byte // event
}

func (it item) size() int { return len(it.pub.Data) + len(it.data) }

// catchUp brings s to the channel's position (epoch, offset), read after
// subscribing: it sets the starting position of a subscription that has
// none, and otherwise has the publications the node missed, up to offset,
// delivered from history.
func (b *Broker) catchUp(s *subscription, epoch string, offset uint64) {
	b.offer(s, item{kind: kindPosition, epoch: epoch, pub: broker.Publication{Offset: offset}})
}

// offer delivers it, or keeps it for later when a gap is open before it.
// It never waits for Redis.
func (b *Broker) offer(s *subscription, it item) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.gone:
	case s.filling:
		b.bufferLocked(s, it)
	case b.applyLocked(s, it):
		b.startFill(s)
	}
}

// applyLocked delivers it unless it was delivered already, and reports
// whether it opened a gap instead; it then waits in s.buf when it is a
// publication. s.mu must be held and no gap be open.
func (b *Broker) applyLocked(s *subscription, it item) (gap bool) {
	switch it.kind {
	case kindEvent:
		b.handler.HandleEvent(s.channel, it.data)
		return false
	case kindPosition:
		if !s.ready {
			s.ready = true
			if s.epoch == "" { // no publication came first
				s.epoch, s.offset = it.epoch, it.pub.Offset
			}
			return false
		}
		if it.epoch == "" {
			return false // the channel has no state (it expired or was lost); the next publication says so
		}
		return s.openGapLocked(it.epoch, it.pub.Offset)
	}
	if s.ready {
		if it.epoch == s.epoch && it.pub.Offset <= s.offset {
			return false // delivered by a catch-up
		}
		if s.openGapLocked(it.epoch, it.pub.Offset-1) {
			s.buf = append(s.buf, it)
			s.bufBytes += it.size()
			return true
		}
	}
	b.handler.HandlePublication(s.channel, it.pub, it.epoch)
	s.epoch, s.offset = it.epoch, it.pub.Offset
	return false
}

// openGapLocked opens a gap when the publications of epoch up to offset
// have not all been delivered. A new epoch is delivered from its start.
// s.mu must be held.
func (s *subscription) openGapLocked(epoch string, offset uint64) bool {
	if epoch != s.epoch {
		s.epoch, s.offset = epoch, 0
	}
	if offset <= s.offset {
		return false
	}
	s.filling, s.gapTo = true, offset
	return true
}

// bufferLocked keeps it until the open gap is filled, within the buffer's
// bounds. s.mu must be held.
func (b *Broker) bufferLocked(s *subscription, it item) {
	if len(s.buf) < b.gapItems && s.bufBytes+it.size() <= maxGapBytes {
		s.buf = append(s.buf, it)
		s.bufBytes += it.size()
		return
	}
	// Full: keep only where the stream has got to, and read it all from
	// history once the open gap is filled.
	var last *item
	events := 0
	for i := range s.buf {
		switch s.buf[i].kind {
		case kindEvent:
			events++
		default:
			last = &s.buf[i]
		}
	}
	if it.kind == kindEvent {
		events++
	} else {
		last = &it
	}
	b.log.Warn("gap buffer full; catching up from history",
		"channel", s.channel, "buffered", len(s.buf), "events_dropped", events)
	var keep []item
	if last != nil && last.epoch != "" {
		keep = []item{{kind: kindPosition, epoch: last.epoch, pub: broker.Publication{Offset: last.pub.Offset}}}
	}
	s.buf, s.bufBytes = keep, 0
}

// startFill starts the filler of s's open gap. s.mu must be held.
func (b *Broker) startFill(s *subscription) {
	b.fillMu.Lock()
	defer b.fillMu.Unlock()
	if b.fillsStopped {
		s.filling, s.buf, s.bufBytes = false, nil, 0 // closing: nothing is delivered any more
		return
	}
	b.fillWG.Add(1)
	go b.fill(s)
}

// fill is the filler of s's open gap: it reads the missing publications
// from history and delivers them, then releases the buffer, until no gap
// is open. It holds s.mu only to deliver, never while reading.
func (b *Broker) fill(s *subscription) {
	defer b.fillWG.Done()
	for {
		s.mu.Lock()
		if s.gone {
			s.filling, s.buf, s.bufBytes = false, nil, 0
			s.mu.Unlock()
			return
		}
		// While filling is set, only this goroutine moves epoch and offset.
		epoch, from, to := s.epoch, s.offset, s.gapTo
		s.mu.Unlock()

		pubs, err := b.readGap(s.channel, epoch, from, to)

		s.mu.Lock()
		if s.gone {
			s.filling, s.buf, s.bufBytes = false, nil, 0
			s.mu.Unlock()
			return
		}
		for _, p := range pubs {
			if p.Offset > s.offset && p.Offset <= to {
				b.handler.HandlePublication(s.channel, p, epoch)
				s.offset = p.Offset
			}
		}
		if s.offset < to {
			switch {
			case err != nil && !b.closed.Load():
				b.log.Warn("cannot fill a gap from history", "channel", s.channel, "after", s.offset, "upto", to, "err", err)
			case err == nil:
				b.log.Warn("publications missed and no longer in history", "channel", s.channel, "from", s.offset+1, "to", to)
			}
			s.offset = to // the handler sees the offsets jump
		}
		// Release the buffer in order; a message in it may open the next gap.
		buf := s.buf
		s.filling, s.buf, s.bufBytes = false, nil, 0
		for i, it := range buf {
			if b.applyLocked(s, it) {
				for _, rest := range buf[i+1:] {
					s.buf = append(s.buf, rest)
					s.bufBytes += rest.size()
				}
				break
			}
		}
		more := s.filling
		s.mu.Unlock()
		if !more {
			return
		}
	}
}

// readGap reads the publications of epoch after offset from up to offset
// to from history, trying again a little later while Redis is unavailable.
func (b *Broker) readGap(channel, epoch string, from, to uint64) ([]broker.Publication, error) {
	ctx, cancel := context.WithTimeout(b.fillCtx, opTimeout)
	defer cancel()
	select {
	case b.fillSlots <- struct{}{}:
		defer func() { <-b.fillSlots }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if b.beforeFill != nil {
		b.beforeFill(ctx, channel)
	}
	q := broker.HistoryQuery{
		Since: &broker.Position{Offset: from, Epoch: epoch},
		Limit: int(min(to-from, 1<<20)),
	}
	for try := 1; ; try++ {
		r, err := b.History(ctx, channel, q)
		if err == nil || try == gapRetries || !errors.Is(err, broker.ErrUnavailable) {
			return r.Publications, err
		}
		// The client has retried already; give a Redis that is coming
		// back one more chance before leaving a gap.
		t := time.NewTimer(time.Duration(try) * gapRetryPause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
}

// leave marks s as left: nothing more is delivered for it, and its filler,
// if any, stops.
func (s *subscription) leave() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gone = true
	s.buf, s.bufBytes = nil, 0
}

// stopFills ends the fillers and waits for them. No filler starts after.
func (b *Broker) stopFills() {
	b.fillMu.Lock()
	b.fillsStopped = true
	b.fillMu.Unlock()
	b.cancelFills()
	b.fillWG.Wait()
}
