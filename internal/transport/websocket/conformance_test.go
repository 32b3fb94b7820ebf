package websocket

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

// The conformance table: the cases of the Autobahn test suite (fuzzingclient
// against a server) that apply to a server which negotiates no extension,
// named after their Autobahn ids, driven over loopback TCP with raw masked
// frames. Switchboard is not an echo server, so where Autobahn expects its
// message echoed, a case sends a protocol command and expects its reply (or,
// for text that is not a command, the 400 error reply: the message reached
// the engine). Sizes are fitted to max_message_size (64 KiB here); the
// ids with a suffix ("-limit", "-extra") are cases Autobahn does not have.

// confLimit is the max_message_size of the conformance server.
const confLimit = 65536

// cf builds a masked client frame with the given header bits.
func cf(op ws.OpCode, fin bool, rsv byte, payload []byte) []byte {
	f := ws.Frame{Header: ws.Header{Fin: fin, Rsv: rsv, OpCode: op, Length: int64(len(payload))},
		Payload: append([]byte(nil), payload...)}
	return masked(f)
}

func text(s string) []byte           { return cf(ws.OpText, true, 0, []byte(s)) }
func textPart(s string) []byte       { return cf(ws.OpText, false, 0, []byte(s)) }
func cont(s string, fin bool) []byte { return cf(ws.OpContinuation, fin, 0, []byte(s)) }
func binFrame(n int) []byte          { return cf(ws.OpBinary, true, 0, bytes.Repeat([]byte{0xfe}, n)) }
func ping(s string) []byte           { return cf(ws.OpPing, true, 0, []byte(s)) }
func pong(s string) []byte           { return cf(ws.OpPong, true, 0, []byte(s)) }
func closeRaw(p []byte) []byte       { return cf(ws.OpClose, true, 0, p) }
func closeCode(code uint16, reason string) []byte {
	return closeRaw(append(binary.BigEndian.AppendUint16(nil, code), reason...))
}

// headerOnly is a masked frame header announcing n bytes of payload, with
// only the first bytes of that payload: enough for a server that judges
// the frame by its header.
func headerOnly(op ws.OpCode, fin bool, rsv byte, n int64) []byte {
	var b bytes.Buffer
	_ = ws.WriteHeader(&b, ws.Header{Fin: fin, Rsv: rsv, OpCode: op, Length: n, Masked: true, Mask: [4]byte{1, 2, 3, 4}})
	return append(b.Bytes(), make([]byte, 64)...)
}

// cmd returns a ping command with the given id, padded to exactly size
// bytes (at least 40).
func cmd(id, size int) string {
	head := fmt.Sprintf(`{"command":"ping","id":%d,"pad":"`, id)
	return head + strings.Repeat("x", size-len(head)-2) + `"}`
}

// smallCmd is a ping command of its natural size.
func smallCmd(id int) string { return fmt.Sprintf(`{"command":"ping","id":%d}`, id) }

// join concatenates frames.
func join(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

// chop splits b into writes of n bytes.
func chop(n int, b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		k := min(n, len(b))
		out = append(out, b[:k])
		b = b[k:]
	}
	return out
}

// splitParts cuts s into fragments of at most n bytes: a text frame, then
// continuations, the last one final.
func splitParts(s string, n int) []byte {
	var out []byte
	for i := 0; i < len(s) || i == 0; i += n {
		part := s[i:min(i+n, len(s))]
		fin := i+n >= len(s)
		if i == 0 {
			out = append(out, cf(ws.OpText, fin, 0, []byte(part))...)
		} else {
			out = append(out, cont(part, fin)...)
		}
	}
	return out
}

// ev is what the server is expected to send next.
type ev struct {
	kind     string // "reply", "bad" (a 400 error reply), "pong", "close"
	id       int    // reply: the command id
	payload  string // pong: its payload
	code     int    // close: its code
	optional bool   // may be missing (a reply the client's close may drop)
}

func reply(id int) ev      { return ev{kind: "reply", id: id} }
func bad() ev              { return ev{kind: "bad"} }
func pongOf(p string) ev   { return ev{kind: "pong", payload: p} }
func closed(code int) ev   { return ev{kind: "close", code: code} }
func maybeReply(id int) ev { return ev{kind: "reply", id: id, optional: true} }
func replies(n, from int) []ev {
	out := make([]ev, n)
	for i := range out {
		out[i] = reply(from + i)
	}
	return out
}

// step writes each of send as a separate write, then reads want in order.
type step struct {
	send [][]byte
	want []ev
}

// confCase is one case. A case whose last expectation is not a close
// leaves the connection open: it is then checked with a command and closed
// by the client, whose code must be echoed.
type confCase struct {
	id    string
	steps []step
}

// once is a case of one step.
func once(id string, send [][]byte, want ...ev) confCase {
	return confCase{id: id, steps: []step{{send: send, want: want}}}
}

// w wraps byte slices as separate writes.
func w(bs ...[]byte) [][]byte { return bs }

func conformanceCases() []confCase {
	var cs []confCase
	add := func(c ...confCase) { cs = append(cs, c...) }

	// 1.1 Text messages of various sizes; 1.2 binary (not supported: 1003).
	sizes := []int{0, 125, 126, 127, 128, 65535, 65536}
	for i, n := range sizes {
		if n == 0 {
			add(once("1.1.1", w(text("")), bad()))
		} else {
			add(once(fmt.Sprintf("1.1.%d", i+1), w(text(cmd(i+1, n))), reply(i+1)))
		}
		add(once(fmt.Sprintf("1.2.%d", i+1), w(binFrame(n)), closed(1003)))
	}
	add(once("1.1.8", chop(997, text(cmd(8, 65536))), reply(8)))
	add(once("1.2.8", chop(997, binFrame(65536)), closed(1003)))

	// 2 Pings and pongs.
	p125 := strings.Repeat("\xfe", 125)
	add(
		once("2.1", w(ping("")), pongOf("")),
		once("2.2", w(ping("Hello, world!")), pongOf("Hello, world!")),
		once("2.3", w(ping("\x00\xff\xfe\xfd\xfc\xfb\x00\xff")), pongOf("\x00\xff\xfe\xfd\xfc\xfb\x00\xff")),
		once("2.4", w(ping(p125)), pongOf(p125)),
		once("2.5", w(ping(p125+"\xfe")), closed(1002)),
		once("2.6", chop(1, ping(p125)), pongOf(p125)),
		once("2.7", w(pong(""))),
		once("2.8", w(pong("unsolicited pong payload"))),
		once("2.9", w(pong("unsolicited pong payload"), ping("ping payload")), pongOf("ping payload")),
		// Unsolicited pongs are fine, malformed ones are not.
		once("2.x-long-pong", w(pong(p125+"\xfe")), closed(1002)),
		once("2.x-fragmented-ping-final-part", w(join(textPart(smallCmd(1)[:5]), cf(ws.OpPing, false, 0, []byte("x")))), closed(1002)),
	)
	var tenPings []byte
	var tenPongs []ev
	for i := range 10 {
		p := fmt.Sprintf("payload-%d", i)
		tenPings = append(tenPings, ping(p)...)
		tenPongs = append(tenPongs, pongOf(p))
	}
	add(once("2.10", w(tenPings), tenPongs...), once("2.11", chop(1, tenPings), tenPongs...))

	// 3 Reserved bits: no extension is negotiated, so any is a protocol
	// error, whatever the frame and its size.
	add(
		once("3.1", w(cf(ws.OpText, true, 1, []byte("Hello, world!"))), closed(1002)),
		once("3.2", w(join(text(smallCmd(1)), cf(ws.OpText, true, 2, []byte("Hello, world!")), ping(""))), reply(1), closed(1002)),
		once("3.3", w(text(smallCmd(1)), cf(ws.OpText, true, 3, []byte("Hello, world!")), ping("")), reply(1), closed(1002)),
		once("3.4", chop(1, join(text(smallCmd(1)), cf(ws.OpText, true, 4, []byte("Hello, world!")), ping(""))), reply(1), closed(1002)),
		once("3.5", w(cf(ws.OpBinary, true, 5, []byte{0, 1, 2})), closed(1002)),
		once("3.6", w(cf(ws.OpPing, true, 6, []byte("Hello, world!"))), closed(1002)),
		once("3.7", w(cf(ws.OpClose, true, 7, binary.BigEndian.AppendUint16(nil, 1000))), closed(1002)),
		// A compressed (RSV1) frame over max_message_size: 1002, not 1009.
		once("3.x-rsv1-over-limit", w(headerOnly(ws.OpText, true, 4, 100<<10)), closed(1002)),
		once("3.x-rsv1-binary-over-limit", w(headerOnly(ws.OpBinary, true, 4, 1<<20)), closed(1002)),
		once("3.x-rsv1-continuation", w(textPart(`{"command":`), cf(ws.OpContinuation, true, 4, []byte(`"ping"}`))), closed(1002)),
	)

	// 4 Reserved opcodes.
	for i, op := range []ws.OpCode{3, 4, 5, 6, 7} {
		add(reservedOp(fmt.Sprintf("4.1.%d", i+1), op, i))
	}
	for i, op := range []ws.OpCode{11, 12, 13, 14, 15} {
		add(reservedOp(fmt.Sprintf("4.2.%d", i+1), op, i))
	}

	// 5 Fragmentation.
	c1 := smallCmd(1)
	two := join(textPart(c1[:9]), cont(c1[9:], true))
	withPing := join(textPart(c1[:9]), ping("ping payload"), cont(c1[9:], true))
	add(
		once("5.1", w(join(cf(ws.OpPing, false, 0, []byte("fragment1")), cont("fragment2", true))), closed(1002)),
		once("5.2", w(join(cf(ws.OpPong, false, 0, []byte("fragment1")), cont("fragment2", true))), closed(1002)),
		once("5.3", w(two), reply(1)),
		once("5.4", w(textPart(c1[:9]), cont(c1[9:], true)), reply(1)),
		once("5.5", chop(1, two), reply(1)),
		once("5.6", w(withPing), pongOf("ping payload"), reply(1)),
		once("5.7", w(textPart(c1[:9]), ping("ping payload"), cont(c1[9:], true)), pongOf("ping payload"), reply(1)),
		once("5.8", chop(1, withPing), pongOf("ping payload"), reply(1)),
	)
	for i, fin := range []bool{true, false} {
		start := cont("fragment1", fin)
		base := 9 + 3*i
		add(
			once(fmt.Sprintf("5.%d", base), w(join(start, text(smallCmd(1)))), closed(1002)),
			once(fmt.Sprintf("5.%d", base+1), w(start, text(smallCmd(1))), closed(1002)),
			once(fmt.Sprintf("5.%d", base+2), chop(1, join(start, text(smallCmd(1)))), closed(1002)),
		)
	}
	add(
		once("5.15", w(join(two, cont("fragment3", false), text("fragment4"))), reply(1), closed(1002)),
		once("5.16", w(join(cont("fragment1", false), textPart("fragment2"), cont("fragment3", true))), closed(1002)),
		once("5.17", w(join(cont("fragment1", true), textPart("fragment2"), cont("fragment3", true))), closed(1002)),
		once("5.18", w(join(textPart(c1[:9]), text(c1[9:]))), closed(1002)),
	)
	c5 := cmd(5, 100)
	for id, frameWise := range map[string]bool{"5.19": false, "5.20": true} {
		first := [][]byte{textPart(c5[:20]), cont(c5[20:40], false), ping("pongme 1!")}
		second := [][]byte{cont(c5[40:60], false), cont(c5[60:80], false), ping("pongme 2!")}
		last := [][]byte{cont(c5[80:], true)}
		if !frameWise {
			first, second = w(join(first...)), w(join(second...))
		}
		add(confCase{id: id, steps: []step{
			{send: first, want: []ev{pongOf("pongme 1!")}},
			{send: second, want: []ev{pongOf("pongme 2!")}},
			{send: last, want: []ev{reply(5)}},
		}})
	}

	// 6 UTF-8.
	hello := "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!"
	kosme := "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
	perOctet := func(s string) []byte { return splitParts(s, 1) }
	badText := kosme + "\xed\xa0\x80edited"
	add(
		once("6.1.1", w(text("")), bad()),
		once("6.1.2", w(join(textPart(""), cont("", false), cont("", true))), bad()),
		once("6.1.3", w(join(textPart(""), cont("middle frame payload", false), cont("", true))), bad()),
		once("6.2.1", w(text(hello)), bad()),
		once("6.2.2", w(join(textPart(hello[:7]), cont(hello[7:], true))), bad()),
		once("6.2.3", w(perOctet(hello)), bad()),
		once("6.2.4", w(perOctet(kosme)), bad()),
		once("6.3.1", w(text(badText)), closed(1007)),
		once("6.3.2", w(perOctet(badText)), closed(1007)),
		// Fail fast: the invalid fragment is refused before the last one
		// is sent.
		confCase{id: "6.4.1", steps: []step{{send: w(textPart(kosme), cont("\xf4\x90\x80\x80", false)), want: []ev{closed(1007)}}}},
		confCase{id: "6.4.2", steps: []step{{send: w(textPart(kosme+"\xf4"), cont("\x90", false)), want: []ev{closed(1007)}}}},
		once("6.4.3", chop(10, text(kosme+"\xf4\x90\x80\x80edited")), closed(1007)),
		once("6.4.4", chop(1, text(kosme+"\xf4\x90\x80\x80edited")), closed(1007)),
	)
	for i, group := range utf8Sequences() {
		for j, s := range group {
			want := closed(1007)
			if s.valid {
				want = bad()
			}
			add(once(fmt.Sprintf("6.%d.%d", i+5, j+1), w(text(s.b)), want))
		}
	}

	// 7 Close handling.
	add(
		confCase{id: "7.1.1", steps: []step{{send: w(text(smallCmd(1))), want: []ev{reply(1)}},
			{send: w(closeCode(1000, "")), want: []ev{closed(1000)}}}},
		once("7.1.1-together", w(join(text(smallCmd(1)), closeCode(1000, ""))), maybeReply(1), closed(1000)),
		once("7.1.2", w(join(closeCode(1000, ""), closeCode(1000, ""))), closed(1000)),
		once("7.1.3", w(join(closeCode(1000, ""), ping("after close"))), closed(1000)),
		once("7.1.4", w(join(closeCode(1000, ""), text(smallCmd(1)))), closed(1000)),
		once("7.1.5", w(join(textPart(c1[:9]), closeCode(1000, ""), cont(c1[9:], true))), closed(1000)),
		once("7.1.6", w(join(text(cmd(6, 60000)), closeCode(1000, ""), ping("after close"))), maybeReply(6), closed(1000)),
		once("7.3.1", w(closeRaw(nil)), closed(1000)),
		once("7.3.2", w(closeRaw([]byte{0x03})), closed(1002)),
		once("7.3.3", w(closeCode(1000, "")), closed(1000)),
		once("7.3.4", w(closeCode(1000, "Hello World!")), closed(1000)),
		once("7.3.5", w(closeCode(1000, strings.Repeat("*", 123))), closed(1000)),
		once("7.3.6", w(closeCode(1000, strings.Repeat("*", 124))), closed(1002)),
		once("7.5.1", w(closeCode(1000, badText)), closed(1007)),
		once("7.x-fragmented-close", w(join(cf(ws.OpClose, false, 0, binary.BigEndian.AppendUint16(nil, 1000)), cont("", true))), closed(1002)),
	)
	for i, code := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999} {
		add(once(fmt.Sprintf("7.7.%d", i+1), w(closeCode(code, "")), closed(int(code))))
	}
	for _, code := range []uint16{1012, 1013, 1014} {
		add(once(fmt.Sprintf("7.7-extra-%d", code), w(closeCode(code, "")), closed(int(code))))
	}
	for i, code := range []uint16{0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999} {
		add(once(fmt.Sprintf("7.9.%d", i+1), w(closeCode(code, "")), closed(1002)))
	}
	for _, code := range []uint16{1015, 2500, 5000, 65535} {
		id := fmt.Sprintf("7.9-extra-%d", code)
		switch code {
		case 5000:
			id = "7.13.1"
		case 65535:
			id = "7.13.2"
		}
		add(once(id, w(closeCode(code, "")), closed(1002)))
	}

	// 9 Limits, fitted to max_message_size: messages up to the limit in
	// one frame, in fragments and in chops, and over it.
	add(once("9.1.1", w(text(cmd(1, confLimit))), reply(1)))
	for i, n := range []int64{256 << 10, 1 << 20, 4 << 20, 8 << 20, 16 << 20} {
		add(once(fmt.Sprintf("9.1.%d", i+2), w(headerOnly(ws.OpText, true, 0, n)), closed(1009)))
		add(once(fmt.Sprintf("9.2.%d", i+2), w(headerOnly(ws.OpBinary, true, 0, n)), closed(1003)))
	}
	add(once("9.2.1", w(binFrame(confLimit)), closed(1003)))
	for i, n := range []int{64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10} {
		add(once(fmt.Sprintf("9.3.%d", i+1), w(splitParts(cmd(1, confLimit), n)), reply(1)))
		add(once(fmt.Sprintf("9.4.%d", i+1), w(cf(ws.OpBinary, false, 0, make([]byte, n))), closed(1003)))
	}
	add(once("9.3-limit", w(splitParts(cmd(1, confLimit+1), 4<<10)), closed(1009)))
	for i, n := range []int{64, 128, 256, 512, 1024, 2048} {
		add(once(fmt.Sprintf("9.5.%d", i+1), chop(n, text(cmd(1, confLimit))), reply(1)))
		add(once(fmt.Sprintf("9.6.%d", i+1), chop(n, binFrame(confLimit)), closed(1003)))
	}
	for i, n := range []int{0, 16, 64, 256, 1024, 4096} {
		var b []byte
		var want []ev
		for k := range 1000 {
			switch {
			case n == 0:
				b = append(b, text("")...)
				want = append(want, bad())
			case n < 40:
				b = append(b, text(strings.Repeat("*", n))...)
				want = append(want, bad())
			default:
				b = append(b, text(cmd(k+1, n))...)
				want = append(want, reply(k+1))
			}
		}
		add(once(fmt.Sprintf("9.7.%d", i+1), chop(64<<10, b), want...))
		add(once(fmt.Sprintf("9.8.%d", i+1), w(binFrame(n)), closed(1003)))
	}
	return cs
}

// reservedOp is a 4.x case: the i-th variant of sending reserved opcode op.
func reservedOp(id string, op ws.OpCode, i int) confCase {
	frame := cf(op, true, 0, nil)
	if i > 0 {
		frame = cf(op, true, 0, []byte("reserved opcode payload"))
	}
	switch i {
	case 0, 1:
		return once(id, w(frame), closed(1002))
	case 2, 3:
		return once(id, w(join(text(smallCmd(1)), frame, ping(""))), reply(1), closed(1002))
	default:
		return once(id, w(text(smallCmd(1)), frame, ping("")), reply(1), closed(1002))
	}
}

// utf8Seq is a test sequence and whether it is valid UTF-8.
type utf8Seq struct {
	valid bool
	b     string
}

// utf8Sequences returns the groups of Autobahn's cases 6.5 to 6.23 (from
// Markus Kuhn's UTF-8 decoder stress test), in their order.
func utf8Sequences() [][]utf8Seq {
	ok := func(ss ...string) []utf8Seq {
		out := make([]utf8Seq, len(ss))
		for i, s := range ss {
			out[i] = utf8Seq{true, s}
		}
		return out
	}
	no := func(ss ...string) []utf8Seq {
		out := make([]utf8Seq, len(ss))
		for i, s := range ss {
			out[i] = utf8Seq{false, s}
		}
		return out
	}
	kosme := "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
	var prefixes []utf8Seq
	for n := 1; n <= len(kosme); n++ {
		prefixes = append(prefixes, utf8Seq{n == 2 || n == 5 || n == 7 || n == 9 || n == 11, kosme[:n]})
	}
	var contBytes []byte // every continuation byte but the last, as Autobahn has it
	for c := 0x80; c < 0xbf; c++ {
		contBytes = append(contBytes, byte(c))
	}
	lonely := func(lo, hi int) string {
		var b []byte
		for c := lo; c < hi; c++ {
			b = append(b, byte(c), ' ')
		}
		return string(b)
	}
	missing := []string{"\xc0", "\xe0\x80", "\xf0\x80\x80", "\xf8\x80\x80\x80", "\xfc\x80\x80\x80\x80",
		"\xdf", "\xef\xbf", "\xf7\xbf\xbf", "\xfb\xbf\xbf\xbf", "\xfd\xbf\xbf\xbf\xbf"}
	var nonChars []string
	nonChars = append(nonChars, "\xef\xbf\xbe", "\xef\xbf\xbf")
	for _, z1 := range []byte{0xf0, 0xf1, 0xf2, 0xf3, 0xf4} {
		for _, z2 := range []byte{0x8f, 0x9f, 0xaf, 0xbf} {
			if z1 == 0xf4 && z2 != 0x8f {
				continue // above U+10FFFF
			}
			for _, z3 := range []byte{0xbe, 0xbf} {
				s := string([]byte{z1, z2, 0xbf, z3})
				if z1 == 0xf0 && z2 == 0x8f {
					continue // overlong
				}
				nonChars = append(nonChars, s)
			}
		}
	}
	return [][]utf8Seq{
		ok("hello\x24world", "hello\xc2\xa2world", "hello\xe2\x82\xacworld", "hello\xf0\xa4\xad\xa2world", kosme), // 6.5
		prefixes, // 6.6
		ok("\x00", "\xc2\x80", "\xe0\xa0\x80", "\xf0\x90\x80\x80"),                                                                                // 6.7
		no("\xf8\x88\x80\x80\x80", "\xfc\x84\x80\x80\x80\x80"),                                                                                    // 6.8
		ok("\x7f", "\xdf\xbf", "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf"),                                                                                // 6.9
		no("\xf7\xbf\xbf\xbf", "\xfb\xbf\xbf\xbf\xbf", "\xfd\xbf\xbf\xbf\xbf\xbf"),                                                                // 6.10
		append(ok("\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbd", "\xf4\x8f\xbf\xbf"), no("\xf4\x90\x80\x80")...),                                 // 6.11
		no("\x80", "\xbf", "\x80\xbf", "\x80\xbf\x80", "\x80\xbf\x80\xbf", "\x80\xbf\x80\xbf\x80", "\x80\xbf\x80\xbf\x80\xbf", string(contBytes)), // 6.12
		no(lonely(0xc0, 0xdf), lonely(0xe0, 0xef), lonely(0xf0, 0xf7), lonely(0xf8, 0xfb), lonely(0xfc, 0xfd)),                                    // 6.13
		no(missing...),                         // 6.14
		no(strings.Join(missing, "")),          // 6.15
		no("\xfe", "\xff", "\xfe\xfe\xff\xff"), // 6.16
		no("\xc0\xaf", "\xe0\x80\xaf", "\xf0\x80\x80\xaf", "\xf8\x80\x80\x80\xaf", "\xfc\x80\x80\x80\x80\xaf"),             // 6.17
		no("\xc1\xbf", "\xe0\x9f\xbf", "\xf0\x8f\xbf\xbf", "\xf8\x87\xbf\xbf\xbf", "\xfc\x83\xbf\xbf\xbf\xbf"),             // 6.18
		no("\xc0\x80", "\xe0\x80\x80", "\xf0\x80\x80\x80", "\xf8\x80\x80\x80\x80", "\xfc\x80\x80\x80\x80\x80"),             // 6.19
		no("\xed\xa0\x80", "\xed\xad\xbf", "\xed\xae\x80", "\xed\xaf\xbf", "\xed\xb0\x80", "\xed\xbe\x80", "\xed\xbf\xbf"), // 6.20
		no("\xed\xa0\x80\xed\xb0\x80", "\xed\xa0\x80\xed\xbf\xbf", "\xed\xad\xbf\xed\xb0\x80", "\xed\xad\xbf\xed\xbf\xbf",
			"\xed\xae\x80\xed\xb0\x80", "\xed\xae\x80\xed\xbf\xbf", "\xed\xaf\xbf\xed\xb0\x80", "\xed\xaf\xbf\xed\xbf\xbf"), // 6.21
		ok(nonChars...), // 6.22
		ok("\xef\xbf\xb9", "\xef\xbf\xba", "\xef\xbf\xbb", "\xef\xbf\xbc", "\xef\xbf\xbd", "\xef\xbf\xbe", "\xef\xbf\xbf"), // 6.23
	}
}

// TestConformance runs every case of the table on a connection of its own,
// with each reader.
func TestConformance(t *testing.T) {
	cases := conformanceCases()
	seen := map[string]bool{}
	for _, c := range cases {
		if seen[c.id] {
			t.Fatalf("case id %s twice", c.id)
		}
		seen[c.id] = true
	}
	forEachReader(t, func(t *testing.T, reader string) {
		e := startEnv(t, reader, func(o *Options) { o.MaxMessageSize = confLimit })
		for _, c := range cases {
			t.Run(c.id, func(t *testing.T) {
				t.Parallel()
				runConfCase(t, e, c)
			})
		}
	})
}

func runConfCase(t *testing.T, e *testEnv, c confCase) {
	cl := dialURL(t, e.url())
	open := true
	for si, s := range c.steps {
		for _, b := range s.send {
			cl.write(b)
		}
		var pending *ws.Frame // a frame read while skipping an optional event
		for wi, want := range s.want {
			var f ws.Frame
			if pending != nil {
				f, pending = *pending, nil
			} else {
				var err error
				if f, err = cl.frame(); err != nil {
					t.Fatalf("step %d: waiting for %s #%d: %v", si, want.kind, wi, err)
				}
			}
			if err := match(f, want); err != nil {
				if want.optional {
					pending = &f
					continue
				}
				t.Fatalf("step %d, event %d: %v", si, wi, err)
			}
			if want.kind == "close" {
				open = false
			}
		}
		if pending != nil {
			t.Fatalf("step %d: unexpected frame %v %q", si, pending.Header.OpCode, pending.Payload)
		}
	}
	if !open {
		return
	}
	// Still open: a command is answered, and the client's close is echoed.
	if m := cl.call(999, smallCmd(999)); m["error"] != nil {
		t.Fatalf("after the case: %v", m)
	}
	cl.write(closeCode(1000, "done"))
	if f, err := cl.frame(); err != nil || match(f, closed(1000)) != nil {
		t.Fatalf("closing after the case: %v %q %v", f.Header.OpCode, f.Payload, err)
	}
}

// match checks frame f against the expected event.
func match(f ws.Frame, want ev) error {
	switch want.kind {
	case "pong":
		if f.Header.OpCode != ws.OpPong || string(f.Payload) != want.payload {
			return fmt.Errorf("got %v %q, want a pong %q", f.Header.OpCode, f.Payload, want.payload)
		}
	case "close":
		if f.Header.OpCode != ws.OpClose {
			return fmt.Errorf("got %v %.80q, want a close %d", f.Header.OpCode, f.Payload, want.code)
		}
		if code, _ := ws.ParseCloseFrameData(f.Payload); int(code) != want.code {
			return fmt.Errorf("close code %d, want %d", code, want.code)
		}
	case "reply", "bad":
		if f.Header.OpCode != ws.OpText {
			return fmt.Errorf("got %v %.80q, want a %s", f.Header.OpCode, f.Payload, want.kind)
		}
		var m struct {
			ID    *int                `json:"id"`
			Error *struct{ Code int } `json:"error"`
		}
		if err := json.Unmarshal(f.Payload, &m); err != nil {
			return fmt.Errorf("text %.80q: %w", f.Payload, err)
		}
		if want.kind == "bad" {
			if m.Error == nil || m.Error.Code != 400 {
				return fmt.Errorf("got %.80q, want a 400 error", f.Payload)
			}
		} else if m.Error != nil || m.ID == nil || *m.ID != want.id {
			return fmt.Errorf("got %.80q, want the reply to %d", f.Payload, want.id)
		}
	default:
		return fmt.Errorf("unknown event %q", want.kind)
	}
	return nil
}
