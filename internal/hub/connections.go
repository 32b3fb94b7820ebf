package hub

import (
	"cmp"
	"context"
	"slices"
	"time"
)

// ConnectionInfo describes one client connection, for the server API.
type ConnectionInfo struct {
	// Client is the connection's client id.
	Client string `json:"client"`
	// User is its user id, empty for an anonymous client.
	User string `json:"user,omitempty"`
	// Transport names how it is connected (websocket, sse, ...).
	Transport string `json:"transport"`
	// Node is the id of the node that holds it.
	Node string `json:"node"`
	// ConnectedAt is when it was opened, in Unix seconds.
	ConnectedAt int64 `json:"connected_at"`
	// Channels are the channels it is subscribed to, sorted.
	Channels []string `json:"channels"`
}

// Connections lists the connections of user on every live node of the
// cluster, sorted by node and client id. Nodes that do not answer within
// 2 s are left out (and logged).
func (h *Hub) Connections(ctx context.Context, user string) []ConnectionInfo {
	out := h.localConnections(user)
	h.gather(ctx, control{Type: "connections", User: user}, func(r control) {
		out = append(out, r.Connections...)
	})
	slices.SortFunc(out, func(a, b ConnectionInfo) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Client, b.Client))
	})
	return out
}

// localConnections lists this node's connections of user.
func (h *Hub) localConnections(user string) []ConnectionInfo {
	var out []ConnectionInfo
	var subs []*subscription
	for _, s := range h.appendSessions(nil) {
		if s.User() != user || s.ephemeral {
			continue
		}
		ci := ConnectionInfo{
			Client: s.id, User: user, Transport: s.transport.Name(), Node: h.cfg.NodeID,
			ConnectedAt: h.epoch.Add(time.Duration(s.created)).Unix(), Channels: []string{},
		}
		subs = s.appendSubs(subs[:0])
		for _, sub := range subs {
			ci.Channels = append(ci.Channels, sub.channel)
		}
		slices.Sort(ci.Channels)
		out = append(out, ci)
	}
	return out
}

// gather sends req to every other live node and passes each reply to f,
// until every node answered, 2 s passed or ctx ended. It does nothing on
// a single node. Replies come as req.Type + "_reply" with req's id. It
// returns the ids of the nodes that did not answer, sorted.
func (h *Hub) gather(ctx context.Context, req control, f func(control)) (missing []string) {
	if h.cl.ctl == nil {
		return nil
	}
	pending := map[string]bool{}
	for _, n := range h.Nodes()[1:] {
		pending[n.ID] = true
	}
	if len(pending) == 0 {
		return nil
	}
	replies, done := h.request(&req, len(pending)+4) // room for nodes that appeared since
	defer done()
	timeout := time.NewTimer(gatherTimeout)
	defer timeout.Stop()
	answered := map[string]bool{}
	for len(pending) > 0 {
		select {
		case r := <-replies:
			if answered[r.From] {
				continue // a repeat
			}
			// A node that appeared since the request answers too.
			answered[r.From] = true
			delete(pending, r.From)
			f(r)
		case <-timeout.C:
			return h.unanswered(req.Type, pending)
		case <-ctx.Done():
			return h.unanswered(req.Type, pending)
		}
	}
	return nil
}

// request gives req a fresh id, registers a channel of capacity n for its
// replies and sends it. done must be called once the replies are no
// longer read.
func (h *Hub) request(req *control, n int) (replies <-chan control, done func()) {
	req.ID = randomID(12)
	ch := make(chan control, n)
	h.cl.mu.Lock()
	h.cl.waiting[req.ID] = ch
	h.cl.mu.Unlock()
	h.sendControl(*req)
	return ch, func() {
		h.cl.mu.Lock()
		delete(h.cl.waiting, req.ID)
		h.cl.mu.Unlock()
	}
}

// gatherTimeout is how long a request to the other nodes waits for their
// answers.
const gatherTimeout = 2 * time.Second

// unanswered logs and lists the nodes still pending after a request.
func (h *Hub) unanswered(kind string, pending map[string]bool) []string {
	out := make([]string, 0, len(pending))
	for id := range pending {
		out = append(out, id)
	}
	slices.Sort(out)
	h.log.Warn(kind+": some nodes did not answer", "missing", out)
	return out
}
