package stream

import (
	"errors"
	"fmt"
	"net/http"
)

// Errors of the registry and the authorizer. Ingests and outputs map them
// to their protocol's answer with StatusCode (HTTP) or a close of the
// connection (RTMP); docs/streaming.md lists what each one means to users.
var (
	// ErrBadPath: the path is not NAMESPACE/NAME made of letters, digits,
	// '_', '-' and '.' (each part 1 to 64 bytes, not starting with '.').
	ErrBadPath = errors.New("stream: invalid stream path")
	// ErrUnknownNamespace: the path's namespace is not configured for
	// streams.
	ErrUnknownNamespace = errors.New("stream: unknown stream namespace")
	// ErrBadTrack: a track description or a unit's track index is invalid.
	ErrBadTrack = errors.New("stream: invalid track")
	// ErrPublisherExists: the path already has a live publisher. A second
	// publisher is refused, never takes over: a stolen or leaked key
	// cannot cut a live broadcast. End the first one with
	// POST /api/streams/kick to replace it.
	ErrPublisherExists = errors.New("stream: the path already has a publisher")
	// ErrNotFound: no stream is live at the path.
	ErrNotFound = errors.New("stream: no live stream at this path")
	// ErrEnded: the publisher ended the stream (or its connection broke).
	ErrEnded = errors.New("stream: the stream ended")
	// ErrKicked: the stream was ended by POST /api/streams/kick.
	ErrKicked = errors.New("stream: the publisher was kicked")
	// ErrOwnersUnavailable: the cluster's record of which node publishes
	// each path (Options.Owners) cannot be read or written now, so a
	// publisher is refused rather than risk a second one elsewhere.
	ErrOwnersUnavailable = errors.New("stream: the cluster's stream records cannot be reached")
	// ErrClosed: the server is shutting down.
	ErrClosed = errors.New("stream: the server is shutting down")
	// ErrUnauthorized: the request carries no credential where one is
	// needed.
	ErrUnauthorized = errors.New("stream: credentials required")
	// ErrForbidden: the credential is not valid for this path and action
	// (wrong API key, a token without the grant, a key for another path).
	ErrForbidden = errors.New("stream: permission denied")
	// ErrKeyExpired: the stream key's expiry has passed; it wraps
	// ErrForbidden.
	ErrKeyExpired = fmt.Errorf("%w: stream key expired", ErrForbidden)
)

// StatusCode returns the HTTP status for an error of this package (500
// for any other error): 400 bad path or track, 401 no credentials, 403
// refused or expired credentials, 404 unknown namespace or no stream, 409
// a publisher exists, 410 ended or kicked, 503 shutting down or the
// cluster's stream records unreachable.
func StatusCode(err error) int {
	switch {
	case errors.Is(err, ErrBadPath), errors.Is(err, ErrBadTrack):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, ErrForbidden), errors.Is(err, ErrKeyExpired):
		return http.StatusForbidden
	case errors.Is(err, ErrUnknownNamespace), errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrPublisherExists):
		return http.StatusConflict
	case errors.Is(err, ErrEnded), errors.Is(err, ErrKicked):
		return http.StatusGone
	case errors.Is(err, ErrClosed), errors.Is(err, ErrOwnersUnavailable):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
