package pb

import (
	"encoding/json"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// Field numbers of Command (switchboard.proto).
const (
	cmdID      = 1
	cmdCommand = 2
	cmdChannel = 3
	cmdData    = 4
	cmdBinary  = 5
	cmdToken   = 6
	cmdSince   = 7
	cmdLimit   = 8
	cmdReverse = 9
	cmdKey     = 10
	cmdMethod  = 11
	posOffset  = 1
	posEpoch   = 2
)

// commandFields names Command's fields in error messages.
var commandFields = [...]string{
	cmdID: "id", cmdCommand: "command", cmdChannel: "channel", cmdData: "data",
	cmdBinary: "binary", cmdToken: "token", cmdSince: "since", cmdLimit: "limit",
	cmdReverse: "reverse", cmdKey: "idempotency_key", cmdMethod: "method",
}

// decoder walks one frame's fields, remembering the id for the error reply.
type decoder struct {
	c protocol.Command
}

func (d *decoder) fail(format string, args ...any) error {
	return &protocol.DecodeError{Err: protocol.ErrBadRequest.WithMessage(format, args...), ID: d.c.ID, HasID: d.c.HasID}
}

// DecodeCommand parses one binary frame (a Command message) into a
// protocol.Command, as protocol.DecodeCommand does a JSON frame. It fails
// with a *protocol.DecodeError wrapping ErrBadRequest, carrying the id when
// it was read, when the frame is not a valid Command: malformed protobuf, a
// known field of the wrong wire type, a string that is not UTF-8, data that
// is not valid JSON, both data and binary, or no command. Unknown fields
// are skipped. A binary field becomes data in its JSON form
// ({"$binary":"<base64>"}, see protocol.AppendBinaryData). It does not
// check the channel name.
func DecodeCommand(frame []byte) (protocol.Command, error) {
	var d decoder
	if id, ok := peekID(frame); ok {
		d.c.ID, d.c.HasID = id, true
	}
	c := &d.c
	var hasBinary bool
	var binary []byte
	b := frame
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protocol.Command{}, d.fail("malformed protobuf: %v", protowire.ParseError(n))
		}
		b = b[n:]
		want, known := commandWireType(num)
		if !known {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protocol.Command{}, d.fail("malformed protobuf: field %d: %v", num, protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		if typ != want {
			return protocol.Command{}, d.fail("field %q (%d) has the wrong wire type", commandFields[num], num)
		}
		var v uint64
		var s []byte
		if typ == protowire.VarintType {
			v, n = protowire.ConsumeVarint(b)
		} else {
			s, n = protowire.ConsumeBytes(b)
		}
		if n < 0 {
			return protocol.Command{}, d.fail("malformed protobuf: field %q: %v", commandFields[num], protowire.ParseError(n))
		}
		b = b[n:]
		switch num {
		case cmdCommand, cmdChannel, cmdToken, cmdKey, cmdMethod:
			if !utf8.Valid(s) {
				return protocol.Command{}, d.fail("field %q is not UTF-8", commandFields[num])
			}
		}
		switch num {
		case cmdID:
			c.ID, c.HasID = int64(v), true
		case cmdCommand:
			c.Command = string(s)
		case cmdChannel:
			c.Channel = string(s)
		case cmdData:
			if !json.Valid(s) {
				return protocol.Command{}, d.fail(`field "data" is not valid JSON`)
			}
			c.Data = append(json.RawMessage(nil), s...)
		case cmdBinary:
			binary, hasBinary = s, true
		case cmdToken:
			c.Token = string(s)
		case cmdSince:
			pos, err := d.position(s)
			if err != nil {
				return protocol.Command{}, err
			}
			c.Since = pos
		case cmdLimit:
			l := int(int64(v))
			if int64(l) != int64(v) {
				return protocol.Command{}, d.fail(`field "limit" is out of range`)
			}
			c.Limit = &l
		case cmdReverse:
			c.Reverse = v != 0
		case cmdKey:
			if perr := protocol.ValidateIdempotencyKey(string(s)); perr != nil {
				return protocol.Command{}, &protocol.DecodeError{Err: perr, ID: c.ID, HasID: c.HasID}
			}
			c.IdempotencyKey = string(s)
		case cmdMethod:
			c.Method = string(s)
		}
	}
	if hasBinary {
		if c.Data != nil {
			return protocol.Command{}, d.fail(`fields "data" and "binary" are exclusive`)
		}
		c.Data = protocol.BinaryData(binary)
	}
	if c.Command == "" {
		return protocol.Command{}, d.fail(`missing "command"`)
	}
	return *c, nil
}

// commandWireType returns the wire type of a known Command field.
func commandWireType(num protowire.Number) (protowire.Type, bool) {
	switch num {
	case cmdID, cmdLimit, cmdReverse:
		return protowire.VarintType, true
	case cmdCommand, cmdChannel, cmdData, cmdBinary, cmdToken, cmdSince, cmdKey, cmdMethod:
		return protowire.BytesType, true
	}
	return 0, false
}

// position decodes a StreamPosition.
func (d *decoder) position(b []byte) (*protocol.StreamPosition, error) {
	p := &protocol.StreamPosition{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, d.fail("malformed protobuf in \"since\": %v", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == posOffset && typ == protowire.VarintType:
			p.Offset, n = protowire.ConsumeVarint(b)
		case num == posEpoch && typ == protowire.BytesType:
			var s []byte
			s, n = protowire.ConsumeBytes(b)
			if n >= 0 && !utf8.Valid(s) {
				return nil, d.fail(`field "since.epoch" is not UTF-8`)
			}
			p.Epoch = string(s)
		case num == posOffset || num == posEpoch:
			return nil, d.fail("field %q has the wrong wire type", []string{posOffset: "since.offset", posEpoch: "since.epoch"}[num])
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return nil, d.fail("malformed protobuf in \"since\": %v", protowire.ParseError(n))
		}
		b = b[n:]
	}
	return p, nil
}

// peekID finds the id of a frame, if its fields up to the id are
// well-formed, so that a failure later in the frame can be correlated.
func peekID(b []byte) (int64, bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, false
		}
		b = b[n:]
		if num == cmdID && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			return int64(v), n >= 0
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 0, false
		}
		b = b[n:]
	}
	return 0, false
}

// AppendCommand appends c as a binary frame (a Command message): the
// client's side of DecodeCommand, for the Go client, tests and tools. Data
// in the JSON form of binary data goes in the binary field; other data as
// JSON text. An empty IdempotencyKey is not sent.
func AppendCommand(dst []byte, c *protocol.Command) []byte {
	if c.HasID {
		dst = protowire.AppendTag(dst, cmdID, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(c.ID))
	}
	dst = appendString(dst, cmdCommand, c.Command)
	dst = appendString(dst, cmdChannel, c.Channel)
	if c.Data != nil {
		start := len(dst)
		dst = protowire.AppendTag(dst, cmdBinary, protowire.BytesType)
		if raw, ok := protocol.AppendDecodedBinary(nil, c.Data); ok {
			dst = protowire.AppendBytes(dst, raw)
		} else {
			dst = protowire.AppendTag(dst[:start], cmdData, protowire.BytesType)
			dst = protowire.AppendBytes(dst, c.Data)
		}
	}
	dst = appendString(dst, cmdToken, c.Token)
	if c.Since != nil {
		dst = protowire.AppendTag(dst, cmdSince, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(positionSize(c.Since)))
		dst = appendPosition(dst, c.Since)
	}
	if c.Limit != nil {
		dst = protowire.AppendTag(dst, cmdLimit, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(int64(*c.Limit)))
	}
	if c.Reverse {
		dst = protowire.AppendTag(dst, cmdReverse, protowire.VarintType)
		dst = protowire.AppendVarint(dst, 1)
	}
	dst = appendString(dst, cmdKey, c.IdempotencyKey)
	return appendString(dst, cmdMethod, c.Method)
}

func positionSize(p *protocol.StreamPosition) int {
	n := 0
	if p.Offset != 0 {
		n += protowire.SizeTag(posOffset) + protowire.SizeVarint(p.Offset)
	}
	if p.Epoch != "" {
		n += protowire.SizeTag(posEpoch) + protowire.SizeBytes(len(p.Epoch))
	}
	return n
}

func appendPosition(dst []byte, p *protocol.StreamPosition) []byte {
	if p.Offset != 0 {
		dst = protowire.AppendTag(dst, posOffset, protowire.VarintType)
		dst = protowire.AppendVarint(dst, p.Offset)
	}
	return appendString(dst, posEpoch, p.Epoch)
}

// appendString appends a string field, unless it is empty (proto3's
// default, which is not sent).
func appendString(dst []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return dst
	}
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	return protowire.AppendString(dst, s)
}
