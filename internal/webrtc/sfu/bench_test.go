package sfu

import (
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/switchboardhq/switchboard/internal/webrtc/payload"
)

type nopSignaler struct{}

func (nopSignaler) Signal(string, any) {}

type nopWriter struct{ n int }

func (w *nopWriter) WriteRTP(h *rtp.Header, p []byte) (int, error) { w.n++; return len(p), nil }
func (w *nopWriter) Write(b []byte) (int, error)                   { w.n++; return len(b), nil }

// BenchmarkForward measures one subscriber's share of forwarding a VP8
// packet: layer check, offsets, picture id rewrite, the write call (to a
// writer that does nothing, so pion's SRTP and socket costs are not in
// it).
func BenchmarkForward(b *testing.B) {
	up := &upTrack{kind: webrtc.RTPCodecTypeVideo, codec: webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}}}
	up.layers[0] = &layer{}
	sub := &Participant{sig: nopSignaler{}}
	sub.subReady.Store(true)
	d := newDownTrack(up, sub)
	w := &nopWriter{}
	d.bound, d.w, d.clock, d.pt, d.ssrc = true, w, 90000, 96, 1234
	frames := make([]frame, 2)
	for i, key := range []bool{true, false} {
		pl := append(vp8Frame(key, 100, 7, 0)[0], make([]byte, 900)...)
		desc, err := payload.ParseVP8(pl)
		if err != nil {
			b.Fatal(err)
		}
		frames[i] = frame{pkt: &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 1, Timestamp: 3000}, Payload: pl}, at: time.Now(), keyframe: key, hasVP8: true, vp8: desc}
	}
	d.forward(&frames[0])
	f := frames[1]
	b.ReportAllocs()
	b.SetBytes(int64(len(f.pkt.Payload)))
	b.ResetTimer()
	for i := range b.N {
		f.pkt.SequenceNumber = uint16(i + 2)
		d.forward(&f)
	}
	if w.n < b.N {
		b.Fatalf("%d packets written of %d", w.n, b.N)
	}
}
