package hub

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// The server API manages the live streams of the whole cluster from any
// node, as it does rooms (roomadmin.go): the list is gathered from every
// live node, and a kick goes to the node that took the stream's
// publisher, found in the stream-owner records the streams keep in the
// broker's presence store.

// StreamAdmin is the part of the live streams the server API uses through
// the hub. Its methods act on this node only.
type StreamAdmin interface {
	// LocalStreams describes the live streams of this node, one JSON
	// object per stream, each with "path" and "node" (this node's id).
	LocalStreams() []json.RawMessage
	// StreamOwner returns the id of the node that publishes path: this
	// node's, another's, or "" when no live node does. A path that is not
	// a valid stream path is an error wrapping ErrStreamPath.
	StreamOwner(ctx context.Context, path string) (string, error)
	// KickStream ends the publisher of path on this node; the error wraps
	// ErrStreamNotLive when nothing is live there.
	KickStream(path string) error
}

// Errors a StreamAdmin returns for the hub to map.
var (
	// ErrStreamNotLive: no node publishes the stream (404 in the API).
	ErrStreamNotLive = errors.New("hub: no live stream at this path")
	// ErrStreamPath: the path is invalid or in no stream namespace (400).
	ErrStreamPath = errors.New("hub: invalid stream path")
)

// StreamList is the live streams of the cluster, for GET /api/streams.
type StreamList struct {
	// Streams describes every live stream of every node that answered,
	// sorted by path then node.
	Streams []json.RawMessage `json:"streams"`
	// MissingNodes lists the live nodes that did not answer within 2 s:
	// their streams are not in Streams. Omitted when every node answered.
	MissingNodes []string `json:"missing_nodes,omitempty"`
}

// errStreamsOff refuses a stream request sent to a node without streams.
func errStreamsOff() *protocol.Error {
	return protocol.ErrUnavailable.WithMessage("live streams are not enabled on this node (streams is off)")
}

// ListStreams lists the live streams of every live node of the cluster (a
// node without streams has none); the nodes that do not answer within
// 2 s are named in MissingNodes.
func (h *Hub) ListStreams(ctx context.Context) StreamList {
	type keyed struct {
		path, node string
		raw        json.RawMessage
	}
	all := []keyed{}
	add := func(list []json.RawMessage) {
		for _, raw := range list {
			var k struct{ Path, Node string }
			_ = json.Unmarshal(raw, &k)
			all = append(all, keyed{k.Path, k.Node, raw})
		}
	}
	if h.cfg.Streams != nil {
		add(h.cfg.Streams.LocalStreams())
	}
	missing := h.gather(ctx, control{Type: "streams"}, func(r control) { add(r.Streams) })
	slices.SortFunc(all, func(x, y keyed) int { return cmp.Or(cmp.Compare(x.path, y.path), cmp.Compare(x.node, y.node)) })
	out := StreamList{Streams: make([]json.RawMessage, len(all)), MissingNodes: missing}
	for i, k := range all {
		out.Streams[i] = k.raw
	}
	return out
}

// KickStream ends the publisher of path on whichever node took it.
// Errors are *protocol.Error: 404 when no node publishes path, 400 for an
// invalid path, 503 when streams are off here or the publishing node does
// not answer within 2 s.
func (h *Hub) KickStream(ctx context.Context, path string) error {
	a := h.cfg.Streams
	if a == nil {
		return errStreamsOff()
	}
	owner, err := a.StreamOwner(ctx, path)
	if err != nil {
		return streamAdminError(err)
	}
	switch owner {
	case "":
		return streamAdminError(ErrStreamNotLive)
	case h.cfg.NodeID:
		if perr := streamAdminError(a.KickStream(path)); perr != nil {
			return perr
		}
		return nil
	}
	r, err := h.ask(ctx, owner, control{Type: "stream_kick", Path: path})
	if err != nil {
		return err
	}
	if r.Error != nil {
		return r.Error
	}
	return nil
}

// streamAdminError maps a StreamAdmin error to the API's (nil stays nil).
func streamAdminError(err error) *protocol.Error {
	var perr *protocol.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &perr):
		return perr
	case errors.Is(err, ErrStreamNotLive):
		return &protocol.Error{Code: 404, Message: err.Error()}
	case errors.Is(err, ErrStreamPath):
		return protocol.ErrBadRequest.WithMessage("%s", err.Error())
	}
	return protocol.ErrInternal.WithMessage("stream request failed: %v", err)
}

// handleStreamControl answers a "streams" request or carries out a kick
// addressed to this node, on its own goroutine.
func (h *Hub) handleStreamControl(c control) {
	a := h.cfg.Streams
	switch {
	case c.Type == "streams":
		var list []json.RawMessage
		if a != nil {
			list = a.LocalStreams()
		}
		h.sendControl(control{Type: "streams_reply", ID: c.ID, Streams: list})
	case a == nil:
		h.sendControl(control{Type: "stream_kick_reply", ID: c.ID, Error: errStreamsOff()})
	default:
		h.sendControl(control{Type: "stream_kick_reply", ID: c.ID, Error: streamAdminError(a.KickStream(c.Path))})
	}
}
