package api

import (
	"context"
	"errors"
	"time"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// Streams is what the API needs from the live streams (docs/streaming.md):
// those of the whole cluster, whichever node took each publisher.
type Streams interface {
	// List describes the live streams of every live node, as a JSON
	// value (with "streams" and "missing_nodes").
	List(ctx context.Context) any
	// Kick ends the publisher of path on whichever node took it; it
	// returns an error whose StreamNotFound reports true when nothing is
	// live there, or a *protocol.Error.
	Kick(ctx context.Context, path string) error
	// MintKey returns a stream key letting its holder do action
	// ("publish" or "read") on path until the returned expiry.
	MintKey(action, path string, ttl time.Duration) (string, time.Time, error)
}

// StreamNotFound lets a Streams error say that no stream is live at the
// path (mapped to 404).
type StreamNotFound interface{ StreamNotFound() bool }

// DefaultStreamKeyTTL is a minted stream key's lifetime when the request
// gives none.
const DefaultStreamKeyTTL = 24 * time.Hour

func (a *API) streamsList(ctx context.Context, _ []byte) (any, *protocol.Error) {
	if a.opts.Streams == nil {
		return map[string]any{"streams": []any{}}, nil
	}
	return a.opts.Streams.List(ctx), nil
}

type streamRequest struct {
	Path   string `json:"path"`
	Action string `json:"action"`
	// TTL is the key's lifetime in seconds.
	TTL *int64 `json:"ttl"`
}

func (a *API) streamTarget(body []byte) (streamRequest, *protocol.Error) {
	var req streamRequest
	if perr := decodeParams(body, &req); perr != nil {
		return req, perr
	}
	if req.Path == "" {
		return req, protocol.ErrBadRequest.WithMessage(`give "path" (NAMESPACE/NAME)`)
	}
	if a.opts.Streams == nil {
		return req, protocol.ErrUnavailable.WithMessage("live streams are not enabled on this server (streams is off)")
	}
	return req, nil
}

func (a *API) streamKick(ctx context.Context, body []byte) (any, *protocol.Error) {
	req, perr := a.streamTarget(body)
	if perr != nil {
		return nil, perr
	}
	if err := a.opts.Streams.Kick(ctx, req.Path); err != nil {
		var nf StreamNotFound
		if errors.As(err, &nf) && nf.StreamNotFound() {
			return nil, &protocol.Error{Code: 404, Message: err.Error()}
		}
		if errors.As(err, &perr) {
			return nil, perr
		}
		return nil, protocol.ErrBadRequest.WithMessage("%s", err.Error())
	}
	return struct{}{}, nil
}

func (a *API) streamKey(_ context.Context, body []byte) (any, *protocol.Error) {
	req, perr := a.streamTarget(body)
	if perr != nil {
		return nil, perr
	}
	if req.Action == "" {
		req.Action = "publish"
	}
	if req.Action != "publish" && req.Action != "read" {
		return nil, protocol.ErrBadRequest.WithMessage(`"action" must be "publish" or "read"`)
	}
	ttl := DefaultStreamKeyTTL
	if req.TTL != nil {
		ttl = time.Duration(*req.TTL) * time.Second
	}
	key, exp, err := a.opts.Streams.MintKey(req.Action, req.Path, ttl)
	if err != nil {
		return nil, protocol.ErrBadRequest.WithMessage("%s", err.Error())
	}
	return map[string]any{"key": key, "path": req.Path, "action": req.Action, "expires": exp.UTC().Format(time.RFC3339)}, nil
}
