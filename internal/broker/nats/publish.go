package nats

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	gonats "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboardhq/switchboard/internal/broker"
)

// Publishing and reading history.

// Publish implements broker.Broker. It stores the publication as the
// channel's next offset (see the package documentation), then announces it
// to the subscribed nodes.
func (b *Broker) Publish(ctx context.Context, channel string, data []byte, opts broker.PublishOptions) (broker.Position, error) {
	if err := b.usable(channel); err != nil {
		return broker.Position{}, fmt.Errorf("nats broker: publish: %w", err)
	}
	size := min(max(opts.HistorySize, 0), b.opts.HistoryMaxSize)
	ttl := max(opts.HistoryTTL, 0)
	tok := token(channel)
	subject := b.histPrefix + tok
	l, err := b.lockChannel(ctx, channel)
	if err != nil {
		return broker.Position{}, fmt.Errorf("nats broker: publish to %q: %w", channel, err)
	}
	defer b.unlockChannel(channel, l)
	var id string // Nats-Msg-Id, with an idempotency key
	var gen uint64
	if key := opts.IdempotencyKey; key != "" {
		var (
			pos   broker.Position
			found bool
		)
		gen, pos, found, err = b.reserveKey(ctx, channel, key, opts.IdempotencyWindow)
		if err != nil {
			return broker.Position{}, err
		}
		if found {
			return pos, fmt.Errorf("nats broker: publish to %q: %w", channel, broker.ErrDuplicate)
		}
		id = msgID(channel, key, gen)
	}

	var lastErr error
	for attempt := 0; attempt < maxPublishAttempts; attempt++ {
		if attempt >= 3 {
			if err := sleep(ctx, backoff(attempt)); err != nil {
				return broker.Position{}, fmt.Errorf("nats broker: publish to %q: %w (last conflict: %w)", channel, err, lastErr)
			}
		}
		r, err := b.currentStream(ctx)
		if err != nil {
			return broker.Position{}, err
		}
		t, ok := b.cachedTip(channel)
		if !ok || t.stream != r.name {
			last, found, err := b.newest(ctx, r, subject)
			if isStreamGone(err) {
				if _, err := b.findStream(ctx, r); err != nil {
					return broker.Position{}, err
				}
				lastErr = err
				continue
			}
			if err != nil {
				return broker.Position{}, b.fail("publish to "+strconv.Quote(channel), err)
			}
			t = tip{stream: r.name, epoch: newEpoch(), floor: 1}
			if found {
				t.seq, t.offset, t.epoch, t.floor = last.seq, last.pub.Offset, last.epoch, last.floor
			}
		}
		pub := broker.Publication{Offset: t.offset + 1, Data: data, Time: b.opts.Now()}
		floor := nextFloor(t.floor, pub.Offset, size)
		ack, err := b.store(ctx, r, subject, pub, t, floor, ttl, id)
		switch {
		case err == nil && ack.Duplicate:
			// Another publisher stored this key's publication under the
			// same generation: nothing was stored now.
			pos, err := b.original(ctx, r, channel, opts.IdempotencyKey, ack.Sequence)
			if err != nil {
				return broker.Position{}, b.fail("publish to "+strconv.Quote(channel), err)
			}
			return pos, fmt.Errorf("nats broker: publish to %q: %w", channel, broker.ErrDuplicate)
		case err == nil:
			b.setTip(channel, tip{stream: r.name, seq: ack.Sequence, offset: pub.Offset, epoch: t.epoch, floor: floor})
			b.announce(tok, pub, t.epoch)
			b.maybePurge(subject, pub.Offset, size)
			pos := broker.Position{Offset: pub.Offset, Epoch: t.epoch}
			if id != "" {
				b.settleKey(ctx, channel, opts.IdempotencyKey, gen, pos, opts.IdempotencyWindow)
			}
			return pos, nil
		case isConflict(err):
			b.dropTip(channel)
			lastErr = err
		case isStreamGone(err):
			b.dropTip(channel)
			if _, err := b.findStream(ctx, r); err != nil {
				return broker.Position{}, err
			}
			lastErr = err
		default:
			// The write may or may not have been stored: forget the tip, the
			// next Publish reads the truth.
			b.dropTip(channel)
			return broker.Position{}, b.fail("publish to "+strconv.Quote(channel), err)
		}
	}
	return broker.Position{}, fmt.Errorf("nats broker: publish to %q: gave up after %d attempts: %w", channel, maxPublishAttempts, lastErr)
}

// nextFloor returns the oldest offset a channel's history keeps after
// publication offset was stored with history size size, given the floor
// before it: the newest size publications, never one that an earlier,
// smaller size already dropped (as the memory broker's ring does).
func nextFloor(floor, offset uint64, size int) uint64 {
	if size <= 0 {
		return offset + 1
	}
	if offset >= uint64(size) {
		floor = max(floor, offset-uint64(size)+1)
	}
	return max(floor, 1)
}

// store appends pub to the channel's chain after t, or fails with a
// conflict when t is no longer the channel's newest message. With a
// message id, the stream stores nothing when a message with that id is
// stored already, and answers its sequence with Duplicate set.
func (b *Broker) store(ctx context.Context, r *streamRef, subject string, pub broker.Publication, t tip, floor uint64, ttl time.Duration, id string) (*jetstream.PubAck, error) {
	m := &gonats.Msg{Subject: subject, Data: pub.Data, Header: gonats.Header{}}
	if id != "" {
		m.Header.Set(jetstream.MsgIDHeader, id)
	}
	setPublication(m.Header, pub, t.epoch)
	m.Header.Set(hdrPrev, strconv.FormatUint(t.seq, 10))
	m.Header.Set(hdrFloor, strconv.FormatUint(floor, 10))
	m.Header.Set(hdrTTL, strconv.FormatInt(int64(ttl), 10))
	m.Header.Set(jetstream.ExpectedStreamHeader, r.name)
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(t.seq, 10))
	ctx, cancel := b.bound(ctx)
	defer cancel()
	return b.js.PublishMsg(ctx, m, jetstream.WithRetryAttempts(0))
}

// announce sends a stored publication to the nodes subscribed to its
// channel. A lost announcement is recovered by the subscribers from
// history (see liveChan), so a failure is only logged.
func (b *Broker) announce(tok string, pub broker.Publication, epoch string) {
	m := &gonats.Msg{Subject: b.livePrefix + tok, Data: pub.Data, Header: gonats.Header{}}
	setPublication(m.Header, pub, epoch)
	if err := b.nc.PublishMsg(m); err != nil {
		b.log.Debug("announce failed", "subject", m.Subject, "offset", pub.Offset, "err", err)
	}
}

// PublishEvent implements broker.Broker: the event goes to the channel's
// core subject only.
func (b *Broker) PublishEvent(ctx context.Context, channel string, data []byte) error {
	if err := b.usable(channel); err != nil {
		return fmt.Errorf("nats broker: publish event: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nats broker: publish event to %q: %w", channel, err)
	}
	m := &gonats.Msg{Subject: b.livePrefix + token(channel), Data: data, Header: gonats.Header{}}
	m.Header.Set(hdrEvent, "1")
	if err := b.nc.PublishMsg(m); err != nil {
		return b.fail("publish event to "+strconv.Quote(channel), err)
	}
	return nil
}

// History implements broker.Broker.
func (b *Broker) History(ctx context.Context, channel string, q broker.HistoryQuery) (broker.HistoryResult, error) {
	if err := b.usable(channel); err != nil {
		return broker.HistoryResult{}, fmt.Errorf("nats broker: history: %w", err)
	}
	subject := b.histPrefix + token(channel)
	r, top, err := b.top(ctx, subject)
	if err != nil {
		return broker.HistoryResult{}, b.fail("history of "+strconv.Quote(channel), err)
	}
	pos := broker.Position{Offset: top.pub.Offset, Epoch: top.epoch}
	res, err := broker.SelectHistory(pos, q, func(after uint64) ([]broker.Publication, error) {
		return b.kept(ctx, r, subject, top, after)
	})
	if errors.Is(err, broker.ErrEpochMismatch) {
		return res, fmt.Errorf("nats broker: history of %q since epoch %q: %w", channel, q.Since.Epoch, err)
	}
	if err != nil {
		return broker.HistoryResult{}, b.fail("history of "+strconv.Quote(channel), err)
	}
	return res, nil
}

// usable checks the broker is open and the channel name is not empty.
