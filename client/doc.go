// Package client is the Go SDK for Switchboard: one WebSocket connection to
// a node, kept up by reconnecting with exponential backoff and full jitter,
// with subscriptions that resume where they stopped and publications that
// survive the time the connection is down.
//
// The behaviour is the one every Switchboard SDK follows (docs/sdk.md):
//
//   - States. A Client is disconnected, connecting or connected. Connect
//     starts a background loop that dials, sends the connect command and,
//     when the connection ends, decides from its close code whether to try
//     again (docs/protocol.md, "Close codes"). Close stops it.
//   - Recovery. Every subscription remembers the position (offset and
//     epoch) of the last publication it delivered and subscribes again with
//     it after a reconnect, to whatever node the client reached. Each
//     publication is delivered once, in offset order: anything at or below
//     the last offset delivered is dropped.
//   - Gaps. When history cannot cover a cut (the answer says
//     recovered:false), when the channel's history was lost (a reset push)
//     or when offsets jump, SubscribeOptions.OnGap is called. The client
//     never skips silently.
//   - Outbox. Publish gives each publication a random idempotency key and
//     puts it in a bounded in-memory outbox; while the client is not
//     connected it waits there, and it is sent (again, with the same key)
//     on every new connection until the server acknowledges it.
//   - Tokens. With Options.GetToken, the client asks for a token when it
//     has none or the server said it expired (close code 4005), and
//     refreshes it with the refresh command before it expires.
//
// Callbacks (OnPublication, OnGap, OnError, OnState, OnOutbox) run one at a
// time, in order, on one goroutine per Client, never on the goroutine
// reading the socket: a callback may call the Client's methods, but should
// return quickly, because events wait for it in an unbounded queue.
package client
