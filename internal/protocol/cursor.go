package protocol

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/fnv"
)

// A cursor is a compact, URL-safe position covering several channels at
// once: the SSE event id and the long-polling cursor. It carries each
// channel's offset and one 32-bit check over the channel names and their
// epochs, so that any node can resume from it (no session state) and a
// change of any epoch, or of the channel list, is detected.
//
// Layout before base64url (no padding): version byte 1, the check (4 bytes,
// big endian), then one uvarint offset per channel in the stream's order.

const cursorVersion = 1

// MaxCursorChannels is the most channels one cursor (one SSE stream, one
// poll) may cover; it keeps event ids within 128 bytes.
const MaxCursorChannels = 16

// ErrBadCursor is returned for a cursor that cannot be decoded or does not
// match the channels it is used with.
var ErrBadCursor = errors.New("protocol: malformed cursor")

// CursorCheck returns the check of channels at the given epochs.
func CursorCheck(channels []string, epochs []string) uint32 {
	h := fnv.New32a()
	for i, ch := range channels {
		_, _ = h.Write([]byte(ch))
		_, _ = h.Write([]byte{0})
		_, _ = h.Write([]byte(epochs[i]))
		_, _ = h.Write([]byte{0})
	}
	return h.Sum32()
}

// EncodeCursor encodes the offsets with the check.
func EncodeCursor(check uint32, offsets []uint64) string {
	b := make([]byte, 0, 5+len(offsets)*binary.MaxVarintLen64)
	b = append(b, cursorVersion)
	b = binary.BigEndian.AppendUint32(b, check)
	for _, off := range offsets {
		b = binary.AppendUvarint(b, off)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor decodes a cursor made for n channels.
func DecodeCursor(s string, n int) (check uint32, offsets []uint64, err error) {
	if len(s) > 256 {
		return 0, nil, ErrBadCursor
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 5 || b[0] != cursorVersion {
		return 0, nil, ErrBadCursor
	}
	check = binary.BigEndian.Uint32(b[1:5])
	b = b[5:]
	offsets = make([]uint64, 0, n)
	for len(b) > 0 {
		off, k := binary.Uvarint(b)
		if k <= 0 {
			return 0, nil, ErrBadCursor
		}
		offsets = append(offsets, off)
		b = b[k:]
	}
	if len(offsets) != n {
		return 0, nil, ErrBadCursor
	}
	return check, offsets, nil
}
