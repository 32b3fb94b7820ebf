// Package fossil creates and applies deltas in the fossil delta format,
// the format of the Fossil SCM that Centrifugo and its client SDKs use for
// delta-compressed publications.
//
// A delta turns a source into a target. It is text: the target's length,
// a newline, then commands, each an integer followed by a letter:
//
//	N@O,  copy N bytes of the source, from offset O
//	N:    insert the N bytes that follow the colon
//	N;    end; N is the target's checksum
//
// Integers are written in base 64, most significant digit first, with the
// digits 0-9, A-Z, _, a-z and ~. The checksum is the sum, modulo 2^32, of
// the target read as big-endian 32-bit words, its last partial word padded
// with zero bytes on the right.
//
// Create never splits a UTF-8 sequence of the target between an insert and
// a copy, so the delta of a valid UTF-8 target is valid UTF-8 itself and
// can travel as a JSON string.
package fossil

import (
	"errors"
	"fmt"
)

// digits are the base-64 digits of the format, in value order.
const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"

// digitValue maps a byte to its digit value, or -1.
var digitValue = func() (v [256]int8) {
	for i := range v {
		v[i] = -1
	}
	for i := 0; i < len(digits); i++ {
		v[digits[i]] = int8(i)
	}
	return v
}()

// appendInt appends n in the format's base 64.
func appendInt(dst []byte, n int) []byte {
	if n == 0 {
		return append(dst, '0')
	}
	var buf [11]byte
	i := len(buf)
	for u := uint64(n); u > 0; u >>= 6 {
		i--
		buf[i] = digits[u&63]
	}
	return append(dst, buf[i:]...)
}

// checksum is the format's checksum of b.
func checksum(b []byte) uint32 {
	var sum uint32
	for len(b) >= 4 {
		sum += uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		b = b[4:]
	}
	var shift uint32 = 24
	for _, c := range b {
		sum += uint32(c) << shift
		shift -= 8
	}
	return sum
}

// ErrMalformed is returned by Apply and TargetSize for a delta that is not
// in the format, or that does not apply to the source it was given.
var ErrMalformed = errors.New("fossil: malformed delta")

// maxInt bounds the integers of a delta: a checksum is 32 bits, and no
// length or offset comes near it, which keeps their sums from overflowing.
const maxInt = 1<<32 - 1

// maxLen bounds a target's length: what an int holds on every platform.
const maxLen = 1<<31 - 1

// reader reads a delta.
type reader struct {
	b []byte
	i int
}

// int reads one base-64 integer of at least one digit.
func (r *reader) int() (uint64, bool) {
	start := r.i
	var n uint64
	for r.i < len(r.b) {
		d := digitValue[r.b[r.i]]
		if d < 0 {
			break
		}
		n = n<<6 | uint64(d)
		if n > maxInt {
			return 0, false
		}
		r.i++
	}
	return n, r.i > start
}

// next reads one byte, or reports false at the end.
func (r *reader) next() (byte, bool) {
	if r.i >= len(r.b) {
		return 0, false
	}
	c := r.b[r.i]
	r.i++
	return c, true
}

// TargetSize returns the length of the target a delta makes, as its header
// says, so that a caller can refuse a delta that would make too much before
// applying it.
func TargetSize(delta []byte) (int, error) {
	r := reader{b: delta}
	n, ok := r.int()
	if c, _ := r.next(); !ok || c != '\n' || n > uint64(maxLen) {
		return 0, fmt.Errorf("%w: no target length", ErrMalformed)
	}
	return int(n), nil
}

// Apply returns the target that delta makes from src. It fails with an
// error wrapping ErrMalformed when the delta is not in the format, refers
// outside src, makes a target of another length than its header says, or
// its checksum does not match; it never makes more than the header's
// length. Bytes after the final command are refused.
func Apply(src, delta []byte) ([]byte, error) {
	size, err := TargetSize(delta)
	if err != nil {
		return nil, err
	}
	r := reader{b: delta}
	r.int()
	r.next()
	out := make([]byte, 0, min(size, len(src)+len(delta)))
	srcLen, total := uint64(len(src)), uint64(size)
	for {
		n, ok := r.int()
		if !ok {
			return nil, fmt.Errorf("%w: expected a count at byte %d", ErrMalformed, r.i)
		}
		op, _ := r.next()
		switch op {
		case '@':
			off, ok := r.int()
			if c, _ := r.next(); !ok || c != ',' {
				return nil, fmt.Errorf("%w: bad copy command at byte %d", ErrMalformed, r.i)
			}
			if off+n > srcLen {
				return nil, fmt.Errorf("%w: copy past the end of the source", ErrMalformed)
			}
			if uint64(len(out))+n > total {
				return nil, fmt.Errorf("%w: target longer than its header says", ErrMalformed)
			}
			out = append(out, src[off:off+n]...)
		case ':':
			if n > uint64(len(r.b)-r.i) {
				return nil, fmt.Errorf("%w: insert past the end of the delta", ErrMalformed)
			}
			if uint64(len(out))+n > total {
				return nil, fmt.Errorf("%w: target longer than its header says", ErrMalformed)
			}
			out = append(out, r.b[r.i:r.i+int(n)]...)
			r.i += int(n)
		case ';':
			switch {
			case r.i != len(r.b):
				return nil, fmt.Errorf("%w: bytes after the end", ErrMalformed)
			case len(out) != size:
				return nil, fmt.Errorf("%w: target of %d bytes, header says %d", ErrMalformed, len(out), size)
			case uint64(checksum(out)) != n:
				return nil, fmt.Errorf("%w: checksum mismatch", ErrMalformed)
			}
			return out, nil
		default:
			return nil, fmt.Errorf("%w: unknown command at byte %d", ErrMalformed, r.i)
		}
	}
}
