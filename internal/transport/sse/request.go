package sse

import (
	"net/url"
	"strings"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// maxEventIDLength is the longest Last-Event-ID accepted. The ids the server
// writes are at most this long (protocol.MaxCursorChannels channels), so a
// longer one was not made by it.
const maxEventIDLength = 128

// request is what one stream request asks for.
type request struct {
	// channels are the stream's channels, in the order of the query.
	channels []string
	// resume is the position the client holds (its Last-Event-ID), or nil
	// when it gave none.
	resume *cursor
	// since holds, when the query gave "since" parameters and no event id
	// was given, one start position per channel (nil: from now), in the
	// order of channels; nil otherwise.
	since []*protocol.StreamPosition
	// token is the connection token (a JWT), "" when none was given.
	token string
}

// cursor is a decoded event id: one offset per channel of the stream and a
// check over the channel names and their epochs.
type cursor struct {
	check   uint32
	offsets []uint64
}

// parseRequest validates a stream request: rawQuery is the URL's query
// string, lastEventID the Last-Event-ID header and authorization the
// Authorization header ("" when absent).
//
// The Last-Event-ID header wins over the lastEventId query parameter, which
// polyfills use and which a page sets when it opens a new EventSource to go
// on from where an old one stopped: a native EventSource keeps its URL, so on
// its own reconnects the header is the fresher of the two. Likewise an
// "Authorization: Bearer" header wins over the token query parameter (an
// EventSource cannot set headers). maxChannels bounds the channels of one
// stream.
//
// Errors carry the protocol code the client sees in the 400 answer: 400 for
// a malformed query, a repeated channel or parameter, a malformed event
// id or "since"; 422 for a missing or invalid channel name; 429 for too many channels.
func parseRequest(rawQuery, lastEventID, authorization string, maxChannels int) (request, *protocol.Error) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return request{}, protocol.ErrBadRequest.WithMessage("malformed query string")
	}
	channels := q["channel"]
	if len(channels) == 0 {
		return request{}, protocol.ErrInvalidChannel.WithMessage(`missing "channel" query parameter`)
	}
	if len(channels) > maxChannels {
		return request{}, protocol.ErrLimitExceeded.WithMessage("at most %d channels per stream, got %d", maxChannels, len(channels))
	}
	seen := make(map[string]bool, len(channels))
	for _, ch := range channels {
		if perr := protocol.ValidateChannel(ch); perr != nil {
			return request{}, perr
		}
		if seen[ch] {
			return request{}, protocol.ErrBadRequest.WithMessage("channel %q is given twice", ch)
		}
		seen[ch] = true
	}
	req := request{channels: channels}

	token, perr := single(q, "token")
	if perr != nil {
		return request{}, perr
	}
	if authorization != "" {
		scheme, cred, _ := strings.Cut(authorization, " ")
		if !strings.EqualFold(scheme, "Bearer") || cred == "" {
			return request{}, protocol.ErrBadRequest.WithMessage(`the Authorization header must be "Bearer <token>"`)
		}
		token = cred
	}
	req.token = token

	// Validated even when an event id makes them unused, so that a bad
	// value is found the first time, not on some later reconnect.
	since, perr := protocol.ParseSince(q["since"], len(channels))
	if perr != nil {
		return request{}, perr
	}

	id := lastEventID
	if id == "" {
		if id, perr = single(q, "lastEventId"); perr != nil {
			return request{}, perr
		}
	}
	if id == "" {
		req.since = since
		return req, nil
	}
	if len(id) > maxEventIDLength {
		return request{}, protocol.ErrBadRequest.WithMessage("malformed Last-Event-ID: longer than %d bytes", maxEventIDLength)
	}
	check, offsets, err := protocol.DecodeCursor(id, len(channels))
	if err != nil {
		return request{}, protocol.ErrBadRequest.WithMessage("malformed Last-Event-ID: not an event id of this server for %d channel(s)", len(channels))
	}
	req.resume = &cursor{check: check, offsets: offsets}
	return req, nil
}

// single returns the value of a query parameter given at most once.
func single(q url.Values, name string) (string, *protocol.Error) {
	vs := q[name]
	if len(vs) > 1 {
		return "", protocol.ErrBadRequest.WithMessage("%q is given %d times", name, len(vs))
	}
	if len(vs) == 1 {
		return vs[0], nil
	}
	return "", nil
}
