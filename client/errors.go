package client

import (
	"errors"
	"fmt"
)

// Errors of the client itself, as opposed to errors the server answered
// (*Error) and close codes (*CloseError).
var (
	// ErrClosed is returned by calls on a Client after Close.
	ErrClosed = errors.New("client: closed")
	// ErrOutboxFull is returned by Publish when Options.OutboxSize
	// publications already wait for their acknowledgement.
	ErrOutboxFull = errors.New("client: outbox full")
	// ErrAlreadySubscribed is returned by Subscribe for a channel the Client
	// already has a Subscription to.
	ErrAlreadySubscribed = errors.New("client: already subscribed")
	// ErrTooLarge is returned by Publish when the command would be over
	// Options.MaxMessageSize (the server would close the connection with
	// 1009).
	ErrTooLarge = errors.New("client: message too large")
	// ErrUnsubscribed is returned by Subscribe when the subscription was
	// ended (by Unsubscribe or Close) before the server confirmed it.
	ErrUnsubscribed = errors.New("client: unsubscribed")
	// errDisconnected fails a command whose connection ended before its
	// reply came. Reads are retried on the next connection; it does not
	// reach callers.
	errDisconnected = errors.New("client: connection lost")
	// errNoURL is RoundRobin's answer when it was given no URL.
	errNoURL = errors.New("client: no URL to dial")
)

// Error is a command the server refused: {"error":{"code":C,"message":M}}.
// The codes are listed in docs/protocol.md, "Error codes".
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// Error implements the error interface.
func (e *Error) Error() string { return fmt.Sprintf("client: server error %d: %s", e.Code, e.Message) }

// Temporary reports whether the same command may succeed later: 500
// (internal error), 503 (broker unavailable) and 429 (rate limit).
func (e *Error) Temporary() bool { return e.Code == 500 || e.Code == 503 || e.Code == 429 }

// CloseError is how a connection ended: the WebSocket close code the server
// sent, or 1006 when the connection broke without a close frame.
type CloseError struct {
	Code   int
	Reason string
}

// Error implements the error interface.
func (e *CloseError) Error() string {
	return fmt.Sprintf("client: connection closed with %d %s", e.Code, e.Reason)
}

// Reconnect reports whether the client tries again after this close
// (docs/protocol.md, "Close codes"): not after 4500-4999, which mean "do
// not reconnect without a change", nor after 1002, 1003, 1007 and 1009,
// which mean the client broke the protocol and would break it again; after
// everything else, including connections lost without a close frame.
func (e *CloseError) Reconnect() bool {
	switch {
	case e.Code >= 4500 && e.Code <= 4999:
		return false
	case e.Code == 1002, e.Code == 1003, e.Code == 1007, e.Code == 1009:
		return false
	}
	return true
}

// TokenExpired reports whether the server closed the connection because its
// token expired (4005): the client gets a new one before reconnecting.
func (e *CloseError) TokenExpired() bool { return e.Code == 4005 }

// closeAbnormal is the code of a connection lost without a close frame
// (RFC 6455 7.1.5).
const closeAbnormal = 1006
