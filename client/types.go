package client

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"
)

// State is the state of a Client's connection.
type State int

// The states of a Client. A Client starts disconnected; Connect moves it to
// connecting, a successful connect command to connected. A lost connection
// that may be retried moves it back to connecting; Close, or a close code
// that means "do not reconnect", to disconnected.
const (
	StateDisconnected State = iota
	StateConnecting
	StateConnected
)

// String returns "disconnected", "connecting" or "connected".
func (s State) String() string {
	switch s {
	case StateDisconnected:
		return "disconnected"
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	}
	return "unknown"
}

// StateChange is one transition of a Client's state, given to
// Options.OnState.
type StateChange struct {
	// State is the state the Client is now in.
	State State
	// Err says why the Client left its previous state, when it did not on
	// its own: a *CloseError for a connection the server closed or that
	// broke, a dial or connect error, ErrClosed after Close. Nil on the
	// way to connected.
	Err error
	// Attempt counts the reconnect attempts since the last stable
	// connection (see Backoff); 0 for the first.
	Attempt int
	// Delay is the wait before the next dial when State is connecting.
	Delay time.Duration
}

// Position is a place in a channel's stream: the offset of a publication
// and the epoch that offset belongs to (offsets are only comparable within
// one epoch; the epoch changes when the channel's history was lost).
type Position struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// Publication is one message of a channel.
type Publication struct {
	// Channel is the channel it was published to.
	Channel string
	// Data is exactly the JSON value that was published.
	Data json.RawMessage
	// Offset is its place in the channel, one more than the previous one.
	Offset uint64
	// Epoch is the epoch Offset belongs to.
	Epoch string
}

// GapReason says why a subscription could not deliver every publication.
type GapReason string

// The reasons for a Gap.
const (
	// GapNotRecovered: after a reconnect the server answered
	// recovered:false; the position was older than the channel's history
	// (history_size, history_ttl), of another epoch, or the channel was
	// too busy during the subscribe.
	GapNotRecovered GapReason = "not_recovered"
	// GapReset: the channel's history was lost while the client was
	// subscribed (a reset push); a new epoch starts.
	GapReset GapReason = "reset"
	// GapSkipped: the offsets of live publications jumped (a broker could
	// not fill a hole from history).
	GapSkipped GapReason = "skipped"
)

// Gap tells a subscriber that publications between From and To were not
// and will not be delivered: reload the state from the application's
// backend (the source of truth), then carry on with the publications that
// follow To.
type Gap struct {
	// Channel is the subscription's channel.
	Channel string
	// Reason says why.
	Reason GapReason
	// From is the position of the last publication delivered (or where
	// the subscription started).
	From Position
	// To is where the subscription goes on from: the next publication
	// delivered has an offset above To.Offset, in To.Epoch.
	To Position
}

// Options configure a Client. The zero value works against an anonymous
// server; each field documents its default.
type Options struct {
	// Token is the connection token (a JWT minted by the application's
	// backend) sent with the connect command. Empty: none, unless GetToken
	// gives one.
	Token string
	// GetToken returns a new connection token. The client calls it before
	// connecting when it has no token, after the server closed the
	// connection because the token expired (4005) or refused it as
	// expired (419), and to refresh the token before it expires (a
	// quarter of its remaining life before, at most 30 s before). Nil:
	// the token never changes.
	GetToken func(ctx context.Context) (string, error)
	// Endpoint chooses the URL to dial for each attempt (attempt counts
	// every dial of this Client, from 0). Use it to spread reconnects over
	// several nodes. Nil: always the URL given to New.
	Endpoint func(ctx context.Context, attempt int) (string, error)
	// Backoff sets the delays between reconnect attempts. Zero fields take
	// their defaults.
	Backoff Backoff
	// Random returns numbers in [0, 1) for the backoff's jitter. Nil:
	// math/rand/v2's Float64. Tests inject their own.
	Random func() float64
	// OnState is called on every change of state, in order.
	OnState func(StateChange)
	// OnOutbox is called on every change of state of a publication in the
	// outbox (queued, sent, acked, failed), in order.
	OnOutbox func(OutboxEntry)
	// ServerSubscriptions are the callbacks of the subscriptions the
	// server makes for the client (POST /api/subscribe, docs/protocol.md
	// "Server-side subscriptions"): OnPublication, OnGap and OnError, as
	// for Subscribe (Since and Token are not used). Such a subscription is
	// kept, and subscribed again after a reconnect, like one of Subscribe.
	ServerSubscriptions SubscribeOptions
	// OnServerSubscribe is called when the server subscribed the client
	// to a channel, with the data the backend gave (nil for none), before
	// any publication of it.
	OnServerSubscribe func(s *Subscription, data json.RawMessage)
	// OnServerUnsubscribe is called when the server ended a subscription
	// (POST /api/unsubscribe; the code is 2000), one made by Subscribe
	// included: it has ended, and no callback of it runs after this one.
	OnServerUnsubscribe func(s *Subscription, code int, reason string)
	// OutboxSize bounds the publications waiting for their
	// acknowledgement; Publish fails with ErrOutboxFull beyond it.
	// Default 1000.
	OutboxSize int
	// MaxMessageSize is the largest command the client sends, in bytes.
	// It must not be over the server's max_message_size, or the server
	// closes the connection (1009). Default 65536, the server's default.
	MaxMessageSize int
	// DialTimeout bounds the dial, the WebSocket handshake and the connect
	// command. Default 10 s.
	DialTimeout time.Duration
	// IdleTimeout closes a connection from which nothing (not even a ping)
	// arrived for that long, and reconnects. The server pings every 25 s
	// by default. Default 60 s.
	IdleTimeout time.Duration
	// WriteTimeout bounds each socket write. Default 10 s.
	WriteTimeout time.Duration
	// Logger receives the client's logs (connections, reconnects, gaps).
	// Nil: none.
	Logger *slog.Logger
}

// withDefaults fills the zero fields.
func (o Options) withDefaults() Options {
	o.Backoff = o.Backoff.withDefaults()
	if o.OutboxSize <= 0 {
		o.OutboxSize = 1000
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = 65536
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 60 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// ConnInfo describes the current connection, from the connect reply.
type ConnInfo struct {
	// URL is the URL dialled.
	URL string
	// Client is the client id the server gave this connection (the one
	// /api/disconnect and presence know).
	Client string
	// Node is the id of the node the client is connected to.
	Node string
	// User is the user id of the token, empty when anonymous.
	User string
	// Expires is when the connection's token expires; zero if never.
	Expires time.Time
}

// HistoryOptions select publications from a channel's history.
type HistoryOptions struct {
	// Since returns only the publications after this position; nil: from
	// the oldest kept (or the newest, with Reverse).
	Since *Position
	// Limit is the most publications returned. 0: the server's maximum
	// (history_max_limit); negative: none, only the current position.
	Limit int
	// Reverse returns the newest publications first.
	Reverse bool
}

// HistoryResult is a slice of a channel's history and its current position.
type HistoryResult struct {
	// Publications are in offset order (reverse order with Reverse).
	Publications []Publication
	// Position is the channel's current position: its last offset and
	// epoch.
	Position Position
}

// ClientInfo is one connection in a channel's presence.
type ClientInfo struct {
	Client    string `json:"client"`
	User      string `json:"user,omitempty"`
	Transport string `json:"transport,omitempty"`
	// Info is what the application backend's subscribe hook attached to
	// the subscription (docs/backend.md), nil for none.
	Info json.RawMessage `json:"info,omitempty"`
}

// PresenceResult lists the connections subscribed to a channel.
type PresenceResult struct {
	Clients    []ClientInfo `json:"clients"`
	NumClients int          `json:"num_clients"`
	NumUsers   int          `json:"num_users"`
}

// PublishResult is the acknowledgement of a publication.
type PublishResult struct {
	// Offset is the offset the publication got in its channel.
	Offset uint64
	// Key is the idempotency key it was sent with.
	Key string
}

// RoundRobin returns an Options.Endpoint that dials urls in turn, one per
// attempt, so that a client whose node went away tries the next one.
func RoundRobin(urls ...string) func(ctx context.Context, attempt int) (string, error) {
	return func(_ context.Context, attempt int) (string, error) {
		if len(urls) == 0 {
			return "", errNoURL
		}
		return urls[attempt%len(urls)], nil
	}
}
