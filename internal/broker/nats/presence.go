package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboardhq/switchboard/internal/broker"
)

// presenceEntry is the value of one presence key.
type presenceEntry struct {
	broker.ClientInfo
	// Expires is when the entry stops counting unless refreshed, in Unix
	// milliseconds.
	Expires int64 `json:"exp"`
}

// findBucket creates the presence bucket or brings its configuration up to
// date, and makes it the one in use. stale is the bucket a caller found
// gone (nil at first).
func (b *Broker) findBucket(ctx context.Context, stale *kvRef) (*kvRef, error) {
	b.kvMu.Lock()
	defer b.kvMu.Unlock()
	if r := b.kv.Load(); r != nil && r != stale {
		return r, nil
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	cfg := jetstream.KeyValueConfig{
		Bucket:      b.bucket,
		Description: "Switchboard presence",
		History:     1,
		TTL:         b.opts.PresenceMaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    b.opts.Replicas,
	}
	if b.opts.MemoryStorage {
		cfg.Storage = jetstream.MemoryStorage
	}
	// An existing bucket keeps its storage (JetStream refuses to change it,
	// as for the history stream); the rest of its configuration follows.
	switch s, err := b.js.Stream(ctx, "KV_"+b.bucket); {
	case err == nil:
		if have := s.CachedInfo().Config.Storage; have != cfg.Storage {
			b.log.Warn("presence bucket keeps its storage: JetStream cannot change it in place",
				"bucket", b.bucket, "storage", have.String(), "configured", cfg.Storage.String())
			cfg.Storage = have
		}
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, b.fail("find presence bucket", err)
	}
	kv, err := b.js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, b.fail("find presence bucket", err)
	}
	r := &kvRef{kv: kv}
	b.kv.Store(r)
	return r, nil
}

// withBucket runs op on the presence bucket, once more on a recreated
// bucket if the first finds it gone (the server lost its data).
func (b *Broker) withBucket(ctx context.Context, what string, op func(ctx context.Context, kv jetstream.KeyValue) error) error {
	if b.closed.Load() {
		return fmt.Errorf("nats broker: %s: %w", what, broker.ErrClosed)
	}
	ctx, cancel := b.bound(ctx)
	defer cancel()
	for attempt := 0; ; attempt++ {
		r := b.kv.Load()
		err := op(ctx, r.kv)
		if err == nil {
			return nil
		}
		if attempt > 0 || !(isStreamGone(err) || errors.Is(err, jetstream.ErrBucketNotFound)) {
			return b.fail(what, err)
		}
		if _, err := b.findBucket(ctx, r); err != nil {
			return err
		}
	}
}

func presenceKey(channel, client string) string {
	return token(channel) + "." + token(client)
}

// AddPresence implements broker.PresenceStore: the entry counts until ttl
// has passed (at most Options.PresenceMaxAge) unless added again.
func (b *Broker) AddPresence(ctx context.Context, channel string, info broker.ClientInfo, ttl time.Duration) error {
	if channel == "" || info.Client == "" {
		return errors.New("nats broker: add presence: empty channel or client")
	}
	if ttl <= 0 || ttl > b.opts.PresenceMaxAge {
		ttl = b.opts.PresenceMaxAge
	}
	val, err := json.Marshal(presenceEntry{ClientInfo: info, Expires: b.opts.Now().Add(ttl).UnixMilli()})
	if err != nil {
		return fmt.Errorf("nats broker: add presence: %w", err)
	}
	return b.withBucket(ctx, "add presence to "+strconv.Quote(channel), func(ctx context.Context, kv jetstream.KeyValue) error {
		_, err := kv.Put(ctx, presenceKey(channel, info.Client), val)
		return err
	})
}

// RemovePresence implements broker.PresenceStore.
func (b *Broker) RemovePresence(ctx context.Context, channel, client string) error {
	if channel == "" || client == "" {
		return nil
	}
	return b.withBucket(ctx, "remove presence from "+strconv.Quote(channel), func(ctx context.Context, kv jetstream.KeyValue) error {
		return kv.Delete(ctx, presenceKey(channel, client))
	})
}

// Presence implements broker.PresenceStore; clients come sorted by id.
func (b *Broker) Presence(ctx context.Context, channel string) ([]broker.ClientInfo, error) {
	out := []broker.ClientInfo{}
	if channel == "" {
		return out, nil
	}
	err := b.withBucket(ctx, "presence of "+strconv.Quote(channel), func(ctx context.Context, kv jetstream.KeyValue) error {
		out = out[:0]
		w, err := kv.Watch(ctx, token(channel)+".*", jetstream.IgnoreDeletes())
		if err != nil {
			return err
		}
		defer w.Stop()
		now := b.opts.Now().UnixMilli()
		for {
			select {
			case e := <-w.Updates():
				if e == nil { // all current entries seen (or the watcher ended)
					return nil
				}
				var pe presenceEntry
				if json.Unmarshal(e.Value(), &pe) == nil && pe.Expires > now {
					out = append(out, pe.ClientInfo)
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Client < out[j].Client })
	return out, nil
}

// PresenceStats implements broker.PresenceStore.
func (b *Broker) PresenceStats(ctx context.Context, channel string) (broker.PresenceStats, error) {
	list, err := b.Presence(ctx, channel)
	if err != nil {
		return broker.PresenceStats{}, err
	}
	return broker.CountPresence(list), nil
}
