// Package broker is the contract between Switchboard's engine and the systems
// that carry publications between nodes and keep channel history: the
// in-memory broker for a single node, and Redis or NATS for many.
//
// Like database/sql/driver, it holds interfaces and value types only and
// imports nothing but the standard library. Implementations live in
// subpackages and must pass the conformance suite in brokertest.
package broker

import (
	"context"
	"errors"
	"time"
)

// Publication is one message in a channel's stream.
type Publication struct {
	// Offset is the publication's position in its channel: the first
	// publication of an epoch has offset 1 and each next one exactly one more.
	Offset uint64
	// Data is the JSON value published. Brokers and the engine treat it as
	// immutable once published: it is shared by history and every delivery.
	Data []byte
	// Time is when the broker accepted the publication.
	Time time.Time
}

// Position identifies a point in a channel's stream. Offsets are only
// comparable within one Epoch: a new epoch means the previous history was
// lost (a broker restart without persistence, an evicted idle channel), so a
// client holding a position of another epoch cannot be caught up from history.
type Position struct {
	// Offset of the newest publication (0 when the channel has none).
	Offset uint64
	// Epoch names the current incarnation of the channel's stream.
	Epoch string
}

// PublishOptions tune how one publication is stored.
type PublishOptions struct {
	// HistorySize is how many publications the channel's history keeps; 0
	// keeps none (offsets still grow).
	HistorySize int
	// HistoryTTL is how long a publication stays in history; 0 with a
	// HistorySize keeps it until it is pushed out by newer ones.
	HistoryTTL time.Duration
	// IdempotencyKey, when not empty, makes the publication happen at most
	// once per channel within IdempotencyWindow: a Publish to the same
	// channel with the same key, from any node, while the key is
	// remembered stores and delivers nothing and returns the position of
	// the publication that used the key first with an error wrapping
	// ErrDuplicate. Concurrent Publish calls with one key store exactly
	// one publication. The same key on another channel is another key.
	IdempotencyKey string
	// IdempotencyWindow is how long a key is remembered after the
	// publication that used it first; after that the key publishes again.
	// It must be positive with an IdempotencyKey and is ignored without
	// one. A broker may cut windows beyond a documented limit (NATS: 24h).
	IdempotencyWindow time.Duration
}

// HistoryQuery selects publications from a channel's history.
type HistoryQuery struct {
	// Since, when not nil, asks for publications after Since.Offset only. A
	// Since with another epoch than the stream's fails with ErrEpochMismatch;
	// the result then still carries the current Position.
	Since *Position
	// Limit caps how many publications are returned; 0 returns none (only the
	// position), a negative value returns all that match.
	Limit int
	// Reverse returns the newest publications first.
	Reverse bool
}

// HistoryResult is the answer to a history query.
type HistoryResult struct {
	// Publications in offset order (or reverse order when asked).
	Publications []Publication
	// Position is the channel's current top, read atomically with Publications.
	Position Position
}

// Handler receives what a broker delivers to this node. The engine implements
// it. A broker calls HandlePublication for each publication in every channel
// the node is subscribed to, in offset order per channel, from one goroutine
// per channel at a time; the handler must not block.
type Handler interface {
	HandlePublication(channel string, pub Publication, epoch string)
	// HandleEvent receives an ephemeral channel event (a join or leave
	// push): data is the complete push, already encoded.
	HandleEvent(channel string, data []byte)
}

// ControlHandler is implemented by the engine's Handler too: a broker that
// implements Controller delivers control messages to it.
type ControlHandler interface {
	// HandleControl receives one control message sent by any node (this
	// one included) with PublishControl.
	HandleControl(data []byte)
}

// Controller is an optional capability of brokers that connect several
// nodes: a channel between the nodes themselves, for node announcements and
// for server API calls that concern clients of another node. The engine
// finds it with a type assertion; without it a node runs alone.
type Controller interface {
	// PublishControl delivers data to the ControlHandler of every node
	// started on the same backend, this node included.
	PublishControl(ctx context.Context, data []byte) error
}

// Broker moves publications between nodes and keeps history. Every method
// may be called concurrently. Implementations must deliver each publication
// of a channel to every node subscribed to that channel, in offset order.
//
// Every method honours its ctx: once ctx is done, a call returns promptly
// with an error wrapping ctx.Err(), including a call that could have been
// answered without I/O, and no wait (a lock held by another call, a retry
// pause) outlasts it. Unsubscribe is the exception: it may complete
// whatever ctx, since a node leaving a channel must release its state.
type Broker interface {
	// Start connects the broker and starts delivering to h. It is called once,
	// before any other method.
	Start(ctx context.Context, h Handler) error
	// Subscribe makes this node receive the channel's publications. The engine
	// calls it when the first local client subscribes; it must be idempotent.
	Subscribe(ctx context.Context, channel string) error
	// Unsubscribe stops delivery of the channel to this node. The engine calls
	// it when the last local client leaves; it must be idempotent.
	Unsubscribe(ctx context.Context, channel string) error
	// Publish stores data in the channel's stream and delivers it to the
	// subscribed nodes, returning the position it was stored at. The broker
	// takes ownership of data. With opts.IdempotencyKey it first checks
	// the key, atomically with the store: a repeat within the window
	// returns the original position and an error wrapping ErrDuplicate
	// (see PublishOptions).
	Publish(ctx context.Context, channel string, data []byte, opts PublishOptions) (Position, error)
	// PublishEvent delivers data to the nodes subscribed to the channel
	// without storing it or giving it an offset (join and leave pushes).
	PublishEvent(ctx context.Context, channel string, data []byte) error
	// History reads a channel's stream.
	History(ctx context.Context, channel string, q HistoryQuery) (HistoryResult, error)
	// Close releases the broker's resources. No method is called after it.
	Close(ctx context.Context) error
}

// ClientInfo describes one subscriber in a channel's presence.
type ClientInfo struct {
	// Client is the connection's client id, unique across nodes.
	Client string `json:"client"`
	// User is the authenticated user id, empty for anonymous clients.
	User string `json:"user,omitempty"`
	// Transport names how the client is connected (websocket, sse, ...).
	Transport string `json:"transport,omitempty"`
	// Info is what the application backend's subscribe hook attached to
	// the subscription (a JSON value), empty for none.
	Info RawJSON `json:"info,omitempty"`
}

// RawJSON is an encoded JSON value, kept as it is when encoded again. It
// is a string, unlike json.RawMessage, so that structs holding it stay
// comparable with ==.
type RawJSON string

// MarshalJSON returns r itself, or null when r is empty.
func (r RawJSON) MarshalJSON() ([]byte, error) {
	if r == "" {
		return []byte("null"), nil
	}
	return []byte(r), nil
}

// UnmarshalJSON keeps a copy of b (empty for null).
func (r *RawJSON) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*r = ""
		return nil
	}
	*r = RawJSON(b)
	return nil
}

// PresenceStats counts a channel's presence.
type PresenceStats struct {
	// Clients is the number of subscribed connections.
	Clients int `json:"num_clients"`
	// Users is the number of distinct non-empty user ids among them.
	Users int `json:"num_users"`
}

// PresenceStore keeps who is subscribed to each channel, across nodes. The
// engine adds a client when it subscribes and removes it when it leaves;
// implementations for shared stores expire entries that are not refreshed
// within ttl, so that the clients of a dead node vanish.
// Its methods honour ctx as Broker's do.
type PresenceStore interface {
	AddPresence(ctx context.Context, channel string, info ClientInfo, ttl time.Duration) error
	RemovePresence(ctx context.Context, channel, client string) error
	Presence(ctx context.Context, channel string) ([]ClientInfo, error)
	PresenceStats(ctx context.Context, channel string) (PresenceStats, error)
}

// Errors a broker returns; callers test them with errors.Is.
var (
	// ErrEpochMismatch: a HistoryQuery.Since named another epoch.
	ErrEpochMismatch = errors.New("broker: epoch mismatch")
	// ErrUnavailable: the broker cannot be reached now; the call may succeed later.
	ErrUnavailable = errors.New("broker: unavailable")
	// ErrClosed: the broker was closed.
	ErrClosed = errors.New("broker: closed")
	// ErrDuplicate: Publish found its idempotency key already used on the
	// channel within the window. Publish then returns the position of the
	// original publication with it, and stores and delivers nothing.
	ErrDuplicate = errors.New("broker: duplicate publication")
)

// QueueEntry is one entry of a durable queue (the webhook queue each
// broker keeps): an id to acknowledge it by, and the data appended.
type QueueEntry struct {
	ID   string
	Data []byte
}
