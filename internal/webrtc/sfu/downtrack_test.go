package sfu

import (
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/switchboardhq/switchboard/internal/webrtc/payload"
)

// recWriter keeps the headers written.
type recWriter struct{ seqs []uint16 }

func (w *recWriter) WriteRTP(h *rtp.Header, _ []byte) (int, error) {
	w.seqs = append(w.seqs, h.SequenceNumber)
	return 0, nil
}
func (w *recWriter) Write(b []byte) (int, error) { return len(b), nil }

func benchDown(w webrtc.TrackLocalWriter) *downTrack {
	up := &upTrack{kind: webrtc.RTPCodecTypeVideo, codec: webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}}}
	up.layers[0] = &layer{}
	sub := &Participant{sig: nopSignaler{}}
	sub.subReady.Store(true)
	d := newDownTrack(up, sub)
	d.bound, d.w, d.clock, d.pt, d.ssrc = true, w, 90000, 96, 1234
	return d
}

func vp8Packet(t testing.TB, seq uint16, key bool) *frame {
	pl := vp8Frame(key, seq&0x7fff, uint8(seq), 0)[0]
	d, err := payload.ParseVP8(pl)
	if err != nil {
		t.Fatal(err)
	}
	return &frame{pkt: &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 3000}, Payload: pl}, at: time.Now(), keyframe: key, hasVP8: true, vp8: d}
}

// TestLongStream: a stream forwarded for more than the sequence number
// space, without a switch, loses nothing; packets from before the start
// and reordered ones are handled.
func TestLongStream(t *testing.T) {
	w := &recWriter{}
	d := benchDown(w)
	const start = 40000
	d.forward(vp8Packet(t, start-1, false)) // before any keyframe: dropped
	for i := range 3 * 65536 {
		d.forward(vp8Packet(t, uint16(start+i), i == 0))
	}
	if len(w.seqs) != 3*65536 {
		t.Fatalf("%d packets written of %d", len(w.seqs), 3*65536)
	}
	for i := 1; i < len(w.seqs); i++ {
		if w.seqs[i] != w.seqs[i-1]+1 {
			t.Fatalf("packet %d: %d after %d", i, w.seqs[i], w.seqs[i-1])
		}
	}
	// A late retransmission keeps its place: its rewritten number is the
	// one its neighbours imply.
	n := len(w.seqs)
	last := start + 3*65536 - 1
	d.forward(vp8Packet(t, uint16(last-4), false))
	if got, want := w.seqs[n], w.seqs[n-5]; got != want {
		t.Fatalf("retransmission written as %d, want %d", got, want)
	}
}

// TestPauseResume: a subscriber that pauses a track and resumes it gets
// the stream again from a keyframe, numbered on without a hole.
func TestPauseResume(t *testing.T) {
	w := &recWriter{}
	d := benchDown(w)
	seq := uint16(100)
	send := func(n int, key bool) {
		for i := range n {
			d.forward(vp8Packet(t, seq, key && i == 0))
			seq++
		}
	}
	send(10, true)
	d.setPrefs(Prefs{Track: "t", Paused: true})
	send(10, false)
	d.setPrefs(Prefs{Track: "t"})
	send(5, false) // delta frames: still waiting for a keyframe
	send(10, true)
	if len(w.seqs) != 20 {
		t.Fatalf("%d packets written, want 20", len(w.seqs))
	}
	for i := 1; i < len(w.seqs); i++ {
		if w.seqs[i] != w.seqs[i-1]+1 {
			t.Fatalf("packet %d: %d after %d", i, w.seqs[i], w.seqs[i-1])
		}
	}
}
