package protocol

import (
	"strconv"
	"unicode/utf8"
)

// DeltaFossil is the delta format a subscribe may ask for with
// "delta":"fossil": a publication's data becomes the fossil delta (see
// internal/fossil) from the previous publication the client received on
// the subscription.
const DeltaFossil = "fossil"

// ValidateDelta checks the "delta" of a subscribe: empty (no delta) or
// DeltaFossil.
func ValidateDelta(format string) *Error {
	if format == "" || format == DeltaFossil {
		return nil
	}
	return ErrBadRequest.WithMessage(`unknown "delta" format %q (the server knows "fossil")`, format)
}

// AppendPublicationString appends the push a delta subscriber receives
// for one publication: {"channel":C,"data":S,"offset":N} where S is a JSON
// string holding the publication's data, or, when delta is true, the delta
// against the previous one, followed by "delta":true. channel must have
// passed ValidateChannel; data should be valid UTF-8 (see AppendString).
func AppendPublicationString(dst []byte, channel string, data []byte, offset uint64, delta bool) []byte {
	dst = append(dst, `{"channel":"`...)
	dst = append(dst, channel...)
	dst = append(dst, `","data":`...)
	dst = AppendString(dst, data)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendUint(dst, offset, 10)
	if delta {
		dst = append(dst, `,"delta":true`...)
	}
	return append(dst, '}')
}

// AppendString appends s as a JSON string. Only what JSON requires is
// escaped: quotation mark, reverse solidus and control characters. A byte
// that is not part of valid UTF-8 becomes U+FFFD, as in encoding/json.
func AppendString(dst, s []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
