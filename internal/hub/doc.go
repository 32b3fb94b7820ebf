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
// Lock order: stripe (per channel, serialises broker subscribe/unsubscribe)
// -> shard.mu (channel registry) -> Session.mu. The broker may call
// HandlePublication while holding its own per-channel lock; HandlePublication
// takes shard.mu (read) then Session.mu, and never calls back into the broker.
package hub
