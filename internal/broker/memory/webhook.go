package memory

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
)

// webhookQueue is the memory broker's webhook queue (the webhook package's
// Queue): partitions of entries, leases, state and liveness marks, all in
// this process. Everything is lost when the process ends; a single node
// has no other node to hand its partitions to anyway.
type webhookQueue struct {
	mu     sync.Mutex // guards all below
	parts  map[int]*whPartition
	leases map[int]whLease
	alive  map[string]time.Time // node -> expiry
	nextID uint64
}

type whPartition struct {
	entries []broker.QueueEntry // not acknowledged, oldest first
	state   map[string][]byte
}

type whLease struct {
	owner string
	until time.Time
}

func (b *Broker) now() time.Time {
	if b.opts.Now != nil {
		return b.opts.Now()
	}
	return time.Now()
}

// partLocked returns partition p, creating it. b.wh.mu must be held.
func (b *Broker) partLocked(p int) *whPartition {
	q := &b.wh
	if q.parts == nil {
		q.parts, q.leases, q.alive = map[int]*whPartition{}, map[int]whLease{}, map[string]time.Time{}
	}
	pt := q.parts[p]
	if pt == nil {
		pt = &whPartition{state: map[string][]byte{}}
		q.parts[p] = pt
	}
	return pt
}

func whErr(ctx context.Context, what string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory broker: webhook %s: %w", what, err)
	}
	return nil
}

// Append implements webhook.Queue.
func (b *Broker) Append(ctx context.Context, p int, data []byte) error {
	if err := whErr(ctx, "append"); err != nil {
		return err
	}
	b.wh.mu.Lock()
	defer b.wh.mu.Unlock()
	pt := b.partLocked(p)
	b.wh.nextID++
	pt.entries = append(pt.entries, broker.QueueEntry{ID: strconv.FormatUint(b.wh.nextID, 10), Data: data})
	return nil
}

// Lease implements webhook.Queue.
func (b *Broker) Lease(ctx context.Context, p int, owner string, ttl time.Duration) (bool, error) {
	if err := whErr(ctx, "lease"); err != nil {
		return false, err
	}
	b.wh.mu.Lock()
	defer b.wh.mu.Unlock()
	b.partLocked(p)
	now := b.now()
	l := b.wh.leases[p]
	if l.owner != owner && now.Before(l.until) {
		return false, nil
	}
	b.wh.leases[p] = whLease{owner: owner, until: now.Add(ttl)}
	return true, nil
}

// Read implements webhook.Queue: entries stay until acknowledged, so a
// read after an unacknowledged one returns them again.
func (b *Broker) Read(ctx context.Context, p int, _ string, max int) ([]broker.QueueEntry, error) {
	if err := whErr(ctx, "read"); err != nil {
		return nil, err
	}
	b.wh.mu.Lock()
	defer b.wh.mu.Unlock()
	pt := b.partLocked(p)
	n := min(max, len(pt.entries))
	return append([]broker.QueueEntry(nil), pt.entries[:n]...), nil
}

// Ack implements webhook.Queue.
func (b *Broker) Ack(ctx context.Context, p int, ids []string) error {
	if err := whErr(ctx, "ack"); err != nil {
		return err
	}
	drop := make(map[string]bool, len(ids))
	for _, id := range ids {
		drop[id] = true
	}
	b.wh.mu.Lock()
	defer b.wh.mu.Unlock()
	pt := b.partLocked(p)
	keep := pt.entries[:0]
	for _, e := range pt.entries {
		if !drop[e.ID] {
			keep = append(keep, e)
		}
	}
	clear(pt.entries[len(keep):])
	pt.entries = keep
	return nil
}

// Backlog implements webhook.Backlogger.
func (b *Broker) Backlog(ctx context.Context, p int) (int64, error) {
	if err := whErr(ctx, "backlog"); err != nil {
		return 0, err
	}
	b.wh.mu.Lock()
	defer b.wh.mu.Unlock()
	return int64(len(b.partLocked(p).entries)), nil
}

// LoadState implements webhook.Queue.
func (b *Broker) LoadState(ctx context.Context, p int) (map[string][]byte, error) {
	if err := whErr(ctx, "load state"); err != nil {
		return nil, err
	}
	b.wh.mu.Lock()
	defer b.wh.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range b.partLocked(p).state {
		out[k] = v
	}
	return out, nil
}

// SaveState implements webhook.Queue.
func (b *Broker) SaveState(ctx context.Context, p int, set map[string][]byte, del []string) error {
	if err := whErr(ctx, "save state"); err != nil {
		return err
	}
	b.wh.mu.Lock()
	defer b.wh.mu.Unlock()
	pt := b.partLocked(p)
	for k, v := range set {
		pt.state[k] = v
	}
	for _, k := range del {
		delete(pt.state, k)
	}
	return nil
}

// Beat implements webhook.Queue.
func (b *Broker) Beat(ctx context.Context, node string, ttl time.Duration) (bool, error) {
	if err := whErr(ctx, "beat"); err != nil {
		return false, err
	}
	b.wh.mu.Lock()
	defer b.wh.mu.Unlock()
	b.partLocked(0)
	now := b.now()
	had := now.Before(b.wh.alive[node])
	b.wh.alive[node] = now.Add(ttl)
	return had, nil
}

// Alive implements webhook.Queue.
func (b *Broker) Alive(ctx context.Context, nodes []string) (map[string]bool, error) {
	if err := whErr(ctx, "alive"); err != nil {
		return nil, err
	}
	b.wh.mu.Lock()
	defer b.wh.mu.Unlock()
	b.partLocked(0)
	now := b.now()
	out := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		out[n] = now.Before(b.wh.alive[n])
	}
	return out, nil
}
