// Package memory is the single-node broker: channel streams with history
// kept in process memory. It is Switchboard's embedded default and the
// in-process stand-in for a real broker in engine tests.
//
// History lives as long as the process: a restart starts every channel in a
// new epoch, so clients learn that what they missed cannot be recovered.
package memory

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
)

var _ broker.Broker = (*Broker)(nil)

const numShards = 64

// Options configure a memory broker. The zero value is usable.
type Options struct {
	// IdleTTL is how long a stream no node is subscribed to is kept after its
	// last publication (at least its history TTL). Default 5 minutes. An
	// evicted stream comes back in a new epoch.
	IdleTTL time.Duration
	// Now returns the current time; tests replace it. Default time.Now.
	Now func() time.Time
}

// Broker is an in-memory broker.Broker. Create it with New.
type Broker struct {
	opts    Options
	seed    maphash.Seed
	shards  [numShards]shard
	handler broker.Handler // set by Start, read-only after
	wh      webhookQueue   // the webhook queue (webhook.go)

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

type shard struct {
	mu      sync.Mutex
	streams map[string]*stream
}

// stream is one channel's state.
type stream struct {
	mu         sync.Mutex // guards all below; held while delivering, to keep order
	epoch      string
	top        uint64
	subscribed bool
	// hist is allocated with the first publication: a channel that is
	// subscribed but never published to (one per connection, often) keeps
	// only the fields above.
	hist *history
}

// history is what a stream keeps once something was published in it.
type history struct {
	ring       []broker.Publication // circular, capacity = history size
	head, size int
	last       time.Time // time of the newest publication
	ttl        time.Duration
	// idem holds the idempotency keys, allocated with the first: most
	// streams never see one.
	idem *streamKeys
}

// streamKeys are the idempotency keys a stream remembers, with order
// listing them oldest first for pruning; until is when the last one
// expires (the stream is not evicted before, or its keys would be
// forgotten early).
type streamKeys struct {
	keys  map[string]keyUse
	order []string
	until time.Time
}

// keyUse is what a stream remembers of an idempotency key.
type keyUse struct {
	offset  uint64
	expires time.Time
}

// New returns a memory broker.
func New(opts Options) *Broker {
	if opts.IdleTTL <= 0 {
		opts.IdleTTL = 5 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	b := &Broker{opts: opts, seed: maphash.MakeSeed(), stop: make(chan struct{})}
	for i := range b.shards {
		b.shards[i].streams = make(map[string]*stream)
	}
	return b
}

// Start implements broker.Broker. It starts the eviction of idle streams.
func (b *Broker) Start(ctx context.Context, h broker.Handler) error {
	if h == nil {
		return fmt.Errorf("memory broker: nil handler")
	}
	b.handler = h
	b.wg.Add(1)
	go b.evictLoop()
	return nil
}

func (b *Broker) shard(channel string) *shard {
	return &b.shards[maphash.String(b.seed, channel)%numShards]
}

// get returns the channel's stream, creating it when create is true.
func (b *Broker) get(channel string, create bool) *stream {
	sh := b.shard(channel)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s := sh.streams[channel]
	if s == nil && create {
		s = &stream{epoch: newEpoch()}
		sh.streams[channel] = s
	}
	return s
}

// Subscribe implements broker.Broker.
func (b *Broker) Subscribe(ctx context.Context, channel string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory broker: subscribe to %q: %w", channel, err)
	}
	for {
		s := b.get(channel, true)
		s.mu.Lock()
		if s.epoch != "" { // not evicted between get and lock
			s.subscribed = true
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
	}
}

// Unsubscribe implements broker.Broker. It only releases local state and
// succeeds whatever ctx.
func (b *Broker) Unsubscribe(ctx context.Context, channel string) error {
	if s := b.get(channel, false); s != nil {
		s.mu.Lock()
		s.subscribed = false
		s.mu.Unlock()
	}
	return nil
}

// Publish implements broker.Broker. The publication is delivered to the
// handler before Publish returns.
func (b *Broker) Publish(ctx context.Context, channel string, data []byte, opts broker.PublishOptions) (broker.Position, error) {
	if err := ctx.Err(); err != nil {
		return broker.Position{}, fmt.Errorf("memory broker: publish: %w", err)
	}
	now := b.opts.Now()
	for {
		s := b.get(channel, true)
		s.mu.Lock()
		if s.epoch == "" { // evicted between get and lock
			s.mu.Unlock()
			continue
		}
		if k := opts.IdempotencyKey; k != "" {
			s.pruneKeys(now)
			if use, ok := s.keys().lookup(k); ok && now.Before(use.expires) {
				pos := broker.Position{Offset: use.offset, Epoch: s.epoch}
				s.mu.Unlock()
				return pos, fmt.Errorf("memory broker: publish to %q: %w", channel, broker.ErrDuplicate)
			}
		}
		s.top++
		pub := broker.Publication{Offset: s.top, Data: data, Time: now}
		s.store(pub, opts, now)
		pos := broker.Position{Offset: s.top, Epoch: s.epoch}
		if k := opts.IdempotencyKey; k != "" {
			s.rememberKey(k, s.top, now.Add(opts.IdempotencyWindow))
		}
		if s.subscribed {
			b.handler.HandlePublication(channel, pub, s.epoch)
		}
		s.mu.Unlock()
		return pos, nil
	}
}

// PublishEvent implements broker.Broker.
func (b *Broker) PublishEvent(ctx context.Context, channel string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory broker: publish event to %q: %w", channel, err)
	}
	s := b.get(channel, false)
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subscribed {
		b.handler.HandleEvent(channel, data)
	}
	return nil
}

// keys returns the stream's idempotency keys, nil for none. s.mu must be
// held.
func (s *stream) keys() *streamKeys {
	if s.hist == nil {
		return nil
	}
	return s.hist.idem
}

// store appends pub to the ring, resizing it to the requested history size.
// s.mu must be held.
func (s *stream) store(pub broker.Publication, opts broker.PublishOptions, now time.Time) {
	if s.hist == nil {
		s.hist = &history{}
	}
	s.hist.store(pub, opts, now)
}

func (s *history) store(pub broker.Publication, opts broker.PublishOptions, now time.Time) {
	s.last = now
	s.ttl = opts.HistoryTTL
	if opts.HistorySize <= 0 {
		s.ring, s.head, s.size = nil, 0, 0
		return
	}
	if len(s.ring) != opts.HistorySize {
		kept := s.items(-1)
		if len(kept) > opts.HistorySize-1 {
			kept = kept[len(kept)-(opts.HistorySize-1):]
		}
		s.ring = make([]broker.Publication, opts.HistorySize)
		s.head, s.size = 0, copy(s.ring, kept)
	}
	if s.size == len(s.ring) {
		s.ring[s.head] = broker.Publication{}
		s.head = (s.head + 1) % len(s.ring)
		s.size--
	}
	s.ring[(s.head+s.size)%len(s.ring)] = pub
	s.size++
	s.trim(now)
}

// rememberKey records that key published offset, until expires. s.mu must
// be held.
func (s *stream) rememberKey(key string, offset uint64, expires time.Time) {
	h := s.hist // allocated by store, which comes first
	if h.idem == nil {
		h.idem = &streamKeys{keys: make(map[string]keyUse)}
	}
	k := h.idem
	k.keys[key] = keyUse{offset: offset, expires: expires}
	k.order = append(k.order, key)
	if expires.After(k.until) {
		k.until = expires
	}
}

// lookup returns what k remembers of key; k may be nil.
func (k *streamKeys) lookup(key string) (keyUse, bool) {
	if k == nil {
		return keyUse{}, false
	}
	use, ok := k.keys[key]
	return use, ok
}

// keysExpired reports whether every idempotency key of s has expired.
func (s *stream) keysExpired(now time.Time) bool {
	k := s.keys()
	return k == nil || now.After(k.until)
}

// pruneKeys forgets the expired idempotency keys at the front of keyOrder.
// A key with a longer window than later ones holds back their pruning (not
// their expiry: Publish checks it). s.mu must be held.
func (s *stream) pruneKeys(now time.Time) {
	k := s.keys()
	if k == nil {
		return
	}
	n := 0
	for n < len(k.order) {
		key := k.order[n]
		if use, ok := k.keys[key]; ok && now.Before(use.expires) {
			break
		}
		delete(k.keys, key)
		n++
	}
	switch {
	case n == len(k.order):
		s.hist.idem = nil // all expired: the stream is back to its small self
	case n > 0:
		k.order = append(k.order[:0], k.order[n:]...)
	}
}

// trim drops publications older than the history TTL. s.mu must be held.
func (s *history) trim(now time.Time) {
	if s == nil || s.ttl <= 0 {
		return
	}
	for s.size > 0 && now.Sub(s.ring[s.head].Time) > s.ttl {
		s.ring[s.head] = broker.Publication{}
		s.head = (s.head + 1) % len(s.ring)
		s.size--
	}
}

// items returns up to n of the newest kept publications in offset order
// (all when n < 0; none from a nil history). s.mu must be held.
func (s *history) items(n int) []broker.Publication {
	if s == nil {
		return nil
	}
	if n < 0 || n > s.size {
		n = s.size
	}
	out := make([]broker.Publication, 0, n)
	for i := s.size - n; i < s.size; i++ {
		out = append(out, s.ring[(s.head+i)%len(s.ring)])
	}
	return out
}

// History implements broker.Broker.
func (b *Broker) History(ctx context.Context, channel string, q broker.HistoryQuery) (broker.HistoryResult, error) {
	if err := ctx.Err(); err != nil {
		return broker.HistoryResult{}, fmt.Errorf("memory broker: history: %w", err)
	}
	s := b.get(channel, true)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.epoch == "" { // evicted between get and lock: it had nothing to read
		return b.History(ctx, channel, q)
	}
	s.hist.trim(b.opts.Now())
	pos := broker.Position{Offset: s.top, Epoch: s.epoch}
	res, err := broker.SelectHistory(pos, q, func(uint64) ([]broker.Publication, error) {
		return s.hist.items(-1), nil
	})
	if err != nil {
		return res, fmt.Errorf("memory broker: history of %q: %w", channel, err)
	}
	return res, nil
}

// Close implements broker.Broker.
func (b *Broker) Close(ctx context.Context) error {
	b.stopOnce.Do(func() { close(b.stop) })
	b.wg.Wait()
	return nil
}

func (b *Broker) evictLoop() {
	defer b.wg.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.evict()
		}
	}
}

// evict drops streams that no node is subscribed to, that have been idle
// longer than both their history TTL and the idle TTL, and whose
// idempotency keys have all expired. It prunes expired keys of the others.
func (b *Broker) evict() {
	now := b.opts.Now()
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		for name, s := range sh.streams {
			s.mu.Lock()
			keep, last := b.opts.IdleTTL, time.Time{}
			if s.hist != nil {
				keep, last = max(s.hist.ttl, keep), s.hist.last
			}
			if !s.subscribed && now.Sub(last) > keep && s.keysExpired(now) {
				s.epoch = "" // tells a Publish that raced with us to retry
				delete(sh.streams, name)
			} else {
				s.pruneKeys(now)
			}
			s.mu.Unlock()
		}
		sh.mu.Unlock()
	}
}

// newEpoch returns a short random epoch name.
func newEpoch() string {
	var b [5]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])
}
