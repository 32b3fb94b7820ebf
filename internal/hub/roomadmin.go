package hub

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// The server API manages the rooms of the whole cluster from any node:
// the list is gathered from every live node with the control messages of
// /api/connections (gather), and a kick or a mute goes to the node that
// serves the room, found in the room-owner records the call service
// keeps, as a control message addressed to that node (ask).

// RoomAdmin is the part of a Rooms implementation the server API uses;
// the hub finds it on Config.Rooms with a type assertion. Its methods act
// on this node only.
type RoomAdmin interface {
	// LocalRooms describes the rooms this node serves, one JSON object
	// per room, each with "name" and "node" (this node's id).
	LocalRooms() []json.RawMessage
	// RoomOwner returns the id of the node that serves room: this node's
	// for a room it serves, another's, or "" when no live node does.
	RoomOwner(ctx context.Context, room string) (string, error)
	// Kick removes a participant from a room of this node.
	Kick(room, participant string) error
	// Mute stops (muted) or resumes forwarding a participant's track on
	// this node; an empty track means all of them, "audio" or "video"
	// all of a kind.
	Mute(room, participant, track string, muted bool) error
}

// RoomList is the rooms of the cluster, for GET /api/rooms.
type RoomList struct {
	// Rooms describes every room of every node that answered, sorted by
	// name then node.
	Rooms []json.RawMessage `json:"rooms"`
	// MissingNodes lists the live nodes that did not answer within 2 s:
	// their rooms are not in Rooms. Omitted when every node answered.
	MissingNodes []string `json:"missing_nodes,omitempty"`
}

// roomAction is a kick or a mute sent to the node that serves the room.
type roomAction struct {
	Room        string `json:"room"`
	Participant string `json:"participant"`
	Track       string `json:"track,omitempty"`
	Muted       bool   `json:"muted,omitempty"`
}

// errCallsOff refuses room requests on a node without calls.
func errCallsOff() *protocol.Error {
	return protocol.ErrUnavailable.WithMessage("calls are not enabled on this server")
}

func (h *Hub) roomAdmin() (RoomAdmin, *protocol.Error) {
	if a, ok := h.cfg.Rooms.(RoomAdmin); ok {
		return a, nil
	}
	return nil, errCallsOff()
}

// ListRooms lists the rooms of every live node of the cluster (a node
// without calls has none); the nodes that do not answer within 2 s are
// named in MissingNodes.
func (h *Hub) ListRooms(ctx context.Context) RoomList {
	type keyed struct {
		name, node string
		raw        json.RawMessage
	}
	var all []keyed
	add := func(list []json.RawMessage) {
		for _, raw := range list {
			var k struct{ Name, Node string }
			_ = json.Unmarshal(raw, &k)
			all = append(all, keyed{k.Name, k.Node, raw})
		}
	}
	if a, perr := h.roomAdmin(); perr == nil {
		add(a.LocalRooms())
	}
	missing := h.gather(ctx, control{Type: "rooms"}, func(r control) { add(r.Rooms) })
	slices.SortFunc(all, func(x, y keyed) int { return cmp.Or(cmp.Compare(x.name, y.name), cmp.Compare(x.node, y.node)) })
	out := RoomList{Rooms: make([]json.RawMessage, len(all)), MissingNodes: missing}
	for i, k := range all {
		out.Rooms[i] = k.raw
	}
	return out
}

// KickRoom removes a participant from a room, on whichever node serves
// it. Errors are *protocol.Error: 440 (ErrNotInRoom) for a room no node
// serves or a participant not in it, 503 when the serving node does not
// answer within 2 s or calls are off.
func (h *Hub) KickRoom(ctx context.Context, room, participant string) error {
	return h.roomAct(ctx, "room_kick", roomAction{Room: room, Participant: participant})
}

// MuteRoom stops (muted) or resumes forwarding a participant's track (""
// for all, "audio" or "video" for a kind), on whichever node serves the
// room. Errors are those of KickRoom, and 440 for a track the participant
// does not have.
func (h *Hub) MuteRoom(ctx context.Context, room, participant, track string, muted bool) error {
	return h.roomAct(ctx, "room_mute", roomAction{Room: room, Participant: participant, Track: track, Muted: muted})
}

// roomAct carries out a kick or a mute here when this node serves the
// room, else asks the node that does.
func (h *Hub) roomAct(ctx context.Context, kind string, act roomAction) error {
	a, perr := h.roomAdmin()
	if perr != nil {
		return perr
	}
	owner, err := a.RoomOwner(ctx, act.Room)
	if err != nil {
		return roomAdminError(err)
	}
	switch owner {
	case "":
		return protocol.ErrNotInRoom.WithMessage("no node serves room %q", act.Room)
	case h.cfg.NodeID:
		return roomAdminError(h.roomActLocal(a, kind, act))
	}
	r, err := h.ask(ctx, owner, control{Type: kind, Action: &act})
	if err != nil {
		return err
	}
	if r.Error != nil {
		return r.Error
	}
	return nil
}

// roomActLocal carries out a kick or a mute on this node.
func (h *Hub) roomActLocal(a RoomAdmin, kind string, act roomAction) error {
	if kind == "room_kick" {
		return a.Kick(act.Room, act.Participant)
	}
	return a.Mute(act.Room, act.Participant, act.Track, act.Muted)
}

// roomAdminError keeps a client-visible error as it is and makes any
// other an internal error (nil stays nil).
func roomAdminError(err error) error {
	if err == nil {
		return nil
	}
	var perr *protocol.Error
	if errors.As(err, &perr) {
		return perr
	}
	return protocol.ErrInternal.WithMessage("room request failed: %v", err)
}

// handleRoomControl answers a "rooms" request, or carries out a kick or a
// mute addressed to this node. It runs on its own goroutine: the SFU's
// work must not hold the broker's delivery goroutine.
func (h *Hub) handleRoomControl(c control) {
	a, perr := h.roomAdmin()
	switch {
	case c.Type == "rooms":
		var list []json.RawMessage
		if perr == nil {
			list = a.LocalRooms()
		}
		h.sendControl(control{Type: "rooms_reply", ID: c.ID, Rooms: list})
	case c.Action == nil:
		h.sendControl(control{Type: c.Type + "_reply", ID: c.ID, Error: protocol.ErrBadRequest.WithMessage("no action")})
	default:
		reply := control{Type: c.Type + "_reply", ID: c.ID}
		if perr != nil {
			reply.Error = perr
		} else if err := roomAdminError(h.roomActLocal(a, c.Type, *c.Action)); err != nil {
			reply.Error = err.(*protocol.Error)
		}
		h.sendControl(reply)
	}
}

// ask sends req to one node and returns its reply (req.Type + "_reply"
// with req's id). A node that does not answer within 2 s, or before ctx
// ends, is a 503 naming it.
func (h *Hub) ask(ctx context.Context, node string, req control) (control, error) {
	if h.cl.ctl == nil {
		return control{}, protocol.ErrUnavailable.WithMessage("node %s is not reachable: this node has no cluster broker", node)
	}
	req.To = node
	replies, done := h.request(&req, 1)
	defer done()
	timeout := time.NewTimer(gatherTimeout)
	defer timeout.Stop()
	for {
		select {
		case r := <-replies:
			if r.From == node {
				return r, nil
			}
		case <-timeout.C:
			return control{}, protocol.ErrUnavailable.WithMessage("node %s, which serves the room, did not answer within %s", node, gatherTimeout)
		case <-ctx.Done():
			return control{}, protocol.ErrUnavailable.WithMessage("node %s, which serves the room, did not answer: %v", node, ctx.Err())
		}
	}
}
