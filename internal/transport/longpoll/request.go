package longpoll

import (
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// request is a parsed poll request.
type request struct {
	// channels are the polled channels, sorted, each valid and listed once.
	// Sorting makes the cursor independent of the order of the query
	// parameters.
	channels []string
	// timeout is how long to wait for a publication; 0 never waits.
	timeout time.Duration
	// cursor is the client's position, nil on a first poll.
	cursor *cursor
	// since holds, when the query gave "since" parameters, one start
	// position per channel (nil: from now), in the order of channels;
	// nil otherwise. A request has a cursor or since, not both.
	since []*protocol.StreamPosition
}

// cursor is a decoded poll cursor: the position of every polled channel.
type cursor struct {
	// check is protocol.CursorCheck of the channels at the epochs the
	// offsets belong to.
	check uint32
	// offsets holds one offset per channel, in the order of
	// request.channels.
	offsets []uint64
}

// A poll cursor is a protocol cursor (see protocol.EncodeCursor) whose
// values are the channels' offsets followed by one more: a tag of the
// channel list alone. The protocol check covers the channels and their
// epochs together, so it cannot tell a cursor made for another list of
// channels (a client bug, answered with 400) from a cursor whose epochs have
// changed (lost history, answered with "unrecovered"); the list tag can.

// listTag is the tag of a (sorted) channel list in a poll cursor.
func listTag(channels []string) uint64 {
	return uint64(protocol.CursorCheck(channels, make([]string, len(channels))))
}

// encodeCursor encodes the position of channels: their offsets, valid in
// the given epochs.
func encodeCursor(channels, epochs []string, offsets []uint64) string {
	vals := make([]uint64, 0, len(offsets)+1)
	vals = append(vals, offsets...)
	vals = append(vals, listTag(channels))
	return protocol.EncodeCursor(protocol.CursorCheck(channels, epochs), vals)
}

// decodeCursor decodes s as a poll cursor made for channels.
func decodeCursor(s string, channels []string) (cursor, *protocol.Error) {
	check, vals, err := protocol.DecodeCursor(s, len(channels)+1)
	if err != nil {
		return cursor{}, protocol.ErrBadRequest.WithMessage(`malformed "cursor" (or one made for a different number of channels)`)
	}
	if vals[len(channels)] != listTag(channels) {
		return cursor{}, protocol.ErrBadRequest.WithMessage(`"cursor" was made for another list of channels`)
	}
	return cursor{check: check, offsets: vals[:len(channels)]}, nil
}

// limits bound what a poll request may ask for.
type limits struct {
	maxChannels    int // most channels per poll
	maxTimeout     int // seconds
	defaultTimeout int // seconds, when the request names none
}

// parseRequest reads a poll request from its query parameters:
// channel (1 to maxChannels times), cursor (optional), since (optional,
// once per channel in the order of the channel parameters, see
// protocol.ParseSince; not with a cursor) and timeout (optional, whole
// seconds). Other parameters are ignored, so that clients may add their own
// (such as a cache buster).
func parseRequest(q url.Values, lim limits) (request, *protocol.Error) {
	var req request
	chans := q["channel"]
	switch {
	case len(chans) == 0:
		return req, protocol.ErrInvalidChannel.WithMessage(`missing "channel"`)
	case len(chans) > lim.maxChannels:
		return req, protocol.ErrLimitExceeded.WithMessage(`at most %d "channel" parameters per poll, got %d`, lim.maxChannels, len(chans))
	}
	for _, ch := range chans {
		if perr := protocol.ValidateChannel(ch); perr != nil {
			return req, perr
		}
	}
	since, perr := protocol.ParseSince(q["since"], len(chans))
	if perr != nil {
		return req, perr
	}
	// Sort the channels and their since positions together.
	order := make([]int, len(chans))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int { return strings.Compare(chans[i], chans[j]) })
	req.channels = make([]string, len(chans))
	for k, i := range order {
		req.channels[k] = chans[i]
	}
	for i := 1; i < len(req.channels); i++ {
		if req.channels[i] == req.channels[i-1] {
			return req, protocol.ErrBadRequest.WithMessage(`channel %q is listed twice`, req.channels[i])
		}
	}
	if since != nil {
		req.since = make([]*protocol.StreamPosition, len(since))
		for k, i := range order {
			req.since[k] = since[i]
		}
	}

	secs := lim.defaultTimeout
	switch t := q["timeout"]; len(t) {
	case 0:
	case 1:
		n, err := strconv.Atoi(t[0])
		if err != nil || n < 0 || n > lim.maxTimeout {
			return req, protocol.ErrBadRequest.WithMessage(`"timeout" must be a whole number of seconds from 0 to %d`, lim.maxTimeout)
		}
		secs = n
	default:
		return req, protocol.ErrBadRequest.WithMessage(`"timeout" given more than once`)
	}
	req.timeout = time.Duration(secs) * time.Second

	switch c := q["cursor"]; {
	case len(c) > 1:
		return req, protocol.ErrBadRequest.WithMessage(`"cursor" given more than once`)
	case len(c) == 1 && c[0] != "" && req.since != nil:
		return req, protocol.ErrBadRequest.WithMessage(`give "cursor" or "since", not both`)
	case len(c) == 1 && c[0] != "":
		cur, perr := decodeCursor(c[0], req.channels)
		if perr != nil {
			return req, perr
		}
		req.cursor = &cur
	}
	return req, nil
}
