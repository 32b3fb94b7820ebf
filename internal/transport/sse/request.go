package sse

import (
	"net/url"

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
}

// cursor is a decoded event id: one offset per channel of the stream and a
// check over the channel names and their epochs.
type cursor struct {
	check   uint32
	offsets []uint64
}

// parseRequest validates a stream request: rawQuery is the URL's query
// string and lastEventID the Last-Event-ID header ("" when absent). The
// header wins over the lastEventId query parameter, which polyfills use: a
// native EventSource keeps its URL, so on reconnect the header is the fresher
// of the two. maxChannels bounds the channels of one stream.
//
// Errors carry the protocol code the client sees in the 400 answer: 400 for
// a malformed query, a repeated channel or a malformed event id, 422 for a
// missing or invalid channel name, 429 for too many channels.
func parseRequest(rawQuery, lastEventID string, maxChannels int) (request, *protocol.Error) {
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

	id := lastEventID
	if id == "" {
		ids := q["lastEventId"]
		if len(ids) > 1 {
			return request{}, protocol.ErrBadRequest.WithMessage(`"lastEventId" is given %d times`, len(ids))
		}
		if len(ids) == 1 {
			id = ids[0]
		}
	}
	if id == "" {
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
