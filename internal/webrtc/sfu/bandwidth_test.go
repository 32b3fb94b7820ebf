package sfu

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/transport/v5/vnet"
	"github.com/pion/webrtc/v4"
)

// capFilter drops what a destination receives over rate bytes per second
// (a token bucket with a burst of 0.1 s).
type capFilter struct {
	mu     sync.Mutex
	dst    string
	rate   float64 // bytes per second; 0: no cap
	tokens float64
	at     time.Time
}

func (c *capFilter) drop(ch vnet.Chunk) bool {
	dst, ok := ch.DestinationAddr().(*net.UDPAddr)
	if !ok || dst.IP.String() != c.dst {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rate == 0 {
		return false
	}
	now := time.Now()
	c.tokens = min(c.rate/10, c.tokens+now.Sub(c.at).Seconds()*c.rate)
	c.at = now
	n := float64(len(ch.UserData()) + 28)
	if c.tokens < n {
		return true
	}
	c.tokens -= n
	return false
}

func (c *capFilter) set(bitsPerSecond float64) {
	c.mu.Lock()
	c.rate, c.tokens, c.at = bitsPerSecond/8, 0, time.Now()
	c.mu.Unlock()
}

// TestLayerFollowsBandwidth caps the link to a subscriber under the high
// layer's bitrate: the congestion controller's estimate falls with the
// loss and the SFU moves the subscriber to a lower layer, at a keyframe;
// without the cap the estimate grows back and so does the layer.
func TestLayerFollowsBandwidth(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the bandwidth estimate")
	}
	l := newLab(t, Config{LayerInterval: 200 * time.Millisecond})
	a := l.join("a", "r", true)
	b := l.join("b", "r", false)
	capf := &capFilter{dst: b.ip}
	drop := capf.drop
	l.drop.Store(&drop)
	var video *source
	a.publish(func(pc *webrtc.PeerConnection) { video = addVideo(t, pc, "cam", "q", "h", "f") })
	video.start(t)
	layerNow := func() int {
		pkts := b.track("a:cam")
		if len(pkts) == 0 {
			return -1
		}
		return layerOf(&pkts[len(pkts)-1])
	}
	waitFor(t, "the high layer at b", 10*time.Second, func() bool { return layerNow() == 2 })
	capf.set(350_000)
	waitFor(t, "a lower layer under a 350 kbit/s cap", 20*time.Second, func() bool { return layerNow() >= 0 && layerNow() < 2 })
	est := l.sfu.room("r").get("b").estimator
	t.Logf("estimate under the cap: %d bit/s", est.GetTargetBitrate())
	capf.set(0)
	start := time.Now()
	waitFor(t, "the high layer again without the cap", 30*time.Second, func() bool { return layerNow() == 2 })
	t.Logf("back to the high layer in %s (estimate %d bit/s)", time.Since(start).Round(100*time.Millisecond), est.GetTargetBitrate())
	// Keyframe-gated: in sequence number order, wherever two neighbours
	// arrived, a change of layer is at a keyframe (the cap leaves holes,
	// and retransmissions arrive out of order).
	pkts := b.track("a:cam")
	bySeq := map[uint16]int{}
	for i := range pkts {
		bySeq[pkts[i].SequenceNumber] = i
	}
	changes := 0
	for i := range pkts {
		j, ok := bySeq[pkts[i].SequenceNumber-1]
		if !ok {
			continue
		}
		if layerOf(&pkts[i]) != layerOf(&pkts[j]) {
			changes++
			if !isKeyframe(pkts[i].Payload) {
				t.Fatalf("seq %d: layer %d to %d on a delta frame", pkts[i].SequenceNumber, layerOf(&pkts[j]), layerOf(&pkts[i]))
			}
		}
	}
	t.Logf("%d layer changes between neighbouring packets", changes)
	if n := len(b.eventsNamed(EventLayer)); n == 0 {
		t.Fatal("no layer event reached the subscriber")
	}
}
