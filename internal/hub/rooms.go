package hub

import (
	"context"
	"encoding/json"
	"errors"
	"slices"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// Rooms is the call service behind the room commands: the SFU and its
// signaling, which the hub must not import. The server wires an
// implementation (internal/webrtc/signal) into Config.Rooms. Errors that
// are *protocol.Error reach the client as they are; any other is a 500.
type Rooms interface {
	// Join adds a participant to a room and returns the join result (a
	// JSON object: participants, ice_servers, ...). j.Push carries the
	// room's pushes to the participant until Leave.
	Join(ctx context.Context, j RoomJoin) (json.RawMessage, error)
	// Leave removes a participant; it is called for every room of a
	// connection when the connection ends.
	Leave(room, participant string)
	// Signal carries one signaling command of a participant (kind is
	// "offer", "answer", "candidate", "subscribe", "publish", "unpublish",
	// "mute" or "ice";
	// data is the command's whole "data" object) and returns its result
	// (nil for none).
	Signal(ctx context.Context, room, participant, kind string, data json.RawMessage) (json.RawMessage, error)
}

// RoomJoin is a participant entering a room, with what the hub decided
// about it.
type RoomJoin struct {
	// Room is the room's name; Participant the participant's id (the
	// client id); User the connection's user.
	Room, Participant, User string
	// Mode ("sfu" or "p2p") and Codec are the client's requests, as sent.
	Mode, Codec string
	// CanPublish: the client may publish tracks in the room.
	CanPublish bool
	// Push sends an event of the room to the participant: it becomes
	// {"room":R,"event":E,"data":D}. data must be a JSON value. It never
	// blocks.
	Push func(event string, data []byte)
}

// Room command names.
const (
	CmdRoomJoin      = "room_join"
	CmdRoomLeave     = "room_leave"
	CmdRoomOffer     = "room_offer"
	CmdRoomAnswer    = "room_answer"
	CmdRoomCandidate = "room_candidate"
	CmdRoomSubscribe = "room_subscribe"
	CmdRoomPublish   = "room_publish"
	CmdRoomUnpublish = "room_unpublish"
	CmdRoomMute      = "room_mute"
	CmdRoomICE       = "room_ice"
)

// RoomEventKicked is the push that tells a participant the server removed
// it from the room: the hub forgets the room for the connection.
const RoomEventKicked = "kicked"

// roomSignals maps the signaling commands to their kind in Rooms.Signal.
var roomSignals = map[string]string{
	CmdRoomOffer:     "offer",
	CmdRoomAnswer:    "answer",
	CmdRoomCandidate: "candidate",
	CmdRoomSubscribe: "subscribe",
	CmdRoomPublish:   "publish",
	CmdRoomUnpublish: "unpublish",
	CmdRoomMute:      "mute",
	CmdRoomICE:       "ice",
}

// maxRoomsPerConnection bounds the rooms one connection may be in.
const maxRoomsPerConnection = 8

// roomData is the part of a room command's data the hub reads.
type roomData struct {
	Room  string `json:"room"`
	Mode  string `json:"mode"`
	Codec string `json:"codec"`
}

// parseRoomData reads the room name (and the join options) from a room
// command's data, and checks it like a channel name.
func parseRoomData(data json.RawMessage) (roomData, *protocol.Error) {
	var d roomData
	if len(data) == 0 {
		return d, protocol.ErrBadRequest.WithMessage(`missing "data" with "room"`)
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return d, protocol.ErrBadRequest.WithMessage("invalid data: %s", protocol.JSONProblem(err))
	}
	if d.Room == "" {
		return d, protocol.ErrBadRequest.WithMessage(`missing "room" in data`)
	}
	if perr := protocol.ValidateChannel(d.Room); perr != nil {
		return d, protocol.ErrInvalidChannel.WithMessage("room name: %s", perr.Message)
	}
	if len(d.Room) > MaxRoomLength {
		return d, protocol.ErrInvalidChannel.WithMessage("room name longer than %d bytes", MaxRoomLength)
	}
	return d, nil
}

// roomError turns an error of Rooms into what the client sees.
func (s *Session) roomError(err error) *protocol.Error {
	var perr *protocol.Error
	if errors.As(err, &perr) {
		return perr
	}
	s.hub.log.Warn("room command failed", "client", s.id, "err", err)
	return protocol.ErrInternal.WithMessage("room command failed")
}

// canJoinRoom applies the room's rule (Hub.roomAccess) with the
// connection's user and token grants.
func (s *Session) canJoinRoom(room string) (publish bool, perr *protocol.Error) {
	return s.hub.roomAccess(room, s.User(), s.grants())
}

func (s *Session) roomJoin(ctx context.Context, cmd *protocol.Command) ([]byte, *protocol.Error) {
	rooms := s.hub.cfg.Rooms
	if rooms == nil {
		return nil, protocol.ErrUnavailable.WithMessage("calls are not enabled on this server")
	}
	d, perr := parseRoomData(cmd.Data)
	if perr != nil {
		return nil, perr
	}
	publish, perr := s.canJoinRoom(d.Room)
	if perr != nil {
		return nil, perr
	}
	if perr := s.reserveRoom(d.Room); perr != nil {
		return nil, perr
	}
	room := d.Room
	res, err := rooms.Join(ctx, RoomJoin{
		Room: room, Participant: s.id, User: s.User(), Mode: d.Mode, Codec: d.Codec, CanPublish: publish,
		Push: func(event string, data []byte) {
			if event == RoomEventKicked { // removed by the server API
				s.dropRoom(room)
			}
			s.pushRoom(room, event, data)
		},
	})
	if err != nil {
		s.dropRoom(room)
		return nil, s.roomError(err)
	}
	if s.isClosed() { // the connection ended during the join
		s.dropRoom(room)
		rooms.Leave(room, s.id)
		return nil, protocol.ErrUnavailable.WithMessage("connection is closing")
	}
	s.roomJoined(ctx, room, publish)
	return res, nil
}

// pushRoom queues {"room":R,"event":E,"data":D}.
func (s *Session) pushRoom(room, event string, data []byte) {
	b := make([]byte, 0, len(room)+len(event)+len(data)+40)
	b = append(b, `{"room":`...)
	b = appendJSONString(b, room)
	b = append(b, `,"event":`...)
	b = appendJSONString(b, event)
	b = append(b, `,"data":`...)
	b = append(b, data...)
	b = append(b, '}')
	s.out.push(Message{Data: b})
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}

// reserveRoom adds room to the session's rooms (undone with dropRoom if
// the join fails), unless it is there, the session is at its limit, or
// closing.
func (s *Session) reserveRoom(room string) *protocol.Error {
	if s.isClosed() {
		return protocol.ErrUnavailable.WithMessage("connection is closing")
	}
	h := s.hub
	h.roomsMu.Lock()
	defer h.roomsMu.Unlock()
	rooms := h.inRooms[s]
	switch {
	case slices.Contains(rooms, room):
		return protocol.ErrAlreadySubscribed.WithMessage("already in room %q", room)
	case len(rooms) >= maxRoomsPerConnection:
		return protocol.ErrLimitExceeded.WithMessage("at most %d rooms per connection", maxRoomsPerConnection)
	}
	h.inRooms[s] = append(rooms, room)
	return nil
}

// inRoom reports whether the session joined room.
func (s *Session) inRoom(room string) bool {
	s.hub.roomsMu.Lock()
	defer s.hub.roomsMu.Unlock()
	return s.inRoomLocked(room)
}

// inRoomLocked is inRoom for a caller holding roomsMu.
func (s *Session) inRoomLocked(room string) bool {
	return slices.Contains(s.hub.inRooms[s], room)
}

// dropRoom forgets room in the session's rooms, and queues the
// participant's removal from the room's presence.
func (s *Session) dropRoom(room string) bool {
	h := s.hub
	h.roomsMu.Lock()
	defer h.roomsMu.Unlock()
	rooms := h.inRooms[s]
	i := slices.Index(rooms, room)
	if i < 0 {
		return false
	}
	if rooms = slices.Delete(rooms, i, i+1); len(rooms) == 0 {
		delete(h.inRooms, s)
	} else {
		h.inRooms[s] = rooms
	}
	h.enqueueRoomPresence(roomPresenceOp{kind: "leave", member: roomMember{room, s.id}})
	return true
}

func (s *Session) roomLeave(_ context.Context, cmd *protocol.Command) ([]byte, *protocol.Error) {
	d, perr := parseRoomData(cmd.Data)
	if perr != nil {
		return nil, perr
	}
	if !s.dropRoom(d.Room) {
		return nil, errNotInRoom(d.Room)
	}
	if r := s.hub.cfg.Rooms; r != nil {
		r.Leave(d.Room, s.id)
	}
	return nil, nil
}

func errNotInRoom(room string) *protocol.Error {
	return protocol.ErrNotInRoom.WithMessage("not in room %q: send room_join first", room)
}

// roomSignal runs room_offer, room_answer, room_candidate,
// room_subscribe, room_publish, room_unpublish, room_mute and room_ice.
func (s *Session) roomSignal(ctx context.Context, cmd *protocol.Command) ([]byte, *protocol.Error) {
	rooms := s.hub.cfg.Rooms
	if rooms == nil {
		return nil, protocol.ErrUnavailable.WithMessage("calls are not enabled on this server")
	}
	d, perr := parseRoomData(cmd.Data)
	if perr != nil {
		return nil, perr
	}
	if !s.inRoom(d.Room) {
		return nil, errNotInRoom(d.Room)
	}
	res, err := rooms.Signal(ctx, d.Room, s.id, roomSignals[cmd.Command], cmd.Data)
	if err != nil {
		return nil, s.roomError(err)
	}
	return res, nil
}

// leaveRooms leaves every room of a closed session.
func (s *Session) leaveRooms() {
	h := s.hub
	h.roomsMu.Lock()
	rooms := h.inRooms[s]
	delete(h.inRooms, s)
	for _, room := range rooms {
		h.enqueueRoomPresence(roomPresenceOp{kind: "leave", member: roomMember{room, s.id}})
	}
	h.roomsMu.Unlock()
	if r := s.hub.cfg.Rooms; r != nil {
		for _, room := range rooms {
			r.Leave(room, s.id)
		}
	}
}
