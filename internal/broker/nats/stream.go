package nats

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboardhq/switchboard/internal/broker"
)

// currentStream returns the history stream in use, looking it up first if
// needed.
func (b *Broker) currentStream(ctx context.Context) (*streamRef, error) {
	if r := b.stream.Load(); r != nil {
		return r, nil
	}
	return b.findStream(ctx, nil)
}

// findStream finds the stream that holds the history subjects, or creates
// one with a new incarnation id, and makes it the one in use. stale is the
// stream a caller found gone (nil at first): when another caller has
// already replaced it, findStream returns the replacement.
func (b *Broker) findStream(ctx context.Context, stale *streamRef) (*streamRef, error) {
	b.streamMu.Lock()
	defer b.streamMu.Unlock()
	if r := b.stream.Load(); r != nil && r != stale {
		return r, nil
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var name string
		name, err = b.js.StreamNameBySubject(ctx, b.histPrefix+">")
		if err == nil {
			var s jetstream.Stream
			if s, err = b.js.Stream(ctx, name); err == nil {
				if err = b.reconcile(ctx, s); err == nil {
					r := &streamRef{name: name, s: s}
					b.stream.Store(r)
					return r, nil
				}
			}
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				continue // deleted meanwhile
			}
			break
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			break
		}
		cfg := b.streamConfig(b.streamBase + "_" + randomID(8))
		var s jetstream.Stream
		if s, err = b.js.CreateStream(ctx, cfg); err == nil {
			b.log.Info("created history stream", "stream", cfg.Name)
			r := &streamRef{name: cfg.Name, s: s}
			b.stream.Store(r)
			return r, nil
		}
		if apiCode(err) != codeStreamSubjectOverlap {
			break
		}
		// Another node created the stream first: look it up again.
	}
	return nil, b.fail("find history stream", err)
}

// streamConfig is the configuration of the history stream.
func (b *Broker) streamConfig(name string) jetstream.StreamConfig {
	cfg := jetstream.StreamConfig{
		Name:              name,
		Description:       "Switchboard channel history",
		Subjects:          []string{b.histPrefix + ">"},
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: int64(b.opts.HistoryMaxSize + purgeSlack),
		MaxAge:            b.opts.HistoryMaxAge,
		Storage:           jetstream.FileStorage,
		Replicas:          b.opts.Replicas,
		// Direct gets of a stream that is gone time out instead of failing;
		// the API answers "stream not found" at once.
		AllowDirect: false,
	}
	if b.opts.MemoryStorage {
		cfg.Storage = jetstream.MemoryStorage
	}
	cfg.Duplicates = b.opts.IdempotencyMaxWindow // must not exceed MaxAge
	if cfg.MaxAge > 0 && cfg.MaxAge < cfg.Duplicates {
		cfg.Duplicates = cfg.MaxAge
	}
	return cfg
}

// reconcile brings an existing stream's limits to the configured ones.
func (b *Broker) reconcile(ctx context.Context, s jetstream.Stream) error {
	info := s.CachedInfo()
	if info == nil {
		return nil
	}
	want := b.streamConfig(info.Config.Name)
	cfg := info.Config
	if cfg.Storage != want.Storage {
		// JetStream cannot move a stream to another storage; switching
		// means deleting the stream, and with it every channel's history.
		b.log.Warn("history stream keeps its storage: JetStream cannot change it in place",
			"stream", cfg.Name, "storage", cfg.Storage.String(), "configured", want.Storage.String())
	}
	if cfg.MaxMsgsPerSubject == want.MaxMsgsPerSubject && cfg.MaxAge == want.MaxAge && cfg.Replicas == want.Replicas &&
		cfg.Duplicates == want.Duplicates && !cfg.AllowDirect {
		return nil
	}
	cfg.MaxMsgsPerSubject, cfg.MaxAge, cfg.Replicas, cfg.Duplicates, cfg.AllowDirect =
		want.MaxMsgsPerSubject, want.MaxAge, want.Replicas, want.Duplicates, false
	if _, err := b.js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("update stream %s: %w", cfg.Name, err)
	}
	b.log.Info("updated history stream limits", "stream", cfg.Name, "replicas", cfg.Replicas)
	return nil
}

// newest reads the channel's newest stored message; found is false when the
// channel has none.
func (b *Broker) newest(ctx context.Context, r *streamRef, subject string) (st stored, found bool, err error) {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	m, err := r.s.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return stored{}, false, nil
	}
	if err != nil {
		return stored{}, false, err
	}
	st, err = parseStored(m.Sequence, m.Header, m.Data)
	if err != nil {
		return stored{}, false, fmt.Errorf("message %d of %s: %w", m.Sequence, subject, err)
	}
	return st, true, nil
}

// top returns the channel's newest stored message. A channel with none gets
// a marker (offset 0, a new epoch) first, so that its position has an
// epoch that the first publication will continue.
func (b *Broker) top(ctx context.Context, subject string) (*streamRef, stored, error) {
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		r, err := b.currentStream(ctx)
		if err != nil {
			return nil, stored{}, err
		}
		last, found, err := b.newest(ctx, r, subject)
		if err == nil && found {
			return r, last, nil
		}
		if err == nil {
			marker := broker.Publication{Time: b.opts.Now()}
			t := tip{stream: r.name, epoch: newEpoch(), floor: 1}
			var ack *jetstream.PubAck
			if ack, err = b.store(ctx, r, subject, marker, t, t.floor, 0, ""); err == nil {
				return r, stored{seq: ack.Sequence, pub: marker, epoch: t.epoch, floor: t.floor}, nil
			}
			if isConflict(err) { // written meanwhile: read it
				lastErr = err
				continue
			}
		}
		if !isStreamGone(err) {
			return nil, stored{}, err
		}
		lastErr = err
		if _, err := b.findStream(ctx, r); err != nil {
			return nil, stored{}, err
		}
	}
	return nil, stored{}, fmt.Errorf("read newest of %s: %w", subject, lastErr)
}

// kept returns the publications after offset after that the channel's
// history keeps, given its newest message top, in offset order.
func (b *Broker) kept(ctx context.Context, r *streamRef, subject string, top stored, after uint64) ([]broker.Publication, error) {
	lo := max(top.floor, after+1, 1)
	if lo > top.pub.Offset {
		return nil, nil
	}
	var pubs []broker.Publication
	var err error
	if n := top.pub.Offset - lo + 1; n <= walkLimit {
		pubs, err = b.walk(ctx, r, top, lo)
	} else {
		pubs, err = b.scan(ctx, r, subject, top, lo)
	}
	if err != nil {
		return nil, err
	}
	if top.ttl > 0 {
		now := b.opts.Now()
		i := 0
		for i < len(pubs) && now.Sub(pubs[i].Time) > top.ttl {
			i++
		}
		pubs = pubs[i:]
	}
	return pubs, nil
}

// walk reads the publications from offset lo to top by following the
// previous-sequence links back from top, one request each.
func (b *Broker) walk(ctx context.Context, r *streamRef, top stored, lo uint64) ([]broker.Publication, error) {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	return chainBack(top, lo, func(seq uint64) (stored, bool, error) {
		m, err := r.s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return stored{}, false, nil // trimmed
		}
		if err != nil {
			return stored{}, false, err
		}
		st, err := parseStored(m.Sequence, m.Header, m.Data)
		return st, err == nil, nil
	})
}

// scan reads the publications from offset lo to top with a short-lived
// consumer of the channel's subject, up to top's sequence so that the
// result matches the position read before, then keeps those on top's chain.
func (b *Broker) scan(ctx context.Context, r *streamRef, subject string, top stored, lo uint64) ([]broker.Publication, error) {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	cons, err := r.s.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject:     subject,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		InactiveThreshold: time.Minute, // removes it if the delete below is lost
	})
	if err != nil {
		return nil, fmt.Errorf("create history consumer: %w", err)
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), b.opts.RequestTimeout)
		_ = r.s.DeleteConsumer(dctx, cons.CachedInfo().Name)
		dcancel()
	}()
	bySeq := make(map[uint64]stored, top.pub.Offset-lo+1)
	for done := false; !done; {
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return nil, fmt.Errorf("fetch history: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("fetch history: %w", err)
			}
			seq := md.Sequence.Stream
			if seq >= top.seq {
				done = true // keep draining the batch; it is short
				continue
			}
			st, err := parseStored(seq, m.Headers(), m.Data())
			if err == nil && st.epoch == top.epoch && st.pub.Offset >= lo {
				bySeq[seq] = st
			}
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("fetch history: %w", err)
		}
		if got == 0 {
			done = true
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return chainBack(top, lo, func(seq uint64) (stored, bool, error) {
		st, ok := bySeq[seq]
		return st, ok, nil
	})
}

// chainBack returns the publications from offset lo to top in offset
// order, following the previous-sequence links back from top through get.
// It stops early where a link leads nowhere (trimmed) or to a message that
// is not the chain's predecessor, so a message the server should have
// refused never enters history.
func chainBack(top stored, lo uint64, get func(seq uint64) (stored, bool, error)) ([]broker.Publication, error) {
	n := top.pub.Offset - lo + 1
	pubs := make([]broker.Publication, n)
	i := int(n) - 1
	pubs[i] = top.pub
	for cur := top; i > 0 && cur.prev != 0; {
		prev, ok, err := get(cur.prev)
		if err != nil {
			return nil, err
		}
		if !ok || prev.epoch != top.epoch || prev.pub.Offset != cur.pub.Offset-1 {
			break
		}
		i--
		pubs[i], cur = prev.pub, prev
	}
	return pubs[i:], nil
}

// maybePurge asks the purge loop, every few offsets, to trim the channel
// to its history size (plus slack), so that reads stay short when the
// history size is far below the stream's per-subject limit.
func (b *Broker) maybePurge(subject string, offset uint64, size int) {
	step := uint64(max(size, purgeEvery))
	if offset%step != 0 {
		return
	}
	select {
	case b.purges <- purgeReq{subject: subject, keep: uint64(size + purgeSlack)}:
	default: // busy: a later one will do
	}
}

func (b *Broker) purgeLoop() {
	defer b.wg.Done()
	for {
		select {
		case <-b.life.Done():
			return
		case req := <-b.purges:
			r := b.stream.Load()
			if r == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(b.life, b.opts.RequestTimeout)
			err := r.s.Purge(ctx, jetstream.WithPurgeSubject(req.subject), jetstream.WithPurgeKeep(req.keep))
			cancel()
			if err != nil {
				b.log.Debug("purge failed", "subject", req.subject, "err", err)
			}
		}
	}
}
