// Package protocol defines Switchboard's client wire format: the commands a
// client sends, the replies and pushes the server sends back, and the single
// table of error codes and disconnect (close) codes.
//
// The format is JSON, one object per WebSocket text frame. It is a superset of
// the common "{command, channel, data}" pattern, so a plain browser WebSocket
// can speak it without an SDK. The package imports only the standard library
// so that every transport, the engine and the SDKs can share it.
package protocol
