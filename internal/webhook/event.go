package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Event types, as the "type" field of an event spells them.
const (
	ChannelOccupied    = "channel.occupied"
	ChannelVacated     = "channel.vacated"
	MemberAdded        = "member.added"
	MemberRemoved      = "member.removed"
	ClientConnected    = "client.connected"
	ClientDisconnected = "client.disconnected"
)

// EventTypes lists every event type, in the order the documentation shows
// them.
var EventTypes = []string{ChannelOccupied, ChannelVacated, MemberAdded, MemberRemoved, ClientConnected, ClientDisconnected}

// ReasonNodeGone is the reason of a channel.vacated or member.removed event
// that comes from a node that stopped marking itself alive rather than
// from a client that left.
const ReasonNodeGone = "node_gone"

// Event is one lifecycle event as the backend receives it.
type Event struct {
	// ID is unique per event; a repeated delivery carries the same id.
	ID string `json:"id"`
	// Type is one of the event type constants.
	Type string `json:"type"`
	// Time is when the node saw the change (or, with ReasonNodeGone, when
	// the sender found the node gone).
	Time time.Time `json:"time"`
	// Channel is set on channel.* and member.* events.
	Channel string `json:"channel,omitempty"`
	// User is the user id; empty for anonymous clients.
	User string `json:"user,omitempty"`
	// Client is the connection that caused the event.
	Client string `json:"client,omitempty"`
	// Node is the node that holds (or held) the connection.
	Node string `json:"node,omitempty"`
	// Transport is set on client.* events.
	Transport string `json:"transport,omitempty"`
	// Reason is ReasonNodeGone for events of a node found dead.
	Reason string `json:"reason,omitempty"`
}

// Batch is the body of one webhook request.
type Batch struct {
	Events []Event `json:"events"`
}

// Fact kinds: what a node writes to the queue.
const (
	factJoin  = "join"
	factLeave = "leave"
	factConn  = "conn"
	factDisc  = "disc"
)

// fact is one report of a node, as stored in the queue.
type fact struct {
	ID        string `json:"id"`
	Kind      string `json:"k"`
	Time      int64  `json:"t"` // Unix milliseconds
	Channel   string `json:"ch,omitempty"`
	Client    string `json:"c"`
	User      string `json:"u,omitempty"`
	Node      string `json:"n"`
	Transport string `json:"tr,omitempty"`
}

// Errors of decoding a stored fact.
var errBadFact = errors.New("webhook: bad fact")

// decodeFact parses a fact read from the queue. A fact that is not valid
// JSON, has an unknown kind or misses a field its kind needs is an error
// wrapping errBadFact; the sender drops it (logged) rather than stall.
func decodeFact(data []byte) (fact, error) {
	var f fact
	if err := json.Unmarshal(data, &f); err != nil {
		return f, fmt.Errorf("%w: %w", errBadFact, err)
	}
	if f.ID == "" || f.Client == "" || f.Node == "" {
		return f, fmt.Errorf("%w: id, client and node are required", errBadFact)
	}
	switch f.Kind {
	case factJoin, factLeave:
		if f.Channel == "" {
			return f, fmt.Errorf("%w: %s without a channel", errBadFact, f.Kind)
		}
	case factConn, factDisc:
	default:
		return f, fmt.Errorf("%w: unknown kind %s", errBadFact, strconv.Quote(f.Kind))
	}
	return f, nil
}

// event builds the n-th event derived from f. Its id is the fact's id and
// n, so that deriving it again gives the same id.
func (f fact) event(n int, typ string) Event {
	return Event{
		ID:        f.ID + "-" + strconv.Itoa(n),
		Type:      typ,
		Time:      time.UnixMilli(f.Time).UTC(),
		Channel:   f.Channel,
		User:      f.User,
		Client:    f.Client,
		Node:      f.Node,
		Transport: f.Transport,
	}
}
