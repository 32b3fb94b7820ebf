package websocket

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/broker/memory"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/protocol"
	"github.com/switchboardhq/switchboard/internal/protocol/pb"
)

// sink is a hub.Transport that discards what it is given.
type sink struct{}

func (sink) Name() string                      { return "fuzz" }
func (sink) WriteMessages([]hub.Message) error { return nil }
func (sink) Close(protocol.Disconnect) error   { return nil }

// fuzzHandler returns a started hub and a handler with a 1024-byte message
// limit that reads no socket, both stopped when f ends.
func fuzzHandler(f *testing.F) (*hub.Hub, *Handler) {
	f.Helper()
	h := hub.New(hub.Config{Metrics: metrics.New(prometheus.NewRegistry())}, memory.New(memory.Options{}), nil)
	if err := h.Start(context.Background()); err != nil {
		f.Fatal(err)
	}
	hd := &Handler{hub: h, opts: Options{MaxMessageSize: 1024}}
	hd.opts.setDefaults()
	hd.ka = newKeepalive(hd.opts.Clock, time.Hour, 2*time.Hour)
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			f.Errorf("hub shutdown: %v", err)
		}
		hd.Close()
	})
	return h, hd
}

// FuzzProcess feeds arbitrary bytes, whole and split in two, to the frame
// parser, on JSON and binary-protocol connections: it must never panic, never consume more than it was given, and
// either ask for more bytes or stop with a disconnect whose code is one the
// reader may send; a first frame with reserved bits set ends with 1002,
// whatever its size.
func FuzzProcess(f *testing.F) {
	frame := func(fr ws.Frame) []byte {
		b, err := ws.CompileFrame(ws.MaskFrameInPlace(fr))
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	sub := frame(ws.NewTextFrame([]byte(`{"command":"subscribe","channel":"c","id":1}`)))
	f.Add(sub, 3)
	f.Add(append(frame(ws.NewPingFrame([]byte("x"))), sub...), 10)
	f.Add(frame(ws.NewBinaryFrame([]byte{1, 2, 3})), 1)
	f.Add(frame(ws.NewCloseFrame(ws.NewCloseFrameBody(1000, "bye"))), 2)
	f.Add(frame(ws.Frame{Header: ws.Header{OpCode: ws.OpText}, Payload: []byte(`{"comm`)}), 4)
	f.Add([]byte{0x81, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, 5) // huge length
	f.Add([]byte{0x81, 0x7e, 0x00}, 1)
	f.Add([]byte{0xc1, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4}, 14) // RSV1, 64 KiB: 1002, not 1009
	f.Add(frame(ws.NewCloseFrame([]byte{0x03})), 3)                   // 1-byte close payload
	f.Add(frame(ws.NewCloseFrame(ws.NewCloseFrameBody(1005, ""))), 3) // a code not for the wire
	f.Add(frame(ws.NewCloseFrame(ws.NewCloseFrameBody(1000, "\xff"))), 3)
	f.Add(frame(ws.NewPongFrame(make([]byte, 126))), 3)
	f.Add(append(compressedFrame([]byte(`{"command":"ping","id":1}`)), 0), 3) // odd length: deflate on
	binSub := frame(ws.NewBinaryFrame(pb.AppendCommand(nil, &protocol.Command{ID: 1, HasID: true, Command: "subscribe", Channel: "c"})))
	f.Add(binSub, 5)                                       // odd split: the binary protocol
	f.Add(frame(ws.NewBinaryFrame([]byte{0xff, 0x01})), 1) // malformed protobuf: an error reply
	f.Add(sub, 1)                                          // text on the binary protocol: 1003

	h, hd := fuzzHandler(f)

	f.Fuzz(func(t *testing.T, data []byte, split int) {
		// Half the inputs run as if permessage-deflate was negotiated,
		// half (crosswise) on the binary protocol.
		c := &conn{hd: hd, deflate: len(data)%2 == 1, binary: split%2 != 0}
		c.sess = h.NewSession(sink{}, hub.SessionInfo{})
		defer c.sess.PeerGone()
		if split < 0 || split > len(data) {
			split = len(data) / 2
		}
		buf := append([]byte(nil), data[:split]...)
		for _, more := range [][]byte{nil, data[split:]} {
			buf = append(buf, more...)
			consumed, need, d := c.process(buf)
			if consumed < 0 || consumed > len(buf) {
				t.Fatalf("consumed %d of %d", consumed, len(buf))
			}
			if d != nil {
				switch d.Code {
				case 1000, 1002, 1003, 1007, 1009:
				default:
					t.Fatalf("disconnect %v", *d)
				}
				// With nothing consumed, the frame at buf[0] ended it.
				rsv := buf[0] & 0x70
				if op := buf[0] & 0x0f; c.deflate && (op == 1 || op == 2) {
					rsv &^= rsv1 // a compressed message
				}
				if consumed == 0 && rsv != 0 && d.Code != 1002 {
					t.Fatalf("reserved bits in % x: %v, want 1002", buf[:min(len(buf), 14)], *d)
				}
				return
			}
			if need > 0 && need <= len(buf)-consumed {
				t.Fatalf("asks for %d bytes but has %d", need, len(buf)-consumed)
			}
			buf = buf[consumed:]
		}
	})
}

// TestAppendHeaderMatchesLibrary checks the hand-written header against the
// library's encoder at every length boundary.
func TestAppendHeaderMatchesLibrary(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 1 << 20} {
		var want bytes.Buffer
		if err := ws.WriteHeader(&want, ws.Header{Fin: true, OpCode: ws.OpText, Length: int64(n)}); err != nil {
			t.Fatal(err)
		}
		if got := appendHeader(nil, ws.OpText, false, n); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("length %d: % x, want % x", n, got, want.Bytes())
		}
	}
}
