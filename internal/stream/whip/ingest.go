package whip

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/switchboardhq/switchboard/internal/stream"
)

// codecInfo is what the server knows of a codec WebRTC carries: the
// stream codec, the pion capability (as the SFU registers it, so that a
// viewer's connection binds it exactly) and the clock rate.
type codecInfo struct {
	codec stream.Codec
	cap   webrtc.RTPCodecCapability
}

// webrtcCodecs are the codecs WHIP accepts and WHEP sends, by SDP name.
var webrtcCodecs = map[string]codecInfo{
	"h264": {stream.H264, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}},
	"vp8":  {stream.VP8, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}},
	"vp9":  {stream.VP9, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0"}},
	"opus": {stream.Opus, webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}},
}

// sdpName returns the SDP name of a stream codec WebRTC carries, or "".
func sdpName(c stream.Codec) string {
	for name, ci := range webrtcCodecs {
		if ci.codec == c {
			return name
		}
	}
	return ""
}

// srcTrack is one track a source offers to viewers.
type srcTrack struct {
	kind  string // "audio", "video"
	codec string // SDP name
	local webrtc.TrackLocal
}

// source is what WHEP viewers of one stream are fed from: a WHIP session
// (RTP relayed) or a unitSource (access units packetized).
type source interface {
	tracks() []srcTrack
	// keyframe asks the source for a keyframe, when it can.
	keyframe()
	// done is closed when the source ends.
	done() <-chan struct{}
	// viewerCount is the number of viewers fed.
	viewerCount() *atomic.Int32
}

// relay is one published track: its RTP goes to the viewers as it comes.
type relay struct {
	kind    string
	codec   string
	local   *webrtc.TrackLocalStaticRTP
	skipped uint16 // padding-only packets not relayed; owned by the reader
}

// publishSession is one WHIP publisher.
type publishSession struct {
	srv     *Server
	id      string
	path    string
	pc      *webrtc.PeerConnection
	pub     *stream.Publisher
	start   time.Time
	relays  []*relay       // by stream track index
	mids    map[string]int // media section id to track index
	viewers atomic.Int32
	lastPLI atomic.Int64 // unix nanoseconds

	videoSSRC atomic.Uint32 // 0 until the video track arrives
	connected chan struct{} // closed when the connection is up
	connOnce  sync.Once
	stop      chan struct{} // closed by close
	stopOnce  sync.Once
	reason    error // why it stopped; written before stop closes
	finished  chan struct{}
}

var _ source = (*publishSession)(nil)

// publish starts a WHIP session.
func (s *Server) publish(ctx context.Context, id, path, remote string, o *offer, sdp string) (string, error) {
	sending, err := o.sending()
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed || s.opts.Connections == nil {
		return "", ErrUnavailable
	}
	// Refuse a second publisher before any connection is made.
	if _, err := s.opts.Registry.Get(path); err == nil {
		return "", fmt.Errorf("%w: %s", stream.ErrPublisherExists, path)
	}
	pc, err := s.opts.Connections.NewReceiveConnection()
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	ps := &publishSession{srv: s, id: id, path: path, pc: pc, start: time.Now(), mids: map[string]int{},
		connected: make(chan struct{}), stop: make(chan struct{}), finished: make(chan struct{})}
	ans, err := answer(ctx, pc, sdp, s.opts.GatherTimeout, nil)
	if err != nil {
		_ = pc.Close()
		return "", err
	}
	// The tracks are the sections the server receives, each with the
	// first codec of the answer: the one the publisher sends.
	ao, err := parseOffer([]byte(ans))
	if err != nil {
		_ = pc.Close()
		return "", fmt.Errorf("whip: reading the answer: %w", err)
	}
	var tracks []*stream.Track
	for _, m := range ao.media {
		if !m.receives || len(m.codecs) == 0 || !wanted(sending, m.mid) {
			continue
		}
		ci, ok := webrtcCodecs[m.codecs[0]]
		if !ok {
			continue
		}
		t := &stream.Track{Codec: ci.codec, ClockRate: int(ci.cap.ClockRate)}
		if ci.codec == stream.Opus {
			t.SampleRate, t.Channels = 48000, 2
		}
		local, err := webrtc.NewTrackLocalStaticRTP(ci.cap, m.kind, path)
		if err != nil {
			_ = pc.Close()
			return "", fmt.Errorf("whip: relay track: %w", err)
		}
		ps.mids[m.mid] = len(tracks)
		ps.relays = append(ps.relays, &relay{kind: m.kind, codec: m.codecs[0], local: local})
		tracks = append(tracks, t)
	}
	if len(tracks) == 0 {
		_ = pc.Close()
		return "", fmt.Errorf("%w: the offer sends none of H.264, VP8, VP9 (video) or Opus (audio)", ErrCodec)
	}
	pub, err := s.opts.Registry.Publish(path, stream.PublisherInfo{Protocol: "whip", Remote: remote}, tracks)
	if err != nil {
		_ = pc.Close()
		return "", err
	}
	ps.pub = pub
	pc.OnTrack(ps.onTrack)
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			ps.connOnce.Do(func() { close(ps.connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			ps.close(stream.ErrEnded)
		}
	})
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		pub.Close()
		_ = pc.Close()
		return "", ErrUnavailable
	}
	s.pubs[id] = ps
	s.byPath[path] = ps
	s.sessions.Add(1)
	s.mu.Unlock()
	go ps.run()
	s.log.Info("whip publisher", "path", path, "session", id, "remote", remote, "tracks", len(tracks))
	return ans, nil
}

// wanted reports whether mid is one of the sending sections.
func wanted(sending []offerMedia, mid string) bool {
	for _, m := range sending {
		if m.mid == mid {
			return true
		}
	}
	return false
}

// run watches the session until it ends, asking for keyframes
// periodically, then tears it down.
func (ps *publishSession) run() {
	s := ps.srv
	defer s.sessions.Done()
	connect := time.NewTimer(s.opts.ConnectTimeout)
	defer connect.Stop()
	tick := time.NewTicker(s.opts.KeyframeInterval)
	defer tick.Stop()
	reason := stream.ErrEnded
	connected := ps.connected
loop:
	for {
		select {
		case <-connected:
			connect.Stop()
			connected = nil // a nil channel blocks: the case is done
		case <-connect.C:
			s.log.Info("whip publisher did not connect in time", "path", ps.path, "session", ps.id)
			break loop
		case <-tick.C:
			ps.requestKeyframe(false)
		case <-ps.pub.Done():
			reason = ps.pub.Err()
			break loop
		case <-ps.stop:
			reason = ps.reason
			break loop
		}
	}
	ps.close(reason)
	ps.pub.Close()
	_ = ps.pc.Close()
	s.mu.Lock()
	delete(s.pubs, ps.id)
	if s.byPath[ps.path] == ps {
		delete(s.byPath, ps.path)
	}
	s.mu.Unlock()
	close(ps.finished)
	s.log.Info("whip publisher ended", "path", ps.path, "session", ps.id, "reason", reason)
}

// close asks the session to end with reason; it is idempotent and does
// not wait.
func (ps *publishSession) close(reason error) {
	ps.stopOnce.Do(func() {
		ps.reason = reason
		close(ps.stop)
	})
}

// onTrack reads one published track: every packet is relayed to the
// viewers and depacketized into the stream's units.
func (ps *publishSession) onTrack(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	idx := -1
	for _, tr := range ps.pc.GetTransceivers() {
		if tr.Receiver() == recv {
			if i, ok := ps.mids[tr.Mid()]; ok {
				idx = i
			}
		}
	}
	if idx < 0 {
		return // a section the stream does not carry
	}
	rl := ps.relays[idx]
	ci := webrtcCodecs[rl.codec]
	if got := remote.Codec().MimeType; !strings.EqualFold(got, ci.cap.MimeType) {
		ps.srv.log.Warn("whip publisher sends another codec than it negotiated first", "path", ps.path, "want", ci.cap.MimeType, "got", got)
		ps.close(fmt.Errorf("%w: the publisher sent %s, not %s", ErrCodec, got, ci.cap.MimeType))
		return
	}
	if remote.Kind() == webrtc.RTPCodecTypeVideo {
		ps.videoSSRC.Store(uint32(remote.SSRC()))
		ps.requestKeyframe(true)
	}
	dep := newDepacketizer(idx, ci.codec, int(ci.cap.ClockRate))
	for {
		pkt, _, err := remote.ReadRTP()
		if err != nil {
			return
		}
		ps.forward(rl, pkt)
		for _, u := range dep.push(pkt, time.Since(ps.start)) {
			if err := ps.pub.WriteUnit(u); err != nil {
				if !errors.Is(err, stream.ErrBadTrack) {
					ps.close(err)
				}
				return
			}
		}
	}
}

// forward relays one packet to the viewers, without the publisher's
// header extensions (their ids are the publisher's; each viewer's
// connection adds its own) and without padding-only packets.
func (ps *publishSession) forward(rl *relay, pkt *rtp.Packet) {
	if len(pkt.Payload) == 0 {
		rl.skipped++
		return
	}
	n := ps.viewers.Load()
	if n == 0 {
		return
	}
	out := rtp.Packet{Header: rtp.Header{
		Version: 2, Marker: pkt.Marker, PayloadType: pkt.PayloadType,
		SequenceNumber: pkt.SequenceNumber - rl.skipped, Timestamp: pkt.Timestamp, SSRC: pkt.SSRC,
	}, Payload: pkt.Payload}
	if err := rl.local.WriteRTP(&out); err == nil {
		ps.srv.forwarded.Add(uint64(n))
	}
}

// pliInterval is the least time between two keyframe requests.
const pliInterval = 300 * time.Millisecond

// requestKeyframe sends the publisher a PLI for its video, at most once
// per pliInterval unless force.
func (ps *publishSession) requestKeyframe(force bool) {
	ssrc := ps.videoSSRC.Load()
	if ssrc == 0 {
		return
	}
	now := time.Now().UnixNano()
	last := ps.lastPLI.Load()
	if !force && (now-last < int64(pliInterval) || !ps.lastPLI.CompareAndSwap(last, now)) {
		return
	}
	ps.lastPLI.Store(now)
	_ = ps.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
}

func (ps *publishSession) tracks() []srcTrack {
	out := make([]srcTrack, len(ps.relays))
	for i, r := range ps.relays {
		out[i] = srcTrack{kind: r.kind, codec: r.codec, local: r.local}
	}
	return out
}

func (ps *publishSession) keyframe()                  { ps.requestKeyframe(false) }
func (ps *publishSession) done() <-chan struct{}      { return ps.finished }
func (ps *publishSession) viewerCount() *atomic.Int32 { return &ps.viewers }
