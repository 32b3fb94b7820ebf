package webhook

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// member is one client in a channel's membership state.
type member struct {
	User string `json:"u,omitempty"`
	Node string `json:"n"`
	// Join is the id of the fact that added the client; events made for
	// the client when its node is found gone derive their ids from it.
	Join string `json:"j"`
}

// channelState is who is in one channel, cluster-wide.
type channelState struct {
	clients map[string]member // by client id; stored
	users   map[string]int    // clients per non-empty user; derived
}

// decodeChannel parses a channel's stored state.
func decodeChannel(data []byte) (*channelState, error) {
	cs := &channelState{clients: map[string]member{}, users: map[string]int{}}
	if err := json.Unmarshal(data, &cs.clients); err != nil {
		return nil, fmt.Errorf("webhook: bad channel state: %w", err)
	}
	if cs.clients == nil { // "null"
		cs.clients = map[string]member{}
	}
	for c, m := range cs.clients {
		if c == "" || m.Node == "" {
			return nil, fmt.Errorf("webhook: bad channel state: client %q without node", c)
		}
		if m.User != "" {
			cs.users[m.User]++
		}
	}
	return cs, nil
}

// partState is the state of one partition, as its sender holds it: the
// membership of its channels and its connected clients. It is owned by the
// partition's sender goroutine.
type partState struct {
	channels map[string]*channelState
	conns    map[string]conn     // connected clients, by client id; stored
	nodes    map[string]int      // memberships and connections per node; derived
	dirty    map[string]struct{} // keys changed since the last save: channels, connKeyPrefix+client
	strs     map[string]string   // node and transport names, shared by the records
}

func newPartState() *partState {
	return &partState{
		channels: map[string]*channelState{}, conns: map[string]conn{}, nodes: map[string]int{},
		dirty: map[string]struct{}{}, strs: map[string]string{},
	}
}

// intern returns v, shared with the records that hold the same name: a
// partition holds many clients of few nodes and transports.
func (s *partState) intern(v string) string {
	if w, ok := s.strs[v]; ok {
		return w
	}
	s.strs[v] = v
	return v
}

// loadPartState builds the state from the stored channels. Channels whose
// state does not parse are reported in bad and left out: they start empty
// again, and the next save deletes what was stored.
func loadPartState(stored map[string][]byte) (s *partState, bad []string) {
	s = newPartState()
	for key, data := range stored {
		if client, ok := strings.CutPrefix(key, connKeyPrefix); ok {
			c, err := decodeConn(data)
			if err != nil || client == "" {
				bad = append(bad, key)
				s.dirty[key] = struct{}{}
				continue
			}
			c.Node, c.Transport = s.intern(c.Node), s.intern(c.Transport)
			s.conns[client] = c
			s.nodes[c.Node]++
			continue
		}
		ch := key
		cs, err := decodeChannel(data)
		if err != nil {
			bad = append(bad, ch)
			s.dirty[ch] = struct{}{}
			continue
		}
		if len(cs.clients) == 0 {
			continue
		}
		s.channels[ch] = cs
		for _, m := range cs.clients {
			s.nodes[m.Node]++
		}
	}
	slices.Sort(bad)
	return s, bad
}

// apply changes the state by f and appends the events it causes to out.
// Applying a fact twice changes nothing the second time (a join of a
// client already in, a leave of one not in), so a batch repeated after a
// sender died does not corrupt the state.
func (s *partState) apply(f fact, out []Event) []Event {
	switch f.Kind {
	case factConn, factDisc:
		return s.applyConn(f, out)
	case factJoin:
		cs := s.channels[f.Channel]
		if cs == nil {
			cs = &channelState{clients: map[string]member{}, users: map[string]int{}}
			s.channels[f.Channel] = cs
		}
		if _, in := cs.clients[f.Client]; in {
			return out
		}
		occupied := len(cs.clients) == 0
		added := f.User != "" && cs.users[f.User] == 0
		cs.clients[f.Client] = member{User: f.User, Node: f.Node, Join: f.ID}
		if f.User != "" {
			cs.users[f.User]++
		}
		s.nodes[f.Node]++
		s.dirty[f.Channel] = struct{}{}
		if occupied {
			out = append(out, f.event(1, ChannelOccupied))
		}
		if added {
			out = append(out, f.event(2, MemberAdded))
		}
	case factLeave:
		cs := s.channels[f.Channel]
		if cs == nil {
			return out
		}
		m, in := cs.clients[f.Client]
		if !in {
			return out
		}
		delete(cs.clients, f.Client)
		f.User, f.Node = m.User, m.Node // what the join recorded
		if s.nodes[m.Node]--; s.nodes[m.Node] <= 0 {
			delete(s.nodes, m.Node)
		}
		s.dirty[f.Channel] = struct{}{}
		if m.User != "" {
			if cs.users[m.User]--; cs.users[m.User] <= 0 {
				delete(cs.users, m.User)
				out = append(out, f.event(1, MemberRemoved))
			}
		}
		if len(cs.clients) == 0 {
			delete(s.channels, f.Channel)
			out = append(out, f.event(2, ChannelVacated))
		}
	}
	return out
}

// dropNode removes every client of node, as if each had left at now, and
// appends the events with ReasonNodeGone. Channels and clients are taken
// in sorted order and the ids derive from each client's join fact, so
// that a sender repeating this after a crash makes the same events.
func (s *partState) dropNode(node string, now time.Time, out []Event) []Event {
	if s.nodes[node] == 0 {
		return out
	}
	gone := func(f fact) {
		n := len(out)
		out = s.apply(f, out)
		for i := n; i < len(out); i++ {
			out[i].Reason = ReasonNodeGone
		}
	}
	for _, ch := range slices.Sorted(maps.Keys(s.channels)) {
		cs := s.channels[ch]
		for _, c := range onNode(cs.clients, node, func(m member) string { return m.Node }) {
			m := cs.clients[c]
			gone(fact{ID: "gone-" + m.Join, Kind: factLeave, Time: now.UnixMilli(), Channel: ch, Client: c, User: m.User, Node: node})
		}
	}
	// Then the node's connections, as a client leaves its channels before
	// it disconnects.
	for _, c := range onNode(s.conns, node, func(cn conn) string { return cn.Node }) {
		gone(fact{ID: "gone-" + s.conns[c].Conn, Kind: factDisc, Time: now.UnixMilli(), Client: c, Node: node})
	}
	return out
}

// onNode returns the keys of m whose value nodeOf places on node, sorted.
func onNode[V any](m map[string]V, node string, nodeOf func(V) string) []string {
	var ids []string
	for id, v := range m {
		if nodeOf(v) == node {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// liveNodes lists the nodes that have clients in the state, sorted.
func (s *partState) liveNodes() []string {
	out := make([]string, 0, len(s.nodes))
	for n := range s.nodes {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// changes returns the keys changed since the last call, encoded (a
// channel's members, a connected client's record), and those to delete (a
// channel that became empty, a client that disconnected), and forgets them.
func (s *partState) changes() (set map[string][]byte, del []string) {
	set = map[string][]byte{}
	for ch := range s.dirty {
		if client, ok := strings.CutPrefix(ch, connKeyPrefix); ok {
			c, in := s.conns[client]
			if !in {
				del = append(del, ch)
				continue
			}
			set[ch] = c.encode()
			continue
		}
		cs := s.channels[ch]
		if cs == nil || len(cs.clients) == 0 {
			del = append(del, ch)
			continue
		}
		data, err := json.Marshal(cs.clients)
		if err != nil {
			panic(err) // a map of plain structs always encodes
		}
		set[ch] = data
	}
	clear(s.dirty)
	slices.Sort(del)
	return set, del
}
