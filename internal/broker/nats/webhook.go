package nats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboardhq/switchboard/internal/broker"
)

// webhookQueue is the webhook queue (the webhook package's Queue) on
// JetStream:
//
//	stream <PREFIX>_WEBHOOK, work-queue retention, subjects <prefix>.webhook.<p>
//	durable pull consumer webhook-<p> per partition, explicit acks
//	bucket <prefix>_webhook_lease: partition leases and node marks, TTL = lease TTL
//	bucket <prefix>_webhook_state: key p<p>.<channel token> -> membership state
//	  (and p<p>.<token of "$" + client id> -> a connected client's record)
//
// A deleted state key is purged from the bucket's stream rather than
// marked deleted: a key per connection would otherwise leave a delete
// marker per connection ever made.
//
// A sender fetches facts, keeps the messages until the backend answered
// 2xx, then acknowledges them, which removes them from the stream. The
// messages a sender read and still holds come back first on its next Read.
// Those of a sender that died are redelivered by JetStream once
// WebhookAckWait has passed since they were delivered; a sender that finds
// facts outstanding that it does not hold waits that long before its first
// fetch, so that the redelivered ones come before any newer ones.
type webhookQueue struct {
	ready atomic.Bool // the stream and buckets are set up: they are read-only from then on

	// mu guards what follows; stream, leases, state and leaseTT are set
	// once, under it, before ready.
	mu      sync.Mutex
	stream  jetstream.Stream
	leases  jetstream.KeyValue
	state   jetstream.KeyValue
	stateS  jetstream.Stream // the state bucket's stream
	stateSb string           // the subject prefix of the state bucket's keys
	leaseTT time.Duration
	cons    map[int]jetstream.Consumer
	held    map[int]map[uint64]jetstream.Msg // read, not acknowledged, by stream sequence
	holdoff map[int]time.Time                // no fetch before, while others' facts are outstanding
}

func (b *Broker) whBase() string { return strings.ReplaceAll(b.opts.Prefix, ".", "_") }

// whSetup finds or creates the stream and buckets.
func (b *Broker) whSetup(ctx context.Context, leaseTTL time.Duration) error {
	q := &b.wh
	if q.ready.Load() {
		return nil // without the lock, which senders hold across fetches
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ready.Load() {
		return nil
	}
	storage := jetstream.FileStorage
	if b.opts.MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	s, err := b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        strings.ToUpper(b.whBase()) + "_WEBHOOK",
		Description: "Switchboard webhook facts",
		Subjects:    []string{b.opts.Prefix + ".webhook.*"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     storage,
		Replicas:    b.opts.Replicas,
	})
	if err != nil {
		return b.fail("webhook stream", err)
	}
	if leaseTTL <= 0 {
		leaseTTL = b.opts.WebhookAckWait
	}
	leases, err := b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: b.whBase() + "_webhook_lease", Description: "Switchboard webhook leases",
		History: 1, TTL: leaseTTL, Storage: storage, Replicas: b.opts.Replicas,
	})
	if err != nil {
		return b.fail("webhook lease bucket", err)
	}
	state, err := b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: b.whBase() + "_webhook_state", Description: "Switchboard webhook state",
		History: 1, Storage: storage, Replicas: b.opts.Replicas,
	})
	if err != nil {
		return b.fail("webhook state bucket", err)
	}
	stateBucket := b.whBase() + "_webhook_state"
	stateS, err := b.js.Stream(ctx, "KV_"+stateBucket)
	if err != nil {
		return b.fail("webhook state stream", err)
	}
	q.stream, q.leases, q.state, q.leaseTT = s, leases, state, leaseTTL
	q.stateS, q.stateSb = stateS, "$KV."+stateBucket+"."
	q.cons, q.held, q.holdoff = map[int]jetstream.Consumer{}, map[int]map[uint64]jetstream.Msg{}, map[int]time.Time{}
	q.ready.Store(true)
	return nil
}

func (b *Broker) whSubject(p int) string { return b.opts.Prefix + ".webhook." + strconv.Itoa(p) }

// Append implements webhook.Queue.
func (b *Broker) Append(ctx context.Context, p int, data []byte) error {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	if err := b.whSetup(ctx, 0); err != nil {
		return err
	}
	if _, err := b.js.Publish(ctx, b.whSubject(p), data); err != nil {
		return b.fail("webhook append", err)
	}
	return nil
}

// Lease implements webhook.Queue. The lease bucket's TTL is the ttl of the
// first call on a new bucket; every node must use the same.
func (b *Broker) Lease(ctx context.Context, p int, owner string, ttl time.Duration) (bool, error) {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	if err := b.whSetup(ctx, ttl); err != nil {
		return false, err
	}
	kv := b.wh.leases
	key := "p" + strconv.Itoa(p)
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		if _, err := kv.Create(ctx, key, []byte(owner)); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) {
				return false, nil
			}
			return false, b.fail("webhook lease", err)
		}
		// Newly taken: what this node held of the partition before may
		// have gone to another sender since, and facts may be
		// outstanding with one that died.
		b.wh.mu.Lock()
		delete(b.wh.held, p)
		delete(b.wh.holdoff, p)
		b.wh.mu.Unlock()
		return true, nil
	}
	if err != nil {
		return false, b.fail("webhook lease", err)
	}
	if string(e.Value()) != owner {
		return false, nil
	}
	if _, err := kv.Update(ctx, key, []byte(owner), e.Revision()); err != nil {
		if apiCode(err) == jetstream.JSErrCodeStreamWrongLastSequence {
			return false, nil
		}
		return false, b.fail("webhook lease", err)
	}
	return true, nil
}

// consumer returns partition p's durable consumer. b.wh.mu must be held.
func (b *Broker) whConsumerLocked(ctx context.Context, p int) (jetstream.Consumer, error) {
	if c := b.wh.cons[p]; c != nil {
		return c, nil
	}
	c, err := b.wh.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       "webhook-" + strconv.Itoa(p),
		FilterSubject: b.whSubject(p),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       b.opts.WebhookAckWait,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, b.fail("webhook consumer", err)
	}
	b.wh.cons[p] = c
	return c, nil
}

// Read implements webhook.Queue.
func (b *Broker) Read(ctx context.Context, p int, _ string, max int) ([]broker.QueueEntry, error) {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	if err := b.whSetup(ctx, 0); err != nil {
		return nil, err
	}
	q := &b.wh
	q.mu.Lock()
	defer q.mu.Unlock()
	if held := q.held[p]; len(held) > 0 {
		seqs := make([]uint64, 0, len(held))
		for s := range held {
			seqs = append(seqs, s)
		}
		slices.Sort(seqs)
		out := make([]broker.QueueEntry, 0, min(max, len(seqs)))
		for _, s := range seqs[:min(max, len(seqs))] {
			out = append(out, broker.QueueEntry{ID: strconv.FormatUint(s, 10), Data: held[s].Data()})
		}
		return out, nil
	}
	c, err := b.whConsumerLocked(ctx, p)
	if err != nil {
		return nil, err
	}
	now := b.opts.Now()
	if until, ok := q.holdoff[p]; ok {
		if now.Before(until) {
			return nil, nil
		}
	} else {
		info, err := c.Info(ctx)
		if err != nil {
			delete(q.cons, p)
			return nil, b.fail("webhook consumer info", err)
		}
		if info.NumAckPending > 0 {
			// Another sender's facts are outstanding: let them come back
			// first.
			q.holdoff[p] = now.Add(b.opts.WebhookAckWait)
			return nil, nil
		}
	}
	batch, err := c.FetchNoWait(max)
	if err != nil {
		delete(q.cons, p)
		return nil, b.fail("webhook fetch", err)
	}
	held := map[uint64]jetstream.Msg{}
	var out []broker.QueueEntry
	for m := range batch.Messages() {
		meta, err := m.Metadata()
		if err != nil {
			continue
		}
		held[meta.Sequence.Stream] = m
		out = append(out, broker.QueueEntry{ID: strconv.FormatUint(meta.Sequence.Stream, 10), Data: m.Data()})
	}
	if err := batch.Error(); err != nil && len(out) == 0 {
		return nil, b.fail("webhook fetch", err)
	}
	q.held[p] = held
	q.holdoff[p] = time.Time{} // fetched: nobody else's are outstanding any more
	return out, nil
}

// Ack implements webhook.Queue: the facts leave the stream.
func (b *Broker) Ack(ctx context.Context, p int, ids []string) error {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	q := &b.wh
	q.mu.Lock()
	defer q.mu.Unlock()
	held := q.held[p]
	for i, id := range ids {
		seq, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			return fmt.Errorf("nats broker: webhook ack: bad id %q", id)
		}
		m := held[seq]
		if m == nil {
			continue
		}
		// The last one waits for the server, which has then taken the
		// others, sent before it on the same connection.
		if i == len(ids)-1 {
			err = m.DoubleAck(ctx)
		} else {
			err = m.Ack()
		}
		if err != nil && !errors.Is(err, jetstream.ErrMsgAlreadyAckd) {
			return b.fail("webhook ack", err)
		}
		delete(held, seq)
	}
	return nil
}

// Backlog implements webhook.Backlogger.
func (b *Broker) Backlog(ctx context.Context, p int) (int64, error) {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	b.wh.mu.Lock()
	c, err := b.whConsumerLocked(ctx, p)
	b.wh.mu.Unlock()
	if err != nil {
		return 0, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, b.fail("webhook backlog", err)
	}
	return int64(info.NumPending) + int64(info.NumAckPending), nil
}

func stateKey(p int, channel string) string { return "p" + strconv.Itoa(p) + "." + token(channel) }

// LoadState implements webhook.Queue.
func (b *Broker) LoadState(ctx context.Context, p int) (map[string][]byte, error) {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	if err := b.whSetup(ctx, 0); err != nil {
		return nil, err
	}
	w, err := b.wh.state.Watch(ctx, "p"+strconv.Itoa(p)+".*", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, b.fail("webhook load state", err)
	}
	defer func() { _ = w.Stop() }()
	out := map[string][]byte{}
	for {
		select {
		case e := <-w.Updates():
			if e == nil {
				return out, nil
			}
			_, tok, _ := strings.Cut(e.Key(), ".")
			if ch, ok := untoken(tok); ok {
				out[ch] = e.Value()
			}
		case <-ctx.Done():
			return nil, b.fail("webhook load state", ctx.Err())
		}
	}
}

// SaveState implements webhook.Queue.
func (b *Broker) SaveState(ctx context.Context, p int, set map[string][]byte, del []string) error {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	if err := b.whSetup(ctx, 0); err != nil {
		return err
	}
	for ch, v := range set {
		if _, err := b.wh.state.Put(ctx, stateKey(p, ch), v); err != nil {
			return b.fail("webhook save state", err)
		}
	}
	for _, ch := range del {
		if err := b.wh.stateS.Purge(ctx, jetstream.WithPurgeSubject(b.wh.stateSb+stateKey(p, ch))); err != nil {
			return b.fail("webhook save state", err)
		}
	}
	return nil
}

// Beat implements webhook.Queue: the mark lasts the lease bucket's TTL.
func (b *Broker) Beat(ctx context.Context, node string, ttl time.Duration) (bool, error) {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	if err := b.whSetup(ctx, ttl); err != nil {
		return false, err
	}
	key := "node." + token(node)
	_, err := b.wh.leases.Get(ctx, key)
	had := err == nil
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, b.fail("webhook beat", err)
	}
	if _, err := b.wh.leases.Put(ctx, key, []byte("1")); err != nil {
		return false, b.fail("webhook beat", err)
	}
	return had, nil
}

// Alive implements webhook.Queue.
func (b *Broker) Alive(ctx context.Context, nodes []string) (map[string]bool, error) {
	ctx, cancel := b.bound(ctx)
	defer cancel()
	if err := b.whSetup(ctx, 0); err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		_, err := b.wh.leases.Get(ctx, "node."+token(n))
		switch {
		case err == nil:
			out[n] = true
		case errors.Is(err, jetstream.ErrKeyNotFound):
			out[n] = false
		default:
			return nil, b.fail("webhook alive", err)
		}
	}
	return out, nil
}

// untoken reverses token.
func untoken(t string) (string, bool) {
	if !strings.Contains(t, "_") {
		return t, true
	}
	var sb strings.Builder
	for i := 0; i < len(t); i++ {
		if t[i] != '_' {
			sb.WriteByte(t[i])
			continue
		}
		if i+3 > len(t) {
			return "", false
		}
		v, err := strconv.ParseUint(t[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		sb.WriteByte(byte(v))
		i += 2
	}
	return sb.String(), true
}
