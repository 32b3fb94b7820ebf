package sfu

import (
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/transport/v5/vnet"
	"github.com/pion/webrtc/v4"
)

// TestNACKUnderLoss drops one in ten VP8 packets from the publisher to the
// SFU and one in ten from the SFU to the subscriber (RTX retransmissions
// pass). The SFU's NACK generator recovers the first losses from the
// publisher, its NACK responder the second from its send buffer: the
// subscriber ends up with every sequence number.
func TestNACKUnderLoss(t *testing.T) {
	l := newLab(t, Config{})
	a := l.join("a", "r", true)
	b := l.join("b", "r", false)
	var up, down atomic.Int32
	drop := func(c vnet.Chunk) bool {
		src, ok1 := c.SourceAddr().(*net.UDPAddr)
		dst, ok2 := c.DestinationAddr().(*net.UDPAddr)
		d := c.UserData()
		if !ok1 || !ok2 || len(d) < 12 || d[0]>>6 != 2 || d[1]&0x7f != 96 {
			return false // not VP8 (PT 96) RTP
		}
		switch {
		case src.IP.String() == a.ip:
			return up.Add(1)%10 == 0
		case dst.IP.String() == b.ip:
			return down.Add(1)%10 == 0
		}
		return false
	}
	l.drop.Store(&drop)
	var video *source
	a.publish(func(pc *webrtc.PeerConnection) { video = addVideo(t, pc, "cam") })
	video.start(t)
	waitFor(t, "300 packets at b", 15*time.Second, func() bool { return len(b.track("a:cam")) > 300 })
	video.halt()
	time.Sleep(500 * time.Millisecond) // the last retransmissions
	var seqs []int
	base := -1
	for _, p := range b.track("a:cam") {
		s := int(p.SequenceNumber)
		if base < 0 {
			base = s
		}
		seqs = append(seqs, (s-base+65536)%65536) // unwrapped from the first
	}
	slices.Sort(seqs)
	seqs = slices.Compact(seqs)
	// A loss among the last packets has no later packet to reveal it:
	// count holes up to 20 packets before the end.
	var holes []int
	for i := 1; i < len(seqs); i++ {
		for s := seqs[i-1] + 1; s < seqs[i] && s < seqs[len(seqs)-1]-20; s++ {
			holes = append(holes, s)
		}
	}
	missing := len(holes)
	t.Logf("dropped %d upstream and %d downstream of %d and %d; %d distinct packets at b, %d missing", up.Load()/10, down.Load()/10, up.Load(), down.Load(), len(seqs), missing)
	if up.Load() < 100 || down.Load() < 100 {
		t.Fatalf("too little traffic through the filter: %d up, %d down", up.Load(), down.Load())
	}
	if missing > 0 {
		t.Fatalf("%d sequence numbers never reached b: %v (of 0 to %d)", missing, holes, seqs[len(seqs)-1])
	}
}
