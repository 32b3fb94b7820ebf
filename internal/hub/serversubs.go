package hub

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// Server-side subscriptions: the application's backend subscribes every
// connection of a user (or one client) to a channel, or unsubscribes them,
// through the server API. The request goes to every node as a control
// message; each node acts on its own connections and answers how many it
// changed, and the node the backend called adds up the answers (as for
// Connections). The client is told with a push, so that an SDK can track
// the subscription like one of its own and subscribe it again, with
// recovery, after a reconnect.

// FixedChannels is implemented by transports whose channels are set once,
// when the connection opens (an SSE stream: its event ids cover exactly the
// channels of its URL). Server-side subscriptions leave such connections
// alone.
type FixedChannels interface {
	// FixedChannels marks the transport; it does nothing.
	FixedChannels()
}

// UnsubscribedByServer is the code and reason of the unsubscribed push a
// client gets when the server API ends one of its subscriptions.
var UnsubscribedByServer = struct {
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}{2000, "unsubscribed by the server"}

// ServerSubscription is a server-side subscribe request.
type ServerSubscription struct {
	// Client and User select the connections: the one client, or every
	// connection of the user. Exactly one is set.
	Client string `json:"client,omitempty"`
	User   string `json:"user,omitempty"`
	// Channel is the channel, already validated.
	Channel string `json:"channel"`
	// Data is handed to the client in the subscribed push (nil: none).
	Data json.RawMessage `json:"data,omitempty"`
	// Info is shown with the client in the channel's presence (nil: none).
	Info json.RawMessage `json:"info,omitempty"`
	// Since, when set, asks for the publications after it (recovery).
	Since *protocol.StreamPosition `json:"since,omitempty"`
}

// subscribedPush is the body of the subscribed push.
type subscribedPush struct {
	Offset       uint64            `json:"offset"`
	Epoch        string            `json:"epoch"`
	Recovered    *bool             `json:"recovered,omitempty"`
	Publications []json.RawMessage `json:"publications,omitempty"`
	Data         json.RawMessage   `json:"data,omitempty"`
}

// SubscribeServer subscribes the connections req selects, on every live
// node, to req.Channel, skipping the channel permission check (the
// application asked). It returns how many connections were subscribed:
// connections already subscribed to the channel, over a channel limit, on
// a transport with fixed channels (SSE) or long polls are not counted.
// Nodes that do not answer within 2 s are left out (and logged). An
// invalid channel name or an unknown namespace is a *protocol.Error.
func (h *Hub) SubscribeServer(ctx context.Context, req ServerSubscription) (int, error) {
	if _, perr := h.namespace(req.Channel); perr != nil {
		return 0, perr
	}
	n := h.subscribeLocal(ctx, req)
	h.gather(ctx, control{Type: "subscribe", Sub: &req}, func(r control) { n += r.Count })
	return n, nil
}

// UnsubscribeServer ends the subscriptions to channel of the client, or of
// every connection of the user, on every live node, and returns how many
// it ended. Each client gets an unsubscribed push. An invalid channel
// name or an unknown namespace is a *protocol.Error.
func (h *Hub) UnsubscribeServer(ctx context.Context, clientID, user, channel string) (int, error) {
	if _, perr := h.namespace(channel); perr != nil {
		return 0, perr
	}
	n := h.unsubscribeLocal(clientID, user, channel)
	h.gather(ctx, control{Type: "unsubscribe", Client: clientID, User: user, Channel: channel}, func(r control) { n += r.Count })
	return n, nil
}

// targets lists this node's connections a server-side request selects:
// those that hold their channels themselves (not SSE streams, nor polls).
func (h *Hub) targets(clientID, user string) []*Session {
	var out []*Session
	h.sessMu.Lock()
	defer h.sessMu.Unlock()
	if clientID != "" {
		if s := h.sessions[clientID]; s != nil {
			out = append(out, s)
		}
	} else {
		for _, s := range h.sessions {
			if s.User() == user {
				out = append(out, s)
			}
		}
	}
	n := 0
	for _, s := range out {
		if _, fixed := s.transport.(FixedChannels); !fixed && !s.ephemeral {
			out[n] = s
			n++
		}
	}
	return out[:n]
}

// subscribeLocal carries out req on this node's connections, concurrently,
// and returns how many it subscribed.
func (h *Hub) subscribeLocal(ctx context.Context, req ServerSubscription) int {
	var wg sync.WaitGroup
	var mu sync.Mutex
	n := 0
	for _, s := range h.targets(req.Client, req.User) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.subscribeServer(ctx, req) {
				mu.Lock()
				n++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return n
}

// subscribeServer subscribes the session to req.Channel through the one
// subscribe path, with no permission check, and queues the subscribed push
// (with the recovered publications, when req.Since asked for them) before
// any publication of the channel. It reports whether it subscribed.
func (s *Session) subscribeServer(ctx context.Context, req ServerSubscription) bool {
	ctx, end := s.begin(ctx)
	defer end()
	since := SincePosition(req.Since)
	perr := s.subscribeChannel(ctx, req.Channel, since, req.Info, false, func(res *SubscribeResult) {
		push := subscribedPush{Offset: res.Position.Offset, Epoch: res.Position.Epoch, Data: req.Data}
		if since != nil {
			push.Recovered = &res.Recovered
			for _, p := range res.Publications {
				push.Publications = append(push.Publications, protocol.AppendPublication(nil, req.Channel, p.Data, p.Offset))
			}
		}
		// Like a subscribe reply, it may carry more than the queue's
		// bounds, which apply to live traffic.
		s.out.pushForced(Message{Data: protocol.AppendPushEvent(nil, req.Channel, "subscribed", mustJSON(push)), Channel: req.Channel})
	})
	switch {
	case perr == nil:
		return true
	case perr.Code == protocol.ErrAlreadySubscribed.Code:
	default:
		s.hub.log.Info("server-side subscribe not made", "client", s.id, "channel", req.Channel, "err", perr.Message)
	}
	return false
}

// unsubscribeLocal ends the subscriptions to channel of this node's
// connections the request selects, and returns how many it ended.
func (h *Hub) unsubscribeLocal(clientID, user, channel string) int {
	n := 0
	for _, s := range h.targets(clientID, user) {
		sub := s.findSub(channel)
		if sub == nil {
			continue
		}
		s.removeSub(sub)
		h.removeSubscription(sub)
		sub.end()
		// After end nothing more of the channel is queued: the push is the
		// last the client hears of it.
		s.out.push(Message{Data: protocol.AppendPushEvent(nil, channel, "unsubscribed", mustJSON(UnsubscribedByServer)), Channel: channel})
		n++
	}
	return n
}

// handleServerSub answers another node's subscribe or unsubscribe control
// message. It runs on its own goroutine: subscribing reads history, which
// must not hold the broker's delivery goroutine.
func (h *Hub) handleServerSub(c control) {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.CommandTimeout)
	defer cancel()
	n := 0
	switch {
	case c.Type == "subscribe" && c.Sub != nil:
		n = h.subscribeLocal(ctx, *c.Sub)
	case c.Type == "unsubscribe":
		n = h.unsubscribeLocal(c.Client, c.User, c.Channel)
	}
	h.sendControl(control{Type: c.Type + "_reply", ID: c.ID, Count: n})
}
