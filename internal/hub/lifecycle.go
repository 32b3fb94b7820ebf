package hub

import (
	"context"
	"time"
)

// Lifecycle receives the engine's reports of connections and
// subscriptions starting and ending; the webhook dispatcher implements it.
// Its methods may wait on the broker and are called with a context that
// bounds them. For one subscription, Left always comes after Joined; for
// one connection, ClientDisconnected after ClientConnected, and only for
// connections ClientConnected was reported for. Short-lived long-poll
// sessions are not reported.
type Lifecycle interface {
	ClientConnected(ctx context.Context, client, user, transport string)
	ClientDisconnected(ctx context.Context, client, user, transport string)
	// Joined reports a live subscription; an error means it was not
	// recorded (Left is reported anyway, and must then change nothing).
	Joined(ctx context.Context, channel, client, user string) error
	Left(ctx context.Context, channel, client, user string)
}

// reportConnected reports the session as connected to the Lifecycle, once:
// at its connect command, or at its first subscription on a transport
// without commands.
func (s *Session) reportConnected(ctx context.Context) {
	lc := s.hub.cfg.Lifecycle
	if lc == nil || s.ephemeral || !s.reported.CompareAndSwap(false, true) {
		return
	}
	lc.ClientConnected(ctx, s.id, s.User(), s.transport.Name())
}

// reportDisconnected reports the end of a session reportConnected
// reported; it runs after the session left its channels.
func (s *Session) reportDisconnected() {
	lc := s.hub.cfg.Lifecycle
	if lc == nil || !s.reported.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lc.ClientDisconnected(ctx, s.id, s.User(), s.transport.Name())
}
