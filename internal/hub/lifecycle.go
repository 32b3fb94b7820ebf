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

// ReportSubscriptions reports every live subscription of this node to the
// Lifecycle again (Joined). The webhook dispatcher calls it when other
// nodes may have taken this node for dead and removed its subscribers.
// Each report takes the subscription's presence handover like a refresh,
// so that a leave meanwhile is reported after it, never before.
func (h *Hub) ReportSubscriptions(ctx context.Context) {
	lc := h.cfg.Lifecycle
	if lc == nil {
		return
	}
	var subs []*subscription
	for _, s := range h.appendSessions(nil) {
		if s.ephemeral {
			continue
		}
		subs = s.appendSubs(subs[:0])
		for _, sub := range subs {
			if ctx.Err() != nil {
				return
			}
			if !sub.hold() {
				continue
			}
			info := sub.clientInfo()
			_ = lc.Joined(ctx, sub.channel, info.Client, info.User)
			sub.release(info)
		}
	}
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
