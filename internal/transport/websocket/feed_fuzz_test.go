package websocket

import (
	"testing"

	"github.com/gobwas/ws"

	"github.com/switchboardhq/switchboard/internal/hub"
)

// FuzzFeed feeds bytes to the event loop's reassembly (conn.feed) in chunks
// whose sizes come from the input, and checks it against parsing the whole
// input at once: the same disconnect, or else the same incomplete tail kept
// in a buffer no larger than one frame.
func FuzzFeed(f *testing.F) {
	frame := func(fr ws.Frame) []byte {
		b, err := ws.CompileFrame(ws.MaskFrameInPlace(fr))
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	sub := frame(ws.NewTextFrame([]byte(`{"command":"subscribe","channel":"c","id":1}`)))
	f.Add(sub, []byte{1, 1, 1})
	f.Add(append(append(frame(ws.NewPingFrame([]byte("x"))), sub...), sub[:7]...), []byte{3, 50, 2})
	f.Add(append(frame(ws.Frame{Header: ws.Header{OpCode: ws.OpText}, Payload: []byte(`{"comm`)}),
		frame(ws.Frame{Header: ws.Header{Fin: true, OpCode: ws.OpContinuation}, Payload: []byte(`and":"ping"}`)})...), []byte{4, 9})
	f.Add(frame(ws.NewTextFrame(make([]byte, 300))), []byte{200, 1})
	f.Add([]byte{0x81, 0xfe, 0x04, 0x01}, []byte{1})
	f.Add([]byte{0x82, 0x80, 0, 0, 0, 0}, []byte{})

	h, hd := fuzzHandler(f)
	newConn := func() *conn {
		c := &conn{hd: hd}
		c.sess = h.NewSession(sink{}, hub.SessionInfo{})
		return c
	}

	f.Fuzz(func(t *testing.T, data, splits []byte) {
		whole := newConn()
		defer whole.sess.PeerGone()
		consumed, _, wantD := whole.process(append([]byte(nil), data...))

		c := newConn()
		defer c.sess.PeerGone()
		rest := data
		scratch := make([]byte, 256)
		for i := 0; len(rest) > 0 && !c.ep.draining; i++ {
			n := min(len(rest), len(scratch))
			if i < len(splits) {
				n = min(n, 1+int(splits[i]))
			}
			// As read into the shared scratch buffer, which is reused next.
			c.feed(scratch[:copy(scratch, rest[:n])])
			for j := range scratch {
				scratch[j] = 0xa5
			}
			rest = rest[n:]
			if len(c.ep.pend) > hd.opts.MaxMessageSize+14 {
				t.Fatalf("holds %d bytes", len(c.ep.pend))
			}
		}
		switch {
		case wantD != nil && !c.ep.draining:
			t.Fatalf("whole input ends with %v, chunked input does not", *wantD)
		case wantD == nil && c.ep.draining:
			t.Fatal("chunked input ends the connection, whole input does not")
		case wantD == nil && len(c.ep.pend) != len(data)-consumed:
			t.Fatalf("keeps %d bytes, whole input leaves %d", len(c.ep.pend), len(data)-consumed)
		}
	})
}
