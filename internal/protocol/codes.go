package protocol

import "fmt"

// Error is a client-visible failure of one command. Code is stable and
// documented in docs/protocol.md; Message is a human-readable explanation that
// may change between releases.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	// URL is set on ErrRoomElsewhere: the node to connect to.
	URL string `json:"url,omitempty"`
}

// Error implements the error interface.
func (e *Error) Error() string { return fmt.Sprintf("switchboard error %d: %s", e.Code, e.Message) }

// WithMessage returns a copy of e with a more specific message.
func (e *Error) WithMessage(format string, args ...any) *Error {
	return &Error{Code: e.Code, Message: fmt.Sprintf(format, args...)}
}

// Client-visible error codes. They borrow the meaning of the nearest HTTP
// status so that they read naturally, and are the same in WebSocket replies
// and in the server API. The list is mirrored in docs/protocol.md.
var (
	// ErrBadRequest: the frame is not a JSON object, or a field has the wrong type.
	ErrBadRequest = &Error{Code: 400, Message: "bad request"}
	// ErrUnauthorized: the command needs credentials that were not given.
	ErrUnauthorized = &Error{Code: 401, Message: "unauthorized"}
	// ErrPermissionDenied: the credentials do not allow this command on this channel.
	ErrPermissionDenied = &Error{Code: 403, Message: "permission denied"}
	// ErrUnknownCommand: the "command" field names no command this server
	// knows, or an rpc names a method no application backend handles.
	ErrUnknownCommand = &Error{Code: 404, Message: "unknown command"}
	// ErrAlreadySubscribed: the connection is already subscribed to the channel.
	ErrAlreadySubscribed = &Error{Code: 409, Message: "already subscribed"}
	// ErrNotSubscribed: the command needs a subscription the connection does not have.
	ErrNotSubscribed = &Error{Code: 410, Message: "not subscribed"}
	// ErrEpochMismatch: a position given with "since" belongs to another
	// epoch of the channel: its history was lost.
	ErrEpochMismatch = &Error{Code: 412, Message: "position from another epoch"}
	// ErrTokenExpired: the token's expiry has passed: get a new one and
	// connect or refresh with it.
	ErrTokenExpired = &Error{Code: 419, Message: "token expired"}
	// ErrTooLarge: the message or its data is over the configured size limit.
	ErrTooLarge = &Error{Code: 413, Message: "message too large"}
	// ErrInvalidChannel: the channel name is missing or breaks the naming rules.
	ErrInvalidChannel = &Error{Code: 422, Message: "invalid channel name"}
	// ErrLimitExceeded: a per-connection limit (channels, rate) was reached.
	ErrLimitExceeded = &Error{Code: 429, Message: "limit exceeded"}
	// ErrRoomElsewhere: the room's media is served by another node; the
	// error's "url" says where to connect.
	ErrRoomElsewhere = &Error{Code: 421, Message: "room served by another node"}
	// ErrNotInRoom: a room command for a room the connection has not
	// joined (or was removed from), or for a track it does not have.
	ErrNotInRoom = &Error{Code: 440, Message: "not in room"}
	// ErrBadSignal: an SDP or ICE candidate the server cannot apply, or
	// an answer when no offer waits for one.
	ErrBadSignal = &Error{Code: 441, Message: "invalid session description or candidate"}
	// ErrRoomState: the room refuses the request as it stands: full,
	// joined in another mode, or the peer of a p2p room is not there.
	ErrRoomState = &Error{Code: 442, Message: "room state conflict"}
	// ErrInternal: the server failed; the command may be retried.
	ErrInternal = &Error{Code: 500, Message: "internal server error"}
	// ErrUnavailable: a dependency (the broker, the application backend of
	// a proxy hook) is unavailable, slow or broken; retry later.
	ErrUnavailable = &Error{Code: 503, Message: "service unavailable"}
)

// HTTPStatus is the HTTP status that carries e in the server API and the
// HTTP transports: codes that are HTTP statuses map to themselves, an
// expired token (419) to 401, the rest (400, 404 unknown command aside,
// 422) to 400.
func HTTPStatus(e *Error) int {
	switch e.Code {
	case 401, 403, 404, 409, 410, 412, 413, 429, 500, 503:
		return e.Code
	case ErrTokenExpired.Code:
		return 401
	default:
		return 400
	}
}

// Errors lists every client-visible error in code order, for documentation
// and tests.
var Errors = []*Error{
	ErrBadRequest, ErrUnauthorized, ErrPermissionDenied, ErrUnknownCommand,
	ErrAlreadySubscribed, ErrNotSubscribed, ErrEpochMismatch, ErrTooLarge, ErrTokenExpired, ErrRoomElsewhere, ErrInvalidChannel,
	ErrLimitExceeded, ErrNotInRoom, ErrBadSignal, ErrRoomState, ErrInternal, ErrUnavailable,
}

// Disconnect is the reason the server closes a connection. On WebSocket it
// becomes the close frame's status code and reason. Codes 4000-4499 advise
// the client to reconnect (with recovery); 4500-4999 advise it not to.
type Disconnect struct {
	Code   uint16
	Reason string
}

// Reconnect reports whether a client should reconnect after this disconnect.
func (d Disconnect) Reconnect() bool { return d.Code < 4500 }

// Error implements the error interface, so that a Disconnect can be returned
// as the cause of a closed connection.
func (d Disconnect) Error() string { return fmt.Sprintf("disconnect %d: %s", d.Code, d.Reason) }

// Standard WebSocket close codes (RFC 6455, section 7.4.1) the server uses,
// and Switchboard's own codes in the private range. The list is mirrored in
// docs/protocol.md.
var (
	// DisconnectNormal: a normal closure, in answer to the client's close.
	DisconnectNormal = Disconnect{1000, "normal closure"}
	// DisconnectProtocolError: the peer broke the WebSocket protocol.
	DisconnectProtocolError = Disconnect{1002, "protocol error"}
	// DisconnectUnsupportedData: a binary frame arrived where text is expected.
	DisconnectUnsupportedData = Disconnect{1003, "binary frames are not supported"}
	// DisconnectUnsupportedText: a text frame arrived on a connection that
	// negotiated a binary subprotocol. It shares code 1003 with
	// DisconnectUnsupportedData, and is not listed in Disconnects.
	DisconnectUnsupportedText = Disconnect{1003, "text frames are not supported with the binary protocol"}
	// DisconnectInvalidPayload: a text frame was not valid UTF-8.
	DisconnectInvalidPayload = Disconnect{1007, "invalid UTF-8 in text frame"}
	// DisconnectMessageTooBig: a frame was over the configured size limit.
	DisconnectMessageTooBig = Disconnect{1009, "message too big"}
	// DisconnectInternal: an unexpected server error; reconnect.
	DisconnectInternal = Disconnect{1011, "internal server error"}

	// DisconnectShutdown: the server is restarting; reconnect (to any node).
	DisconnectShutdown = Disconnect{4000, "server shutting down, reconnect"}
	// DisconnectSlowConsumer: the connection's outbound queue overflowed
	// because the client read too slowly; reconnect and recover.
	DisconnectSlowConsumer = Disconnect{4001, "slow consumer"}
	// DisconnectIdleTimeout: nothing was received from the client (not even a
	// pong) within the idle timeout; reconnect.
	DisconnectIdleTimeout = Disconnect{4002, "idle timeout"}
	// DisconnectForceReconnect: the server API disconnected the client and
	// allows it to come back.
	DisconnectForceReconnect = Disconnect{4003, "disconnected by server, reconnect"}
	// DisconnectWriteTimeout: a write to the client did not complete within
	// the write timeout; reconnect.
	DisconnectWriteTimeout = Disconnect{4004, "write timeout"}

	// DisconnectTokenExpired: the connection's token expired and was not
	// refreshed; reconnect with a new token.
	DisconnectTokenExpired = Disconnect{4005, "token expired"}
	// DisconnectTooManyRequests: the client kept sending commands over its
	// rate limit; reconnect after a pause.
	DisconnectTooManyRequests = Disconnect{4006, "too many requests"}
	// DisconnectConnectionLimit: the node or the client's address has
	// reached its connection limit; retry later, possibly on another node.
	DisconnectConnectionLimit = Disconnect{4007, "connection limit reached"}

	// DisconnectForce: the server API disconnected the client for good.
	DisconnectForce = Disconnect{4500, "disconnected by server"}
	// DisconnectBadRequest: the client sent frames the server cannot parse as
	// the protocol, persistently; do not reconnect without a fix.
	DisconnectBadRequest = Disconnect{4501, "bad request"}
	// DisconnectUnauthorized: the client gave no valid credentials where the
	// server requires them (or none within the connect timeout); do not
	// reconnect with the same credentials.
	DisconnectUnauthorized = Disconnect{4502, "unauthorized"}
)

// Disconnects lists every disconnect in code order, for documentation and tests.
var Disconnects = []Disconnect{
	DisconnectNormal, DisconnectProtocolError, DisconnectUnsupportedData,
	DisconnectInvalidPayload, DisconnectMessageTooBig, DisconnectInternal,
	DisconnectShutdown, DisconnectSlowConsumer, DisconnectIdleTimeout,
	DisconnectForceReconnect, DisconnectWriteTimeout, DisconnectTokenExpired,
	DisconnectTooManyRequests, DisconnectConnectionLimit, DisconnectForce,
	DisconnectBadRequest, DisconnectUnauthorized,
}
