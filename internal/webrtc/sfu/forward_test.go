package sfu

import (
	"context"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestForwardVP8AndOpusToTwoSubscribers: one publisher's VP8 and Opus
// tracks reach two subscribers, each with its own SSRC, and both see
// the room's events.
func TestForwardVP8AndOpusToTwoSubscribers(t *testing.T) {
	l := newLab(t, Config{})
	a := l.join("a", "r", true)
	b := l.join("b", "r", false)
	c := l.join("c", "r", false)
	var video, audio *source
	a.publish(func(pc *webrtc.PeerConnection) {
		video = addVideo(t, pc, "cam")
		audio = addAudio(t, pc, "mic")
	})
	video.keyEvery = 30
	video.start(t)
	audio.start(t)
	for _, p := range []*peer{b, c} {
		waitFor(t, p.id+" receiving video and audio", 10*time.Second, func() bool {
			return len(p.track("a:cam")) > 60 && len(p.track("a:mic")) > 50
		})
	}
	if b.track("a:cam")[0].SSRC == c.track("a:cam")[0].SSRC {
		t.Errorf("both subscribers got SSRC %d: want one per subscriber", b.track("a:cam")[0].SSRC)
	}
	for _, p := range []*peer{b, c} {
		pkts := p.track("a:cam")
		if !isKeyframe(pkts[0].Payload) {
			t.Errorf("%s: forwarding started with a delta frame", p.id)
		}
		checkContinuous(t, p.id, pkts, 3000)
		if n := len(p.eventsNamed(EventPublished)); n != 2 {
			t.Errorf("%s: %d track_published events, want 2", p.id, n)
		}
	}
	if n := len(b.eventsNamed(EventJoined)); n != 1 {
		t.Errorf("b saw %d joins, want 1 (c)", n)
	}
	rooms := l.sfu.Rooms()
	if len(rooms) != 1 || len(rooms[0].Participants) != 3 || len(rooms[0].Participants[0].Tracks) != 2 {
		t.Fatalf("Rooms() = %+v", rooms)
	}
	l.sfu.Leave("r", "c")
	waitFor(t, "b to see c leave", 5*time.Second, func() bool { return len(b.eventsNamed(EventLeft)) == 1 })
}

// TestRemovedTrackIsUnpublished: a publisher that removes a track and
// renegotiates, without room_unpublish, has it unpublished for the
// others.
func TestRemovedTrackIsUnpublished(t *testing.T) {
	l := newLab(t, Config{})
	a := l.join("a", "r", true)
	b := l.join("b", "r", false)
	var video *source
	a.publish(func(pc *webrtc.PeerConnection) { video = addVideo(t, pc, "cam") })
	video.start(t)
	waitFor(t, "video at b", 10*time.Second, func() bool { return len(b.track("a:cam")) > 10 })
	if err := a.pub.RemoveTrack(video.sender); err != nil {
		t.Fatal(err)
	}
	offer, err := a.pub.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.pub.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	answer, err := l.sfu.Offer(context.Background(), "r", "a", a.pub.LocalDescription().SDP)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "track_unpublished at b", 10*time.Second, func() bool { return len(b.eventsNamed(EventUnpublished)) == 1 })
	if n := len(l.sfu.Rooms()[0].Participants[0].Tracks); n != 0 {
		t.Fatalf("a still publishes %d tracks", n)
	}
}
