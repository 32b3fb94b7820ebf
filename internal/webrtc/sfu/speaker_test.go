package sfu

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestActiveSpeaker: two publishers send Opus with the audio level
// extension; the louder one is reported first, a silent one not at all,
// and a change of who speaks is pushed.
func TestActiveSpeaker(t *testing.T) {
	l := newLab(t, Config{SpeakerInterval: 100 * time.Millisecond})
	a := l.join("a", "r", true)
	b := l.join("b", "r", true)
	c := l.join("c", "r", false)
	var ma, mb *source
	a.publish(func(pc *webrtc.PeerConnection) { ma = addAudio(t, pc, "mic") })
	b.publish(func(pc *webrtc.PeerConnection) { mb = addAudio(t, pc, "mic") })
	ma.level.Store(20)  // loud
	mb.level.Store(127) // silent
	ma.start(t)
	mb.start(t)
	speakers := func() [][]string {
		var out [][]string
		for _, e := range c.eventsNamed(EventSpeakers) {
			var v struct{ Speakers []string }
			_ = json.Unmarshal(e.data, &v)
			out = append(out, v.Speakers)
		}
		return out
	}
	last := func() []string {
		s := speakers()
		if len(s) == 0 {
			return nil
		}
		return s[len(s)-1]
	}
	waitFor(t, "a as the only speaker", 10*time.Second, func() bool { return slices.Equal(last(), []string{"a"}) })
	mb.level.Store(5) // louder than a
	waitFor(t, "b then a", 10*time.Second, func() bool { return slices.Equal(last(), []string{"b", "a"}) })
	ma.level.Store(127)
	mb.level.Store(127)
	waitFor(t, "silence", 10*time.Second, func() bool { return len(speakers()) > 2 && len(last()) == 0 })
	if got := l.sfu.Rooms()[0].Speakers; len(got) != 0 {
		t.Errorf("Rooms() speakers %v after silence", got)
	}
}
