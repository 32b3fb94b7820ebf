package httpread

import (
	"net/url"
	"strconv"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// request is a parsed query.
type request struct {
	channel string
	// since, limit and reverse are history's; nil or false when not given.
	since   *protocol.StreamPosition
	limit   *int
	reverse bool
}

// parseRequest reads the query parameters: channel (required, once), and
// for history: since (OFFSET:EPOCH, see protocol.ParseSince), limit (a
// whole number; the hub checks its range) and reverse ("true" or "false"),
// each at most once. Other parameters are ignored, so that clients may add
// their own (such as a cache buster). Errors are ErrInvalidChannel (422) for
// a missing or invalid channel and ErrBadRequest (400) for the rest.
func parseRequest(q url.Values, history bool) (request, *protocol.Error) {
	var req request
	ch, perr := single(q, "channel")
	if perr != nil {
		return req, perr
	}
	if perr := protocol.ValidateChannel(ch); perr != nil {
		return req, perr
	}
	req.channel = ch
	if !history {
		return req, nil
	}
	if v, perr := single(q, "since"); perr != nil {
		return req, perr
	} else if v != "" {
		ps, perr := protocol.ParseSince([]string{v}, 1)
		if perr != nil {
			return req, perr
		}
		req.since = ps[0]
	}
	if v, perr := single(q, "limit"); perr != nil {
		return req, perr
	} else if _, given := q["limit"]; given {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || len(v) > 9 || v[0] < '0' || v[0] > '9' {
			return req, protocol.ErrBadRequest.WithMessage(`"limit" must be a whole number`)
		}
		req.limit = &n
	}
	switch v, perr := single(q, "reverse"); {
	case perr != nil:
		return req, perr
	case v == "true":
		req.reverse = true
	case v == "false" || v == "":
	default:
		return req, protocol.ErrBadRequest.WithMessage(`"reverse" must be true or false`)
	}
	return req, nil
}

// single returns the value of a query parameter given at most once ("" when
// absent).
func single(q url.Values, name string) (string, *protocol.Error) {
	switch vs := q[name]; len(vs) {
	case 0:
		return "", nil
	case 1:
		return vs[0], nil
	default:
		return "", protocol.ErrBadRequest.WithMessage("%q is given %d times", name, len(vs))
	}
}
