package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
)

// Command names a client may send.
const (
	CmdConnect       = "connect"
	CmdSubscribe     = "subscribe"
	CmdUnsubscribe   = "unsubscribe"
	CmdPublish       = "publish"
	CmdPing          = "ping"
	CmdHistory       = "history"
	CmdPresence      = "presence"
	CmdPresenceStats = "presence_stats"
	CmdRefresh       = "refresh"
	CmdRPC           = "rpc"
)

// StreamPosition is a client's position in a channel: the offset of the last
// publication it has and the epoch that offset belongs to.
type StreamPosition struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// Command is one decoded client command. Fields a command does not use are
// left empty; unknown fields in the frame are ignored so that newer clients
// can talk to older servers.
type Command struct {
	// ID correlates the reply with the command; valid only when HasID is true.
	ID int64
	// HasID reports whether the frame carried an "id". Without one the server
	// answers only failures.
	HasID bool
	// Command is the command name, one of the Cmd constants (or unknown).
	Command string
	// Channel is the channel the command acts on, when it has one.
	Channel string
	// Data is the raw JSON value of "data", owned by the Command (a copy, not
	// an alias of the frame). Nil when the frame had no "data".
	Data json.RawMessage
	// Token carries a credential for commands that take one.
	Token string
	// Since asks subscribe to recover, and history to start, after a position.
	Since *StreamPosition
	// Limit caps how many publications history returns; nil means the default.
	Limit *int
	// Reverse asks history for the newest publications first.
	Reverse bool
	// IdempotencyKey, when not empty, makes a publish happen at most once
	// per channel within the server's idempotency window: a repeat gets
	// the original offset and publishes nothing. A frame with an
	// "idempotency_key" that ValidateIdempotencyKey refuses (an empty one
	// included) does not decode.
	IdempotencyKey string
	// Method names the procedure an rpc command calls on the
	// application backend (see ValidateMethod).
	Method string
	// Delta asks subscribe for delta-compressed publications in this
	// format (DeltaFossil); empty for none. See ValidateDelta.
	Delta string
}

// wireCommand mirrors the JSON shape; pointer fields tell "absent" from zero.
type wireCommand struct {
	ID      *int64          `json:"id"`
	Command *string         `json:"command"`
	Channel *string         `json:"channel"`
	Data    json.RawMessage `json:"data"`
	Token   string          `json:"token"`
	Since   *StreamPosition `json:"since"`
	Limit   *int            `json:"limit"`
	Reverse bool            `json:"reverse"`
	Key     *string         `json:"idempotency_key"`
	Method  string          `json:"method"`
	Delta   string          `json:"delta"`
}

// DecodeError is returned by DecodeCommand. It carries the client-visible
// error and, when it could be read, the command's id so the reply can be
// correlated.
type DecodeError struct {
	Err   *Error
	ID    int64
	HasID bool
}

// Error implements the error interface.
func (e *DecodeError) Error() string { return e.Err.Error() }

// Unwrap returns the client-visible error.
func (e *DecodeError) Unwrap() error { return e.Err }

// DecodeCommand parses one frame into a Command. It fails with a *DecodeError
// wrapping ErrBadRequest when the frame is not a JSON object of the expected
// shape. It does not check the channel name: see ValidateChannel.
func DecodeCommand(frame []byte) (Command, error) {
	if c, hasCommand, ok := decodeFast(frame); ok {
		if !hasCommand || c.Command == "" {
			return Command{}, &DecodeError{Err: ErrBadRequest.WithMessage(`missing "command"`), ID: c.ID, HasID: c.HasID}
		}
		return c, nil
	}
	return decodeSlow(frame)
}

// decodeSlow is DecodeCommand with encoding/json, for every frame.
func decodeSlow(frame []byte) (Command, error) {
	trimmed := bytes.TrimLeft(frame, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return Command{}, &DecodeError{Err: ErrBadRequest.WithMessage("frame must be a JSON object")}
	}
	var w wireCommand
	if err := json.Unmarshal(frame, &w); err != nil {
		de := &DecodeError{Err: ErrBadRequest.WithMessage("invalid JSON: %s", JSONProblem(err))}
		// Try to salvage the id so the client can correlate the failure.
		var idOnly struct {
			ID *int64 `json:"id"`
		}
		if json.Unmarshal(frame, &idOnly) == nil && idOnly.ID != nil {
			de.ID, de.HasID = *idOnly.ID, true
		}
		return Command{}, de
	}
	c := Command{Data: w.Data, Token: w.Token, Since: w.Since, Limit: w.Limit, Reverse: w.Reverse, Method: w.Method, Delta: w.Delta}
	if w.ID != nil {
		c.ID, c.HasID = *w.ID, true
	}
	if w.Command == nil || *w.Command == "" {
		return Command{}, &DecodeError{Err: ErrBadRequest.WithMessage(`missing "command"`), ID: c.ID, HasID: c.HasID}
	}
	c.Command = *w.Command
	if w.Channel != nil {
		c.Channel = *w.Channel
	}
	if w.Key != nil {
		if perr := ValidateIdempotencyKey(*w.Key); perr != nil {
			return Command{}, &DecodeError{Err: perr, ID: c.ID, HasID: c.HasID}
		}
		c.IdempotencyKey = *w.Key
	}
	return c, nil
}

// JSONProblem turns an encoding/json error into a short message without the
// Go type names that mean nothing to a client.
func JSONProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		want := te.Type.String()
		switch {
		case strings.Contains(want, "int"):
			want = "an integer"
		case strings.Contains(want, "string"):
			want = "a string"
		}
		return `field "` + te.Field + `" must be ` + want
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return se.Error()
	}
	return "malformed object"
}
