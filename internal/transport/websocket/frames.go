package websocket

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/switchboardhq/switchboard/internal/protocol"
	"github.com/switchboardhq/switchboard/internal/protocol/pb"
)

// Reading client frames (RFC 6455 section 5): what is checked, and with
// which close code a violation ends the connection.
//
//   - Header, before any of the payload is waited for: reserved bits set
//     (RSV1 is allowed only on the first frame of a data message, and only
//     when permessage-deflate was negotiated; see compress.go), an unmasked
//     frame, a reserved opcode, a fragmented control frame or one with
//     more than 125 bytes of payload, a continuation with nothing to
//     continue, a new data frame inside a fragmented message: 1002. A
//     binary frame: 1003. A data frame that takes the message over
//     Options.MaxMessageSize: 1009. So a frame with reserved bits is a
//     1002 whatever its size.
//   - Close frames: a 1-byte payload or a code not allowed on the wire is
//     a 1002; a reason that is not UTF-8 a 1007. A valid close is echoed
//     with the client's code (1000 for an empty close).
//   - Text: a message that is not UTF-8 is a 1007, as soon as a fragment
//     shows it.
//   - Ping: answered with a pong carrying the same payload. Pong: it only
//     counts as activity for the idle timeout, solicited or not.

// maxControlPayload is the largest payload of a control frame (RFC 6455
// section 5.5).
const maxControlPayload = 125

// peerClosed is what process returns after the client's valid close frame:
// reading stops, and the session is already closing (Session.PeerGone).
var peerClosed = protocol.Disconnect{Code: 1000, Reason: "closed by the client"}

// end closes the session after process returned d, unless d is peerClosed:
// the client's close already ended it.
func (c *conn) end(d *protocol.Disconnect) {
	if d != &peerClosed {
		c.sess.Close(*d)
	}
}

// process handles the complete frames at the start of buf. It returns how
// many bytes it consumed, the buffer size the next frame needs when it is
// incomplete (0 if unknown), and a disconnect when the connection must
// close: the caller passes it to end and reads no more frames.
func (c *conn) process(buf []byte) (consumed, need int, d *protocol.Disconnect) {
	for {
		rest := buf[consumed:]
		if len(rest) < 2 {
			return consumed, 0, nil
		}
		hdr, err := ws.ReadHeader(bytes.NewReader(rest))
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return consumed, 0, nil
			}
			return consumed, 0, &protocol.DisconnectProtocolError
		}
		if d := checkHeader(hdr, c.fragging, len(c.frag), c.hd.opts.MaxMessageSize, c.deflate, c.binary); d != nil {
			return consumed, 0, d
		}
		hs := ws.HeaderSize(hdr)
		total := hs + int(hdr.Length)
		if len(rest) < total {
			return consumed, total, nil
		}
		payload := rest[hs:total]
		consumed += total
		if d := c.frame(hdr, payload); d != nil {
			return consumed, 0, d
		}
	}
}

// checkHeader checks a client frame's header before its payload is read.
// fragging tells whether a fragmented message is open, and fragLen how many
// bytes of it were received; maxMessage is Options.MaxMessageSize; deflate
// tells whether permessage-deflate was negotiated, which allows RSV1 on
// the first frame of a data message; binary tells whether the binary
// protocol was negotiated, which swaps the data opcode the server accepts
// (binary frames) and refuses (text, with 1003). Reserved bits are checked
// first, so that they are a protocol error even on a frame over the size
// limit.
func checkHeader(h ws.Header, fragging bool, fragLen, maxMessage int, deflate, binary bool) *protocol.Disconnect {
	rsv := h.Rsv
	if deflate && (h.OpCode == ws.OpText || h.OpCode == ws.OpBinary) {
		rsv &^= ws.Rsv(true, false, false)
	}
	if rsv != 0 || !h.Masked {
		return &protocol.DisconnectProtocolError
	}
	switch h.OpCode {
	case ws.OpClose, ws.OpPing, ws.OpPong:
		if !h.Fin || h.Length > maxControlPayload {
			return &protocol.DisconnectProtocolError
		}
		return nil
	case ws.OpContinuation:
		if !fragging {
			return &protocol.DisconnectProtocolError
		}
	case ws.OpText, ws.OpBinary:
		if fragging {
			return &protocol.DisconnectProtocolError
		}
		switch {
		case h.OpCode == ws.OpBinary && !binary:
			return &protocol.DisconnectUnsupportedData
		case h.OpCode == ws.OpText && binary:
			return &protocol.DisconnectUnsupportedText
		}
		fragLen = 0
	default: // reserved opcodes
		return &protocol.DisconnectProtocolError
	}
	if h.Length > int64(maxMessage-fragLen) {
		return &protocol.DisconnectMessageTooBig
	}
	return nil
}

// frame handles one complete frame whose header checkHeader accepted.
func (c *conn) frame(hdr ws.Header, payload []byte) *protocol.Disconnect {
	ws.Cipher(payload, hdr.Mask, 0)
	c.touch()
	switch hdr.OpCode {
	case ws.OpPing:
		c.sess.EnqueueControl(ws.MustCompileFrame(ws.NewPongFrame(append([]byte(nil), payload...))))
	case ws.OpPong:
		// Solicited or not, it shows the client is there (touch).
	case ws.OpClose:
		code, d := parseClose(payload)
		if d != nil {
			return d
		}
		// The client is leaving: nothing more is written but the echo of
		// its close (conn.Close), then the reader drains.
		c.mu.Lock()
		c.peerCode = code
		c.mu.Unlock()
		c.sess.PeerGone()
		return &peerClosed
	case ws.OpText, ws.OpBinary: // checkHeader let through the one this connection speaks
		z := hdr.Rsv1()
		if !hdr.Fin {
			c.fragging, c.fragZ = true, z
			c.frag = append(c.frag[:0], payload...)
			c.fragValid = 0
			return c.checkFragment()
		}
		if z {
			return c.compressedMessage(payload)
		}
		return c.message(payload, 0)
	case ws.OpContinuation:
		c.frag = append(c.frag, payload...)
		if !hdr.Fin {
			return c.checkFragment()
		}
		msg, valid, z := c.frag, c.fragValid, c.fragZ
		c.frag, c.fragValid, c.fragging, c.fragZ = nil, 0, false, false
		if z {
			return c.compressedMessage(msg)
		}
		return c.message(msg, valid)
	}
	return nil
}

// compressedMessage inflates a complete compressed message and hands it
// to the session.
func (c *conn) compressedMessage(payload []byte) *protocol.Disconnect {
	msg, d := inflateMessage(payload, c.hd.opts.MaxMessageSize)
	if d != nil {
		return d
	}
	if zc := c.hd.zc; zc != nil && zc.received != nil {
		zc.received.Inc()
	}
	return c.message(msg, 0)
}

// checkFragment checks the UTF-8 of the fragmented message received so far,
// so that an invalid one is refused before the rest of it arrives. A
// sequence cut between two fragments is checked once it is complete.
func (c *conn) checkFragment() *protocol.Disconnect {
	if c.fragZ || c.binary {
		return nil // checked once inflated; binary is not UTF-8
	}
	n, ok := utf8Prefix(c.frag[c.fragValid:])
	if !ok {
		return &protocol.DisconnectInvalidPayload
	}
	c.fragValid += n
	return nil
}

// message hands one complete message to the session: a binary protocol
// message, or a text message of which msg[:valid] is already known to be
// UTF-8.
func (c *conn) message(msg []byte, valid int) *protocol.Disconnect {
	if c.binary {
		c.sess.HandleFrame(msg, pb.DecodeCommand)
		return nil
	}
	if !utf8.Valid(msg[valid:]) {
		return &protocol.DisconnectInvalidPayload
	}
	c.sess.HandleMessage(msg)
	return nil
}

// utf8Prefix returns the length of the longest prefix of b made of complete,
// valid UTF-8 sequences, and whether the rest of b may still become valid:
// it is empty, or the start of a sequence whose end has not arrived yet.
func utf8Prefix(b []byte) (n int, ok bool) {
	for n < len(b) {
		if b[n] < utf8.RuneSelf {
			n++
			continue
		}
		r, size := utf8.DecodeRune(b[n:])
		if r == utf8.RuneError && size == 1 {
			// FullRune is false only for a valid but incomplete start.
			return n, !utf8.FullRune(b[n:])
		}
		n += size
	}
	return n, true
}

// validCloseCode reports whether a client may send code in a close frame
// (RFC 6455 section 7.4 and the IANA registry): the defined codes that are
// not reserved for local use, and the registered and private ranges.
// 1004, 1005, 1006, 1015 and everything unassigned are refused.
func validCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// parseClose checks the (unmasked) payload of a client's close frame and
// returns the code to echo: the client's, or 1000 for an empty payload,
// which carries no code. A payload of one byte or an invalid code is a
// protocol error (1002), a reason that is not UTF-8 a 1007.
func parseClose(p []byte) (code uint16, d *protocol.Disconnect) {
	switch {
	case len(p) == 0:
		return protocol.DisconnectNormal.Code, nil
	case len(p) == 1:
		return 0, &protocol.DisconnectProtocolError
	}
	code = binary.BigEndian.Uint16(p)
	if !validCloseCode(code) {
		return 0, &protocol.DisconnectProtocolError
	}
	if !utf8.Valid(p[2:]) {
		return 0, &protocol.DisconnectInvalidPayload
	}
	return code, nil
}
