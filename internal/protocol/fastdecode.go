package protocol

import (
	"encoding/json"
	"strconv"
)

// decodeFast parses the usual shape of a command frame without reflection:
// one flat object whose keys are among id, command, channel, token, data,
// limit, reverse, idempotency_key and method, spelt exactly so and each given once,
// with strings of printable ASCII and no escapes, integer id and limit, a
// boolean reverse, any valid JSON value but null for data and a valid
// idempotency key. For anything else it reports
// ok false and DecodeCommand hands the frame to encoding/json, so the two
// paths agree on every frame (FuzzDecodeFastAgrees checks it).
func decodeFast(frame []byte) (c Command, hasCommand, ok bool) {
	s := scanner{b: frame}
	s.space()
	if !s.eat('{') {
		return c, false, false
	}
	var seen uint16
	s.space()
	if s.eat('}') {
		return c, false, s.end()
	}
	for {
		key, good := s.plainString()
		if !good {
			return c, false, false
		}
		s.space()
		if !s.eat(':') {
			return c, false, false
		}
		s.space()
		var bit uint16
		switch string(key) {
		case "id":
			bit = 1
			c.ID, good = s.integer()
			c.HasID = true
		case "command":
			bit = 2
			var v []byte
			v, good = s.plainString()
			c.Command, hasCommand = string(v), true
		case "channel":
			bit = 4
			var v []byte
			v, good = s.plainString()
			c.Channel = string(v)
		case "token":
			bit = 8
			var v []byte
			v, good = s.plainString()
			c.Token = string(v)
		case "data":
			bit = 16
			start := s.i
			good = s.skipValue()
			v := frame[start:s.i]
			good = good && string(v) != "null" && json.Valid(v)
			c.Data = append(json.RawMessage(nil), v...)
		case "limit":
			bit = 32
			var n int64
			n, good = s.integer()
			if good && int64(int(n)) == n {
				limit := int(n)
				c.Limit = &limit
			} else {
				good = false
			}
		case "reverse":
			bit = 64
			c.Reverse, good = s.boolean()
		case "idempotency_key":
			bit = 128
			var v []byte
			v, good = s.plainString()
			c.IdempotencyKey = string(v)
			// An invalid key is the slow path's to report.
			good = good && ValidateIdempotencyKey(c.IdempotencyKey) == nil
		case "method":
			bit = 256
			var v []byte
			v, good = s.plainString()
			c.Method = string(v)
		default:
			return c, false, false // "since", another spelling, an unknown key
		}
		if !good || seen&bit != 0 {
			return c, false, false
		}
		seen |= bit
		s.space()
		if s.eat(',') {
			s.space()
			continue
		}
		if s.eat('}') {
			return c, hasCommand, s.end()
		}
		return c, false, false
	}
}

// scanner reads a frame byte by byte for decodeFast.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// end reports whether only white space is left.
func (s *scanner) end() bool {
	s.space()
	return s.i == len(s.b)
}

// plainString reads a string of printable ASCII without escapes.
func (s *scanner) plainString() ([]byte, bool) {
	if !s.eat('"') {
		return nil, false
	}
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return s.b[start : s.i-1], true
		case c < 0x20 || c > 0x7e || c == '\\':
			return nil, false
		}
		s.i++
	}
	return nil, false
}

// integer reads a JSON number that is an integer in int64's range.
func (s *scanner) integer() (int64, bool) {
	start := s.i
	s.eat('-')
	switch {
	case s.eat('0'):
	case s.i < len(s.b) && s.b[s.i] >= '1' && s.b[s.i] <= '9':
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
		}
	default:
		return 0, false
	}
	if s.i < len(s.b) {
		switch s.b[s.i] {
		case '.', 'e', 'E', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(s.b[start:s.i]), 10, 64)
	return n, err == nil
}

func (s *scanner) boolean() (bool, bool) {
	rest := s.b[s.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		s.i += 4
		return true, true
	case len(rest) >= 5 && string(rest[:5]) == "false":
		s.i += 5
		return false, true
	}
	return false, false
}

// skipValue moves past one JSON value, finding its end by its structure:
// strings (with escapes), nested objects and arrays, and anything else up
// to the next delimiter. It does not validate; the caller does.
func (s *scanner) skipValue() bool {
	depth := 0
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '"':
			s.i++
			for s.i < len(s.b) && s.b[s.i] != '"' {
				if s.b[s.i] == '\\' {
					s.i++
				}
				s.i++
			}
			if s.i >= len(s.b) {
				s.i = len(s.b) // a trailing backslash stepped past the end
				return false
			}
			s.i++
			if depth == 0 {
				return true
			}
		case '{', '[':
			depth++
			s.i++
		case '}', ']':
			if depth == 0 {
				return true // the end of the enclosing object
			}
			depth--
			s.i++
			if depth == 0 {
				return true
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return true
			}
			s.i++
		default:
			s.i++
		}
	}
	return depth == 0
}
