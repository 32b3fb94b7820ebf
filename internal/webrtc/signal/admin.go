package signal

import (
	"context"
	"encoding/json"

	"github.com/switchboardhq/switchboard/internal/webrtc/sfu"
)

// The server API's view of this node's rooms (hub.RoomAdmin): the hub
// gathers the lists of every node and sends a kick or a mute to the node
// RoomOwner names.

// roomListing is a room of the server API's list: the SFU's description
// and the node that serves it.
type roomListing struct {
	sfu.RoomInfo
	Node string `json:"node"`
}

// LocalRooms implements hub.RoomAdmin: this node's rooms with their
// participants, tracks and layers, and what each receives.
func (s *Service) LocalRooms() []json.RawMessage {
	s.mu.Lock()
	node := s.node
	s.mu.Unlock()
	rooms := s.sfu.Rooms()
	out := make([]json.RawMessage, 0, len(rooms))
	for _, r := range rooms {
		b, err := json.Marshal(roomListing{RoomInfo: r, Node: node})
		if err != nil {
			s.log.Warn("cannot describe a room", "room", r.Name, "err", err)
			continue
		}
		out = append(out, b)
	}
	return out
}

// RoomOwner implements hub.RoomAdmin: this node when it serves room, else
// the node its owner record names, else "" (on a single node, or when no
// live node serves the room).
func (s *Service) RoomOwner(ctx context.Context, room string) (string, error) {
	s.mu.Lock()
	node, mine := s.node, s.owned[room]
	s.mu.Unlock()
	if mine || s.sfu.RoomSize(room) > 0 {
		return node, nil
	}
	if s.cfg.Owners == nil {
		return "", nil
	}
	other, ok, err := s.otherOwner(ctx, ownerKey(room), node)
	if err != nil || !ok {
		return "", err
	}
	return other.Client, nil
}

// Kick implements hub.RoomAdmin: it removes a participant from a room of
// this node.
func (s *Service) Kick(room, participant string) error {
	err := toProtocol(s.sfu.Kick(room, participant))
	s.releaseIfEmpty(room)
	return err
}

// Mute implements hub.RoomAdmin: it stops or resumes forwarding a
// participant's tracks on this node.
func (s *Service) Mute(room, participant, track string, muted bool) error {
	return toProtocol(s.sfu.Mute(room, participant, track, muted))
}
