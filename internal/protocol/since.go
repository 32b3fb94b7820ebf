package protocol

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxEpochLength is the longest epoch a client may send back in a "since"
// query parameter. The brokers' epochs are much shorter (8 to 26 bytes).
const MaxEpochLength = 64

// ParseSince decodes the "since" query parameters of /sse and /poll, which
// start each channel of a stream or poll at a position the client holds
// (from a WebSocket connection, another stream, another poll). They are
// given not at all or exactly once per "channel" parameter, the i-th
// belonging to the i-th channel. Each is "OFFSET:EPOCH" (a decimal offset,
// then the epoch that offset belongs to: 1 to MaxEpochLength printable
// ASCII bytes), or empty for a channel that starts from now.
//
// It returns nil when vals is empty, otherwise one entry per channel (nil
// for an empty value). Every error is ErrBadRequest with a message naming
// the faulty value.
func ParseSince(vals []string, channels int) ([]*StreamPosition, *Error) {
	if len(vals) == 0 {
		return nil, nil
	}
	if len(vals) != channels {
		return nil, ErrBadRequest.WithMessage(`"since" must be given once per "channel" (in the same order) or not at all: got %d for %d channel(s)`, len(vals), channels)
	}
	out := make([]*StreamPosition, len(vals))
	for i, v := range vals {
		if v == "" {
			continue
		}
		pos, err := parseSinceValue(v)
		if err != nil {
			return nil, ErrBadRequest.WithMessage(`malformed "since" number %d (want OFFSET:EPOCH or nothing): %v`, i+1, err)
		}
		out[i] = pos
	}
	return out, nil
}

// parseSinceValue decodes one non-empty "since" value.
func parseSinceValue(v string) (*StreamPosition, error) {
	off, epoch, ok := strings.Cut(v, ":")
	if !ok {
		return nil, fmt.Errorf("no colon")
	}
	if off == "" || len(off) > 20 {
		return nil, fmt.Errorf("the offset must be 1 to 20 digits")
	}
	for i := 0; i < len(off); i++ {
		if off[i] < '0' || off[i] > '9' {
			return nil, fmt.Errorf("the offset must be decimal digits")
		}
	}
	n, err := strconv.ParseUint(off, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("the offset is out of range")
	}
	if epoch == "" || len(epoch) > MaxEpochLength {
		return nil, fmt.Errorf("the epoch must be 1 to %d bytes", MaxEpochLength)
	}
	for i := 0; i < len(epoch); i++ {
		if epoch[i] <= ' ' || epoch[i] > '~' {
			return nil, fmt.Errorf("the epoch must be printable ASCII without spaces")
		}
	}
	return &StreamPosition{Offset: n, Epoch: epoch}, nil
}

// FormatSince is the "since" value of a position (the inverse of
// ParseSince for one value).
func FormatSince(p StreamPosition) string {
	return strconv.FormatUint(p.Offset, 10) + ":" + p.Epoch
}
