package api

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/switchboardhq/switchboard/internal/hub"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// Rooms is what the API needs from the call service: the rooms of the
// whole cluster, whichever node serves each (the hub implements it).
type Rooms interface {
	// ListRooms describes the rooms of every live node, and names the
	// nodes that did not answer.
	ListRooms(ctx context.Context) hub.RoomList
	// KickRoom removes a participant from a room.
	KickRoom(ctx context.Context, room, participant string) error
	// MuteRoom stops (muted) or resumes forwarding a participant's track;
	// an empty track means all of them, "audio" or "video" all of a kind.
	MuteRoom(ctx context.Context, room, participant, track string, muted bool) error
}

func (a *API) rooms(ctx context.Context, _ []byte) (any, *protocol.Error) {
	if a.opts.Rooms == nil {
		return hub.RoomList{Rooms: []json.RawMessage{}}, nil
	}
	return a.opts.Rooms.ListRooms(ctx), nil
}

type roomRequest struct {
	Room        string `json:"room"`
	Participant string `json:"participant"`
	Track       string `json:"track"`
	Muted       *bool  `json:"muted"`
}

func (a *API) roomTarget(body []byte) (roomRequest, *protocol.Error) {
	var req roomRequest
	if perr := decodeParams(body, &req); perr != nil {
		return req, perr
	}
	if req.Room == "" || req.Participant == "" {
		return req, protocol.ErrBadRequest.WithMessage(`give "room" and "participant"`)
	}
	if a.opts.Rooms == nil {
		return req, protocol.ErrUnavailable.WithMessage("calls are not enabled on this server")
	}
	return req, nil
}

func (a *API) roomKick(ctx context.Context, body []byte) (any, *protocol.Error) {
	req, perr := a.roomTarget(body)
	if perr != nil {
		return nil, perr
	}
	if err := a.opts.Rooms.KickRoom(ctx, req.Room, req.Participant); err != nil {
		return nil, roomFailed(err)
	}
	return struct{}{}, nil
}

func (a *API) roomMute(ctx context.Context, body []byte) (any, *protocol.Error) {
	req, perr := a.roomTarget(body)
	if perr != nil {
		return nil, perr
	}
	muted := true
	if req.Muted != nil {
		muted = *req.Muted
	}
	if err := a.opts.Rooms.MuteRoom(ctx, req.Room, req.Participant, req.Track, muted); err != nil {
		return nil, roomFailed(err)
	}
	return struct{}{}, nil
}

// roomFailed maps a call service error: a participant or track that is
// not there is a 404.
func roomFailed(err error) *protocol.Error {
	var perr *protocol.Error
	if errors.As(err, &perr) {
		if perr.Code == protocol.ErrNotInRoom.Code {
			return &protocol.Error{Code: 404, Message: perr.Message}
		}
		return perr
	}
	return protocol.ErrInternal
}
