package webhook

import (
	"context"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
)

// Queue keeps facts until the backend has their events, and the state the
// partitions' senders share. Each broker implements it next to its own code
// (memory, Redis, NATS); the server hands the broker to New when it
// implements Queue. Every method honours ctx and may be called
// concurrently. Partitions are numbered from 0; every node of a cluster
// uses the same number of them.
type Queue interface {
	// Append stores data at the end of partition p. Once it returns, the
	// entry outlives the node that wrote it (as far as the backend keeps
	// what it acknowledged; the memory broker keeps it in the process).
	Append(ctx context.Context, p int, data []byte) error
	// Lease takes the lease of partition p for owner, or renews it when
	// owner holds it, for ttl; it reports whether owner holds it now.
	Lease(ctx context.Context, p int, owner string, ttl time.Duration) (bool, error)
	// Read returns up to max of the oldest entries of partition p not yet
	// acknowledged, in the order they were appended, entries read before
	// by an owner that did not acknowledge them included. Only the lease
	// holder calls it.
	Read(ctx context.Context, p int, owner string, max int) ([]broker.QueueEntry, error)
	// Ack removes entries of partition p by id.
	Ack(ctx context.Context, p int, ids []string) error
	// LoadState returns the stored state of partition p, by key.
	LoadState(ctx context.Context, p int) (map[string][]byte, error)
	// SaveState sets and deletes keys of partition p's state.
	SaveState(ctx context.Context, p int, set map[string][]byte, del []string) error
	// Beat marks node alive for ttl. It reports whether the node's
	// previous mark was still there: false the first time, and after the
	// mark expired (the node may have been taken for dead).
	Beat(ctx context.Context, node string, ttl time.Duration) (bool, error)
	// Alive reports which of nodes have marked themselves alive within
	// their ttl.
	Alive(ctx context.Context, nodes []string) (map[string]bool, error)
}

// Backlogger is an optional capability of a Queue: how many entries of a
// partition are not acknowledged yet, for the backlog metric.
type Backlogger interface {
	Backlog(ctx context.Context, p int) (int64, error)
}
