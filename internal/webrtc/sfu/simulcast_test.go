package sfu

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestSimulcastLayerSwitch: a publisher sends three layers (q, h, f),
// each with its own sequence numbers, timestamps and picture ids; a
// subscriber asks for the low layer, then the high one, then the middle.
// Each switch happens at a keyframe of the new layer (the SFU asks for
// it), and the subscriber sees one continuous stream throughout.
func TestSimulcastLayerSwitch(t *testing.T) {
	l := newLab(t, Config{})
	a := l.join("a", "r", true)
	b := l.join("b", "r", false)
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
	defer func() {
		if t.Failed() {
			js, _ := json.MarshalIndent(l.sfu.Rooms(), "", " ")
			t.Logf("rooms: %s; b got %d packets", js, len(b.track("a:cam")))
		}
	}()
	waitFor(t, "the high layer to reach b", 10*time.Second, func() bool { return layerNow() == 2 })
	if n := len(l.sfu.Rooms()[0].Participants[0].Tracks[0].Layers); n != 3 {
		t.Fatalf("the SFU sees %d layers, want 3", n)
	}
	startPkts, startEvents := len(b.track("a:cam")), len(b.eventsNamed(EventLayer))
	for _, want := range []int{0, 2, 1} {
		plis := video.plis.Load()
		if err := l.sfu.SetPrefs("r", "b", Prefs{Track: "a:cam", MaxLayer: &want}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "a switch to layer "+string(rune('0'+want)), 10*time.Second, func() bool { return layerNow() == want })
		if video.plis.Load() == plis {
			t.Errorf("switch to layer %d: no keyframe request reached the publisher", want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	pkts := b.track("a:cam")
	checkContinuous(t, "b", pkts, 3000)
	switches := 0
	for i := startPkts; i < len(pkts); i++ {
		if layerOf(&pkts[i]) != layerOf(&pkts[i-1]) {
			switches++
		}
	}
	if switches != 3 {
		t.Errorf("%d layer changes in the stream, want 3", switches)
	}
	var layers []int
	for _, e := range b.eventsNamed(EventLayer)[startEvents:] {
		var v struct{ Layer int }
		_ = json.Unmarshal(e.data, &v)
		layers = append(layers, v.Layer)
	}
	if len(layers) != 3 || layers[0] != 0 || layers[1] != 2 || layers[2] != 1 {
		t.Errorf("layer events %v, want [0 2 1]", layers)
	}
}
