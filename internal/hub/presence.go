package hub

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// tracked reports whether the subscriptions of a channel in namespace ns
// are tracked: kept in presence, or reported to the Lifecycle (webhooks).
func (h *Hub) tracked(ns auth.Namespace) bool {
	return ns.Presence || h.cfg.Lifecycle != nil
}

// joined records a new live subscription in presence and tells the
// channel's subscribers, and reports it to the Lifecycle; ns is the
// channel's namespace, tracked.
func (h *Hub) joined(ctx context.Context, channel string, ns auth.Namespace, info broker.ClientInfo) {
	if lc := h.cfg.Lifecycle; lc != nil {
		// Before presence: a webhook receiver that asks for the channel's
		// presence on member.added finds the member.
		_ = lc.Joined(ctx, channel, info.Client, info.User)
	}
	if !ns.Presence {
		return
	}
	if err := h.presence.AddPresence(ctx, channel, info, h.cfg.PresenceTTL); err != nil {
		h.log.Warn("add presence failed", "channel", channel, "err", err)
	}
	if ns.JoinLeave {
		h.publishEvent(ctx, channel, "join", info)
	}
}

// left undoes joined.
func (h *Hub) left(channel string, info broker.ClientInfo) {
	ns, _ := h.cfg.Rules.Lookup(channel)
	if !h.tracked(ns) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ns.Presence {
		if err := h.presence.RemovePresence(ctx, channel, info.Client); err != nil {
			h.log.Warn("remove presence failed", "channel", channel, "err", err)
		}
		if ns.JoinLeave {
			h.publishEvent(ctx, channel, "leave", info)
		}
	}
	if lc := h.cfg.Lifecycle; lc != nil {
		lc.Left(ctx, channel, info.Client, info.User)
	}
}

func (h *Hub) publishEvent(ctx context.Context, channel, kind string, info broker.ClientInfo) {
	data := protocol.AppendPushEvent(nil, channel, kind, mustJSON(info))
	if err := h.broker.PublishEvent(ctx, channel, data); err != nil {
		h.log.Warn("publish "+kind+" failed", "channel", channel, "err", err)
	}
}

// presenceRefresh returns the refresh round, run three times per
// PresenceTTL: it renews the presence entry of every live subscription, so
// that a shared store keeps the clients of live nodes and drops those of
// dead ones once their entries expire.
func (h *Hub) presenceRefresh() func() {
	var batch []*Session
	return func() {
		batch = h.appendSessions(batch[:0])
		h.refreshPresence(batch)
		clear(batch)
		h.enqueueRoomPresence(roomPresenceOp{kind: "refresh"})
	}
}

// presenceRefreshers is how many presence refreshes are in flight at once:
// a remote store pipelines concurrent calls on its connections, so one
// round trip carries many entries instead of one.
const presenceRefreshers = 64

// refreshPresence renews the presence entry of every present subscription
// of sessions, presenceRefreshers at a time, within a third of
// PresenceTTL. Failures are logged once per round, not once per entry.
func (h *Hub) refreshPresence(sessions []*Session) {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.PresenceTTL/3)
	defer cancel()
	work := make(chan *subscription, presenceRefreshers)
	var failed atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for range presenceRefreshers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sub := range work {
				// The subscription decides, at the time of the call, whether
				// it still has an entry: a leave since the snapshot wins.
				if err := sub.refresh(ctx); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
				}
			}
		}()
	}
	var subs []*subscription
	for _, s := range sessions {
		subs = s.appendSubs(subs[:0])
		for _, sub := range subs {
			work <- sub
		}
	}
	clear(subs)
	close(work)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		h.log.Warn("refresh presence failed", "entries", n, "err", *firstErr.Load())
	}
}

// nopPresence is the presence store of a hub without one: it keeps nothing.
type nopPresence struct{}

func (nopPresence) AddPresence(context.Context, string, broker.ClientInfo, time.Duration) error {
	return nil
}
func (nopPresence) RemovePresence(context.Context, string, string) error { return nil }
func (nopPresence) Presence(context.Context, string) ([]broker.ClientInfo, error) {
	return nil, nil
}
func (nopPresence) PresenceStats(context.Context, string) (broker.PresenceStats, error) {
	return broker.PresenceStats{}, nil
}
