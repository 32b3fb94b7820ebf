package websocket

import (
	"encoding/binary"
	"testing"
	"unicode/utf8"
)

// FuzzUTF8Prefix checks utf8Prefix, the incremental check of fragmented
// text, against unicode/utf8 on whole inputs and on every split of them.
func FuzzUTF8Prefix(f *testing.F) {
	for _, s := range []string{"", "hello", "\xce\xba\xe1\xbd\xb9", "\xce", "\xf4\x90", "\xf4\x8f\xbf", "\xed\xa0\x80",
		"\xc0\xaf", "\xef\xbf\xbd", "a\xffb", "\xf0\x9f\x98"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, ok := utf8Prefix(b)
		if n < 0 || n > len(b) || !utf8.Valid(b[:n]) {
			t.Fatalf("prefix %d of %q is not valid UTF-8", n, b)
		}
		if utf8.Valid(b) && (!ok || n != len(b)) {
			t.Fatalf("%q is valid UTF-8, got (%d, %v)", b, n, ok)
		}
		if ok && n < len(b) && (len(b)-n > 3 || utf8.FullRune(b[n:])) {
			t.Fatalf("%q: the rest after %d is not an incomplete sequence", b, n)
		}
		if !ok && utf8.Valid(append(append([]byte(nil), b...), 0x80, 0x80, 0x80)) {
			t.Fatalf("%q refused, but a continuation makes it valid", b)
		}
		// Fed in two parts as fragments are: the same verdict as whole.
		for cut := 0; cut <= len(b); cut++ {
			n1, ok1 := utf8Prefix(b[:cut])
			if !ok1 {
				if ok && n == len(b) {
					t.Fatalf("%q refused at cut %d but valid whole", b, cut)
				}
				continue
			}
			n2, ok2 := utf8Prefix(b[n1:])
			if ok2 != ok || (ok && n1+n2 != n) {
				t.Fatalf("%q cut at %d: (%d+%d, %v), whole (%d, %v)", b, cut, n1, n2, ok2, n, ok)
			}
		}
	})
}

// FuzzParseClose checks parseClose against the rules it implements: a
// close is accepted exactly when it is empty, or has a code allowed on the
// wire and a UTF-8 reason; the echoed code is the client's.
func FuzzParseClose(f *testing.F) {
	for _, p := range [][]byte{nil, {3}, {0x03, 0xe8}, {0x03, 0xe8, 'o', 'k'}, {0x03, 0xed}, {0x03, 0xee},
		{0x0b, 0xb8}, {0x13, 0x87}, {0x13, 0x88}, {0x03, 0xe8, 0xff}, {0xff, 0xff}} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		code, d := parseClose(p)
		if len(p) == 0 {
			if d != nil || code != 1000 {
				t.Fatalf("empty close: (%d, %v), want 1000", code, d)
			}
			return
		}
		if len(p) == 1 {
			if d == nil || d.Code != 1002 {
				t.Fatalf("1-byte close: %v, want 1002", d)
			}
			return
		}
		sent := binary.BigEndian.Uint16(p)
		inRange := sent >= 1000 && sent <= 1003 || sent >= 1007 && sent <= 1014 || sent >= 3000 && sent <= 4999
		switch {
		case !inRange:
			if d == nil || d.Code != 1002 {
				t.Fatalf("code %d: %v, want 1002", sent, d)
			}
		case !utf8.Valid(p[2:]):
			if d == nil || d.Code != 1007 {
				t.Fatalf("reason %q: %v, want 1007", p[2:], d)
			}
		case d != nil || code != sent:
			t.Fatalf("valid close %d: (%d, %v)", sent, code, d)
		}
	})
}
