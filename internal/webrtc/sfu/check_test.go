package sfu

import (
	"testing"

	"github.com/pion/rtp"
	"github.com/switchboardhq/switchboard/internal/webrtc/payload"
)

func isKeyframe(p []byte) bool {
	d, err := payload.ParseVP8(p)
	return err == nil && d.Keyframe
}

// checkContinuous asserts what a decoder needs across the packets a
// subscriber received in order: sequence numbers one apart, timestamps
// that never go back and never jump more than maxTSStep... per frame,
// VP8 picture ids that stay or grow by one, TL0PICIDX likewise, and a
// change of simulcast layer only on a keyframe.
func checkContinuous(t *testing.T, who string, pkts []rtp.Packet, maxTSStep uint32) {
	t.Helper()
	for i := 1; i < len(pkts); i++ {
		prev, cur := &pkts[i-1], &pkts[i]
		if cur.SequenceNumber != prev.SequenceNumber+1 {
			t.Fatalf("%s: packet %d: sequence number %d after %d", who, i, cur.SequenceNumber, prev.SequenceNumber)
		}
		if step := cur.Timestamp - prev.Timestamp; int32(step) < 0 || step > 10*maxTSStep {
			t.Fatalf("%s: packet %d: timestamp %d after %d", who, i, cur.Timestamp, prev.Timestamp)
		}
		dp, err1 := payload.ParseVP8(prev.Payload)
		dc, err2 := payload.ParseVP8(cur.Payload)
		if err1 != nil || err2 != nil {
			continue
		}
		if step := (dc.PictureID - dp.PictureID) & 0x7fff; step > 1 {
			t.Fatalf("%s: packet %d: picture id %d after %d", who, i, dc.PictureID, dp.PictureID)
		}
		if step := dc.TL0PicIdx - dp.TL0PicIdx; step > 1 {
			t.Fatalf("%s: packet %d: tl0picidx %d after %d", who, i, dc.TL0PicIdx, dp.TL0PicIdx)
		}
		if lp, lc := layerOf(prev), layerOf(cur); lp != lc && !dc.Keyframe {
			t.Fatalf("%s: packet %d: layer %d to %d on a delta frame", who, i, lp, lc)
		}
	}
}
