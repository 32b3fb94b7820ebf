package sfu

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v5/vnet"
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

// TestFailedConnectionLeaves: a subscriber whose network goes away is
// removed once its connection fails: it is told (kicked, with the
// reason) and the others see it leave.
func TestFailedConnectionLeaves(t *testing.T) {
	l := newLab(t, Config{DisconnectedTimeout: 500 * time.Millisecond, FailedTimeout: time.Second})
	a := l.join("a", "r", true)
	b := l.join("b", "r", false)
	var video *source
	a.publish(func(pc *webrtc.PeerConnection) { video = addVideo(t, pc, "cam") })
	video.start(t)
	waitFor(t, "video at b", 10*time.Second, func() bool { return len(b.track("a:cam")) > 10 })
	cut := func(c vnet.Chunk) bool {
		src, _ := c.SourceAddr().(*net.UDPAddr)
		dst, _ := c.DestinationAddr().(*net.UDPAddr)
		return src != nil && src.IP.String() == b.ip || dst != nil && dst.IP.String() == b.ip
	}
	l.drop.Store(&cut)
	waitFor(t, "a to see b leave", 15*time.Second, func() bool { return len(a.eventsNamed(EventLeft)) == 1 })
	if k := b.eventsNamed(EventKicked); len(k) != 1 || !strings.Contains(string(k[0].data), "subscriber connection failed") {
		t.Fatalf("b's kicked events %v", k)
	}
	if n := l.sfu.RoomSize("r"); n != 1 {
		t.Fatalf("room size %d, want 1", n)
	}
}
