package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboardhq/switchboard/internal/broker"
)

// Idempotent publishing (see the package documentation, "Idempotency").

// idemMaxWindow is the idempotency bucket's TTL: the longest window a key
// can be remembered for. Longer windows are cut to it.
const idemMaxWindow = 24 * time.Hour

// idemRecord is the value of one idempotency key in the bucket.
type idemRecord struct {
	// Expires is when the key is forgotten, in Unix milliseconds.
	Expires int64 `json:"exp"`
	// Offset and Epoch are the position of the publication that used the
	// key; Offset is 0 while it is being published (a reservation).
	Offset uint64 `json:"offset,omitempty"`
	Epoch  string `json:"epoch,omitempty"`
}

// idemKey names a channel's idempotency key in the bucket. token is
// injective and never yields '.', so distinct pairs get distinct names.
func idemKey(channel, key string) string { return token(channel) + "." + token(key) }

// reserveKey claims key for a publication to channel, or finds the
// publication that already used it. It returns the generation to publish
// under (the revision of the bucket entry that claims the key: every
// publisher that finds the same unexpired claim uses the same one, and so
// the same Nats-Msg-Id), or, when the key's publication is known, its
// position and found true.
func (b *Broker) reserveKey(ctx context.Context, channel, key string, window time.Duration) (gen uint64, pos broker.Position, found bool, err error) {
	name := idemKey(channel, key)
	window = min(window, idemMaxWindow)
	err = b.withIdemBucket(ctx, "reserve idempotency key on "+strconv.Quote(channel), func(ctx context.Context, kv jetstream.KeyValue) error {
		for attempt := 0; attempt < maxPublishAttempts; attempt++ {
			now := b.opts.Now()
			claim, _ := json.Marshal(idemRecord{Expires: now.Add(window).UnixMilli()})
			// Most keys are new: claim first, read only when that fails.
			gen, err = kv.Create(ctx, name, claim)
			if !errors.Is(err, jetstream.ErrKeyExists) {
				return err
			}
			e, err := kv.Get(ctx, name)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
				continue // expired meanwhile: claim again
			case err != nil:
				return err
			}
			var rec idemRecord
			if json.Unmarshal(e.Value(), &rec) == nil && now.UnixMilli() < rec.Expires {
				if rec.Offset > 0 {
					pos, found = broker.Position{Offset: rec.Offset, Epoch: rec.Epoch}, true
					return nil
				}
				gen = e.Revision() // claimed by a publisher that may be at work: join it
				return nil
			}
			// Expired (or unreadable): claim it anew, unless another
			// publisher does first.
			gen, err = kv.Update(ctx, name, claim, e.Revision())
			if apiCode(err) == codeWrongLastSequence || errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
			return err
		}
		return errors.New("gave up: the key keeps changing")
	})
	return gen, pos, found, err
}

// settleKey records in the key's claim the position of the publication
// stored under generation gen, so that later repeats need not publish. It
// is best effort: a repeat that still finds the claim publishes under the
// same generation and the stream's de-duplication answers it.
func (b *Broker) settleKey(ctx context.Context, channel, key string, gen uint64, pos broker.Position, window time.Duration) {
	rec, _ := json.Marshal(idemRecord{
		Expires: b.opts.Now().Add(min(window, idemMaxWindow)).UnixMilli(),
		Offset:  pos.Offset, Epoch: pos.Epoch,
	})
	err := b.withIdemBucket(ctx, "settle idempotency key on "+strconv.Quote(channel), func(ctx context.Context, kv jetstream.KeyValue) error {
		_, err := kv.Update(ctx, idemKey(channel, key), rec, gen)
		return err
	})
	if err != nil {
		b.log.Debug("settling an idempotency key failed", "channel", channel, "err", err)
	}
}

// msgID is the Nats-Msg-Id of a publication with an idempotency key: the
// stream stores one message per id within its duplicate window.
func msgID(channel, key string, gen uint64) string {
	return idemKey(channel, key) + "." + strconv.FormatUint(gen, 10)
}

// original returns the position of the stored message seq, which the
// stream reported as the original of a duplicate. A message trimmed from
// the stream since is looked up in the key's settled claim instead.
func (b *Broker) original(ctx context.Context, r *streamRef, channel, key string, seq uint64) (broker.Position, error) {
	gctx, cancel := b.bound(ctx)
	m, err := r.s.GetMsg(gctx, seq)
	cancel()
	if err == nil {
		st, err := parseStored(m.Sequence, m.Header, m.Data)
		if err != nil {
			return broker.Position{}, fmt.Errorf("message %d: %w", seq, err)
		}
		return broker.Position{Offset: st.pub.Offset, Epoch: st.epoch}, nil
	}
	if !errors.Is(err, jetstream.ErrMsgNotFound) {
		return broker.Position{}, err
	}
	// Trimmed already: its publisher settles the claim right after storing.
	for attempt := 0; attempt < maxPublishAttempts; attempt++ {
		var rec idemRecord
		err := b.withIdemBucket(ctx, "read idempotency key on "+strconv.Quote(channel), func(ctx context.Context, kv jetstream.KeyValue) error {
			e, err := kv.Get(ctx, idemKey(channel, key))
			if err != nil {
				return err
			}
			return json.Unmarshal(e.Value(), &rec)
		})
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return broker.Position{}, err
		}
		if rec.Offset > 0 {
			return broker.Position{Offset: rec.Offset, Epoch: rec.Epoch}, nil
		}
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return broker.Position{}, err
		}
	}
	return broker.Position{}, fmt.Errorf("the original of a duplicate (message %d) is gone and its key was not settled: %w", seq, broker.ErrUnavailable)
}

// findIdemBucket creates the idempotency bucket or brings its
// configuration up to date, and makes it the one in use. stale is the
// bucket a caller found gone (nil at first).
func (b *Broker) findIdemBucket(ctx context.Context, stale *kvRef) (*kvRef, error) {
	b.kvMu.Lock()
	defer b.kvMu.Unlock()
	if r := b.idemKV.Load(); r != nil && r != stale {
		return r, nil
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	cfg := jetstream.KeyValueConfig{
		Bucket:      b.idemBucket,
		Description: "Switchboard idempotency keys",
		History:     1,
		TTL:         idemMaxWindow,
		Storage:     jetstream.FileStorage,
		Replicas:    b.opts.Replicas,
	}
	if b.opts.MemoryStorage {
		cfg.Storage = jetstream.MemoryStorage
	}
	switch s, err := b.js.Stream(ctx, "KV_"+b.idemBucket); {
	case err == nil:
		cfg.Storage = s.CachedInfo().Config.Storage // JetStream cannot change it
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, b.fail("find idempotency bucket", err)
	}
	kv, err := b.js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, b.fail("find idempotency bucket", err)
	}
	r := &kvRef{kv: kv}
	b.idemKV.Store(r)
	return r, nil
}

// withIdemBucket runs op on the idempotency bucket, found or created on
// first use, once more on a recreated bucket if the first finds it gone.
func (b *Broker) withIdemBucket(ctx context.Context, what string, op func(ctx context.Context, kv jetstream.KeyValue) error) error {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	r := b.idemKV.Load()
	for attempt := 0; ; attempt++ {
		if r == nil || attempt > 0 {
			var err error
			if r, err = b.findIdemBucket(ctx, r); err != nil {
				return err
			}
		}
		err := op(ctx, r.kv)
		if err == nil {
			return nil
		}
		if attempt > 0 || !(isStreamGone(err) || errors.Is(err, jetstream.ErrBucketNotFound)) {
			return b.fail(what, err)
		}
	}
}
