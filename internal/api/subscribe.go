package api

import (
	"context"
	"encoding/json"

	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// subscribeRequest is the body of POST /api/subscribe.
type subscribeRequest struct {
	Client  string                   `json:"client"`
	User    string                   `json:"user"`
	Channel string                   `json:"channel"`
	Data    json.RawMessage          `json:"data"`
	Info    json.RawMessage          `json:"info"`
	Since   *protocol.StreamPosition `json:"since"`
}

// subscribeResult answers /api/subscribe and /api/unsubscribe: how many
// connections, over every node, were changed.
type subscribeResult struct {
	Connections int `json:"connections"`
}

// target checks that exactly one of client and user is given.
func target(client, user string) *protocol.Error {
	if (client == "") == (user == "") {
		return protocol.ErrBadRequest.WithMessage(`give one of "client" or "user"`)
	}
	return nil
}

// subscribe subscribes a client, or every connection of a user, on every
// node, to a channel: a server-side subscription, which skips the channel
// permission check but not the name's validity (checked by the hub).
func (a *API) subscribe(ctx context.Context, body []byte) (any, *protocol.Error) {
	var req subscribeRequest
	if perr := decodeParams(body, &req); perr != nil {
		return nil, perr
	}
	if perr := target(req.Client, req.User); perr != nil {
		return nil, perr
	}
	if string(req.Info) == "null" {
		req.Info = nil
	}
	if req.Info != nil && req.Info[0] != '{' {
		return nil, protocol.ErrBadRequest.WithMessage(`"info" must be a JSON object`)
	}
	if string(req.Data) == "null" {
		req.Data = nil
	}
	n, err := a.hub.SubscribeServer(ctx, hub.ServerSubscription{
		Client: req.Client, User: req.User, Channel: req.Channel,
		Data: req.Data, Info: req.Info, Since: req.Since,
	})
	if err != nil {
		return nil, a.failed(err)
	}
	return subscribeResult{Connections: n}, nil
}

// unsubscribe ends the subscriptions to a channel of a client, or of every
// connection of a user, on every node.
func (a *API) unsubscribe(ctx context.Context, body []byte) (any, *protocol.Error) {
	var req struct {
		Client  string `json:"client"`
		User    string `json:"user"`
		Channel string `json:"channel"`
	}
	if perr := decodeParams(body, &req); perr != nil {
		return nil, perr
	}
	if perr := target(req.Client, req.User); perr != nil {
		return nil, perr
	}
	n, err := a.hub.UnsubscribeServer(ctx, req.Client, req.User, req.Channel)
	if err != nil {
		return nil, a.failed(err)
	}
	return subscribeResult{Connections: n}, nil
}
