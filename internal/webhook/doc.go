// Package webhook tells the application backend what happens to clients
// and channels: it turns the engine's reports (a client connected, joined
// a channel, left it, disconnected) into lifecycle events, keeps them in
// the broker until the backend has acknowledged them, and POSTs them in
// signed batches with retries.
//
// # Flow
//
// A node writes each report as a fact to one partition of a durable queue
// (Queue, implemented next to each broker): channel facts go to the
// partition of the channel's hash, connection facts to that of the client
// id. Writing the fact is what makes the event emitted: once Append
// returns, the event reaches the backend even if the node dies.
//
// Each partition has one sender in the whole cluster, the node that holds
// its lease. The sender reads facts in order, applies them to the
// partition's membership state (who is in each channel, per node), derives
// the events (channel.occupied when a channel's first client joins,
// member.added when a user's first client joins, and their opposites),
// POSTs them and, after a 2xx answer, saves the state and acknowledges the
// facts. Events derived from a fact carry ids made from the fact's id, so
// a new sender that repeats a batch after a crash repeats the same ids:
// delivery is at least once and the receiver dedupes by id. A channel's
// events are in order because one partition has one sender and its
// batches go one at a time.
//
// The state also holds a record per connected client (conns.go), so that
// each client.connected gets one client.disconnected.
//
// Nodes mark themselves alive in the queue. A sender that finds a node of
// its state no longer alive removes that node's clients as if they had
// left and disconnected (with reason "node_gone"), so a dead node's
// channels are vacated and its clients disconnected.
//
// A join or connection fact the queue does not take is an error, and the
// engine refuses the subscribe or connect; a leave or disconnection fact
// it does not take is held by the node and written later (held.go).
package webhook
