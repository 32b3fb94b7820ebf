// Package hub is Switchboard's engine: client sessions, the registry of
// channel subscribers on this node, command handling, and fan-out of
// publications from the broker to subscribers' outbound queues.
//
// The hub knows nothing of HTTP or WebSocket. A transport hands it each
// message a client sends (Session.HandleMessage) and implements Transport,
// through which the session's writer drains its outbound queue. Each
// publication is encoded once; the same bytes are queued for every
// subscriber.
//
// The package is split by owner (see docs/design.md, "Inside the hub"):
// the session (session.go), its outbox and writer (outbox.go,
// writedelay.go), each subscription's state machine (subscription.go), the
// subscribe path (subscribe.go), the command table (dispatch.go) and its
// handlers (commands.go), the channel registry and fan-out (registry.go).
//
// Lock order: stripe (per channel, serialises broker subscribe/unsubscribe)
// -> shard.mu (channel registry) -> subscription.mu -> outbox.mu ->
// Session.mu (a close cancels the commands in flight). No hub lock is held
// across a broker call.
// The broker may call HandlePublication while holding its own per-channel
// lock; HandlePublication takes shard.mu (read), then subscription and
// outbox locks, and never calls back into the broker.
package hub
