package webhook

import (
	"encoding/json"
	"fmt"
)

// Connected clients. A partition's sender keeps a small record of every
// client whose connection fact it applied, until the client's disconnect
// fact: so that a client.disconnected is sent once for each
// client.connected, for a normal disconnect as for the clients of a node
// found gone. The records are stored with the partition's channels, each
// under connKeyPrefix and the client id; no channel name can start with
// the prefix.

// connKeyPrefix starts the state key of a connected client's record. A
// channel name cannot contain '$' (protocol.ValidateChannel).
const connKeyPrefix = "$"

// conn is one connected client in a partition's state, as stored.
type conn struct {
	User      string `json:"u,omitempty"`
	Node      string `json:"n"`
	Transport string `json:"t,omitempty"`
	// Conn is the id of the connection fact; the client.disconnected
	// made when its node is found gone derives its id from it.
	Conn string `json:"j"`
}

// decodeConn parses a connected client's stored record.
func decodeConn(data []byte) (conn, error) {
	var c conn
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("webhook: bad client state: %w", err)
	}
	if c.Node == "" || c.Conn == "" {
		return c, fmt.Errorf("webhook: bad client state: node and connection id are required")
	}
	return c, nil
}

func (c conn) encode() []byte {
	data, err := json.Marshal(c)
	if err != nil {
		panic(err) // a plain struct always encodes
	}
	return data
}

// applyConn applies a connection or disconnection fact. A client is
// connected once: a repeated connection fact changes nothing, and a
// disconnection of a client not connected (already removed with its node,
// or written after a connection fact that was never written) makes no
// event.
func (s *partState) applyConn(f fact, out []Event) []Event {
	key := connKeyPrefix + f.Client
	c, in := s.conns[f.Client]
	switch f.Kind {
	case factConn:
		if in {
			return out
		}
		node := s.intern(f.Node)
		s.conns[f.Client] = conn{User: f.User, Node: node, Transport: s.intern(f.Transport), Conn: f.ID}
		s.nodes[node]++
		s.dirty[key] = struct{}{}
		return append(out, f.event(1, ClientConnected))
	case factDisc:
		if !in {
			return out
		}
		delete(s.conns, f.Client)
		if s.nodes[c.Node]--; s.nodes[c.Node] <= 0 {
			delete(s.nodes, c.Node)
		}
		s.dirty[key] = struct{}{}
		f.User, f.Node, f.Transport = c.User, c.Node, c.Transport // what the connection recorded
		return append(out, f.event(1, ClientDisconnected))
	}
	return out
}
