package api

import (
	"context"
	"errors"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// Rooms is what the API needs from the call service (rooms of this node).
type Rooms interface {
	// List describes the rooms this node serves, as a JSON value.
	List() any
	// Kick removes a participant from a room.
	Kick(room, participant string) error
	// Mute stops (muted) or resumes forwarding a participant's track; an
	// empty track means all of them, "audio" or "video" all of a kind.
	Mute(room, participant, track string, muted bool) error
}

func (a *API) rooms(context.Context, []byte) (any, *protocol.Error) {
	if a.opts.Rooms == nil {
		return map[string]any{"rooms": []any{}}, nil
	}
	return a.opts.Rooms.List(), nil
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

func (a *API) roomKick(_ context.Context, body []byte) (any, *protocol.Error) {
	req, perr := a.roomTarget(body)
	if perr != nil {
		return nil, perr
	}
	if err := a.opts.Rooms.Kick(req.Room, req.Participant); err != nil {
		return nil, roomFailed(err)
	}
	return struct{}{}, nil
}

func (a *API) roomMute(_ context.Context, body []byte) (any, *protocol.Error) {
	req, perr := a.roomTarget(body)
	if perr != nil {
		return nil, perr
	}
	muted := true
	if req.Muted != nil {
		muted = *req.Muted
	}
	if err := a.opts.Rooms.Mute(req.Room, req.Participant, req.Track, muted); err != nil {
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
