package hub

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

var _ broker.ControlHandler = (*Hub)(nil)

// NodeInfo describes one node of the cluster, as it announces itself.
type NodeInfo struct {
	ID            string  `json:"id"`
	Name          string  `json:"name,omitempty"`
	Address       string  `json:"address,omitempty"`
	Version       string  `json:"version"`
	UptimeSeconds float64 `json:"uptime_seconds"`
	Connections   int     `json:"connections"`
	Subscriptions int64   `json:"subscriptions"`
	Channels      int64   `json:"channels"`
}

// control is one message between nodes.
type control struct {
	Type string `json:"type"`
	// From is the sending node's id.
	From string `json:"from"`
	// Node is set for "node" announcements.
	Node *NodeInfo `json:"node,omitempty"`
	// Client, User and Reconnect are set for "disconnect"; Client, User
	// and Channel for "unsubscribe".
	Client    string `json:"client,omitempty"`
	User      string `json:"user,omitempty"`
	Reconnect bool   `json:"reconnect,omitempty"`
	Channel   string `json:"channel,omitempty"`
	// Sub is set for "subscribe" (serversubs.go).
	Sub *ServerSubscription `json:"sub,omitempty"`
	// Count answers "subscribe" and "unsubscribe": how many connections
	// the node changed.
	Count int `json:"count,omitempty"`
	// ID correlates "channels" and "connections" requests with their
	// "..._reply" answers (User names whose connections are asked for).
	ID          string           `json:"id,omitempty"`
	Channels    []ChannelInfo    `json:"channels,omitempty"`
	Connections []ConnectionInfo `json:"connections,omitempty"`
	// To, when set, is the one node that acts on the message (the others
	// ignore it): "room_kick" and "room_mute" go to the room's node.
	To string `json:"to,omitempty"`
	// Rooms answers "rooms"; Action is set for "room_kick" and
	// "room_mute", and Error answers them (nil for success).
	Rooms  []json.RawMessage `json:"rooms,omitempty"`
	Action *roomAction       `json:"action,omitempty"`
	Error  *protocol.Error   `json:"error,omitempty"`
}

// cluster is the hub's view of the other nodes.
type cluster struct {
	ctl broker.Controller // nil on a single node

	mu      sync.Mutex
	nodes   map[string]nodeSeen
	waiting map[string]chan control // channels request id -> replies
}

type nodeSeen struct {
	info NodeInfo
	at   time.Time
}

// initCluster prepares the hub's view of the other nodes. It runs before
// the broker starts, which may deliver control messages at once.
func (h *Hub) initCluster() {
	h.cl.nodes = map[string]nodeSeen{}
	h.cl.waiting = map[string]chan control{}
	if ctl, ok := h.broker.(broker.Controller); ok {
		h.cl.ctl = ctl
	}
}

// startCluster begins announcing this node when the broker connects nodes.
func (h *Hub) startCluster() {
	if h.cl.ctl == nil {
		return
	}
	h.announce()
	h.every(h.cfg.NodeInfoInterval, h.announce)
}

// announce tells the other nodes this node's description.
func (h *Hub) announce() {
	info := h.nodeInfo()
	h.sendControl(control{Type: "node", Node: &info})
}

func (h *Hub) sendControl(c control) {
	c.From = h.cfg.NodeID
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.cl.ctl.PublishControl(ctx, mustJSON(c)); err != nil {
		h.log.Warn("control message failed", "type", c.Type, "err", err)
	}
}

// HandleControl implements broker.ControlHandler.
func (h *Hub) HandleControl(data []byte) {
	var c control
	if err := json.Unmarshal(data, &c); err != nil {
		h.log.Warn("bad control message", "err", err)
		return
	}
	if c.To != "" && c.To != h.cfg.NodeID {
		return
	}
	switch c.Type {
	case "node":
		if c.Node != nil && c.From != h.cfg.NodeID {
			h.cl.mu.Lock()
			_, known := h.cl.nodes[c.Node.ID]
			h.cl.nodes[c.Node.ID] = nodeSeen{info: *c.Node, at: h.clock.Now()}
			h.cl.mu.Unlock()
			if !known {
				// A newcomer: tell it about this node now rather than at
				// the next tick. Not from the broker's delivery goroutine.
				go func() {
					info := h.nodeInfo()
					h.sendControl(control{Type: "node", Node: &info})
				}()
			}
		}
	case "disconnect":
		if c.From != h.cfg.NodeID {
			h.disconnectLocal(c.Client, c.User, c.Reconnect)
		}
	case "channels":
		if c.From != h.cfg.NodeID {
			h.sendControl(control{Type: "channels_reply", ID: c.ID, Channels: h.localChannels()})
		}
	case "connections":
		if c.From != h.cfg.NodeID {
			h.sendControl(control{Type: "connections_reply", ID: c.ID, Connections: h.localConnections(c.User)})
		}
	case "subscribe", "unsubscribe":
		if c.From != h.cfg.NodeID {
			go h.handleServerSub(c)
		}
	case "rooms", "room_kick", "room_mute":
		if c.From != h.cfg.NodeID {
			go h.handleRoomControl(c)
		}
	case "channels_reply", "connections_reply", "subscribe_reply", "unsubscribe_reply",
		"rooms_reply", "room_kick_reply", "room_mute_reply":
		h.cl.mu.Lock()
		ch := h.cl.waiting[c.ID]
		h.cl.mu.Unlock()
		if ch != nil {
			select {
			case ch <- c:
			default:
			}
		}
	}
}

// Nodes lists the live nodes of the cluster, this one first. A node that
// has not announced itself for three intervals is gone.
func (h *Hub) Nodes() []NodeInfo {
	out := []NodeInfo{h.nodeInfo()}
	h.cl.mu.Lock()
	defer h.cl.mu.Unlock()
	var others []NodeInfo
	for id, n := range h.cl.nodes {
		if time.Since(n.at) > 3*h.cfg.NodeInfoInterval {
			delete(h.cl.nodes, id)
			continue
		}
		n.info.UptimeSeconds += time.Since(n.at).Seconds()
		others = append(others, n.info)
	}
	sort.Slice(others, func(i, j int) bool { return others[i].ID < others[j].ID })
	return append(out, others...)
}

func (h *Hub) nodeInfo() NodeInfo {
	h.sessMu.Lock()
	n := len(h.sessions)
	h.sessMu.Unlock()
	return NodeInfo{
		ID:            h.cfg.NodeID,
		Name:          h.cfg.NodeName,
		Address:       h.nodeAddress(),
		Version:       h.cfg.Version,
		UptimeSeconds: h.clock.Since(h.started).Seconds(),
		Connections:   n,
		Subscriptions: h.subscriptions.Load(),
		Channels:      h.channels.Load(),
	}
}

// gatherChannels asks every other live node for its channels and merges
// the answers with this node's, summing subscribers.
func (h *Hub) gatherChannels(ctx context.Context) []ChannelInfo {
	merged := map[string]int{}
	for _, c := range h.localChannels() {
		merged[c.Channel] += c.Subscribers
	}
	h.gather(ctx, control{Type: "channels"}, func(r control) {
		for _, c := range r.Channels {
			merged[c.Channel] += c.Subscribers
		}
	})
	out := make([]ChannelInfo, 0, len(merged))
	for name, n := range merged {
		out = append(out, ChannelInfo{Channel: name, Subscribers: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Channel < out[j].Channel })
	return out
}

// disconnectLocal closes this node's sessions of the client or the user.
// It reports how many it closed.
func (h *Hub) disconnectLocal(clientID, user string, reconnect bool) int {
	h.sessMu.Lock()
	var victims []*Session
	if clientID != "" {
		if s := h.sessions[clientID]; s != nil {
			victims = append(victims, s)
		}
	}
	if user != "" {
		for _, s := range h.sessions {
			if s.User() == user {
				victims = append(victims, s)
			}
		}
	}
	h.sessMu.Unlock()
	for _, s := range victims {
		s.Close(disconnectFor(reconnect))
	}
	return len(victims)
}

// nodeOfClient returns the node id a client id was issued by.
func nodeOfClient(clientID string) string {
	i := strings.LastIndexByte(clientID, '-')
	if i < 0 {
		return ""
	}
	return clientID[:i]
}

// SetNodeAddress sets the address this node announces, once it is known
// (the configured address may have port 0).
func (h *Hub) SetNodeAddress(addr string) { h.address.Store(&addr) }

func (h *Hub) nodeAddress() string {
	if a := h.address.Load(); a != nil {
		return *a
	}
	return h.cfg.NodeAddress
}
