package whip

import (
	"context"
	"errors"
	"fmt"
	"sort"
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
	kind  string
	codec string
	local *webrtc.TrackLocalStaticRTP
	index int // the stream track index, set by begin
	// registered is set by begin for the tracks of the stream; a track
	// that arrives later is not carried.
	registered bool
	skipped    uint16 // padding-only packets not relayed; owned by the reader
}

// trackWait is how long a publisher's first track waits for the others
// before the stream starts without them (a section the publisher
// negotiated but sends nothing on).
const trackWait = time.Second

// publishSession is one WHIP publisher. The stream starts in the registry
// when the publisher's tracks arrive: the codec of each is the one it
// actually sends (a publisher may send any codec of the answer).
type publishSession struct {
	srv     *Server
	id      string
	path    string
	remote  string
	pc      *webrtc.PeerConnection
	start   time.Time
	want    int // sections the server receives
	viewers atomic.Int32
	lastPLI atomic.Int64 // unix nanoseconds

	mu      sync.Mutex        // guards arrived
	arrived map[string]*relay // by media section id; nil relay: a codec not carried

	// Set by begin before ready closes; read-only afterwards.
	pub    *stream.Publisher // nil when the stream could not start
	relays []*relay          // by stream track index
	ready  chan struct{}
	once   sync.Once

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
	closed, full := s.closed, len(s.pubs) >= s.opts.MaxPublishers
	s.mu.Unlock()
	if closed || s.opts.Connections == nil {
		return "", ErrUnavailable
	}
	if full {
		return "", fmt.Errorf("%w: this node has %d WHIP sessions, its most", ErrUnavailable, s.opts.MaxPublishers)
	}
	// Refuse a second publisher before any connection is made. (Of two
	// racing, the second to send media is ended then: Registry.Publish.)
	if _, err := s.opts.Registry.Get(path); err == nil {
		return "", fmt.Errorf("%w: %s", stream.ErrPublisherExists, path)
	}
	pc, err := s.opts.Connections.NewReceiveConnection()
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	ps := &publishSession{srv: s, id: id, path: path, remote: remote, pc: pc, start: time.Now(), arrived: map[string]*relay{},
		ready: make(chan struct{}), connected: make(chan struct{}), stop: make(chan struct{}), finished: make(chan struct{})}
	ans, err := answer(ctx, pc, sdp, s.opts.GatherTimeout, nil)
	if err != nil {
		_ = pc.Close()
		return "", err
	}
	ao, err := parseOffer([]byte(ans))
	if err != nil {
		_ = pc.Close()
		return "", fmt.Errorf("whip: reading the answer: %w", err)
	}
	for _, m := range ao.media {
		if !m.receives || !wanted(sending, m.mid) {
			continue
		}
		for _, c := range m.codecs {
			if _, ok := webrtcCodecs[c]; ok {
				ps.want++
				break
			}
		}
	}
	if ps.want == 0 {
		_ = pc.Close()
		return "", fmt.Errorf("%w: the offer sends none of H.264, VP8, VP9 (video) or Opus (audio)", ErrCodec)
	}
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
		_ = pc.Close()
		return "", ErrUnavailable
	}
	s.pubs[id] = ps
	s.sessions.Add(1)
	s.mu.Unlock()
	go ps.run()
	s.log.Info("whip publisher", "path", path, "session", id, "remote", remote, "sections", ps.want)
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

// begin starts the stream with the tracks that arrived; it runs once.
func (ps *publishSession) begin() {
	ps.once.Do(func() {
		defer close(ps.ready)
		select {
		case <-ps.stop:
			return // ended before its tracks arrived: no stream
		default:
		}
		ps.mu.Lock()
		mids := make([]string, 0, len(ps.arrived))
		for mid, r := range ps.arrived {
			if r != nil {
				mids = append(mids, mid)
			}
		}
		sort.Strings(mids) // the sections' order, as browsers number them
		arrived := make([]*relay, len(mids))
		for i, mid := range mids {
			arrived[i] = ps.arrived[mid]
		}
		ps.mu.Unlock()
		var tracks []*stream.Track
		for _, r := range arrived {
			r.index, r.registered = len(tracks), true
			ci := webrtcCodecs[r.codec]
			t := &stream.Track{Codec: ci.codec, ClockRate: int(ci.cap.ClockRate)}
			if ci.codec == stream.Opus {
				t.SampleRate, t.Channels = 48000, 2
			}
			tracks = append(tracks, t)
			ps.relays = append(ps.relays, r)
		}
		if len(tracks) == 0 {
			ps.close(fmt.Errorf("%w: the publisher sends no codec the server carries", ErrCodec))
			return
		}
		pub, err := ps.srv.opts.Registry.Publish(ps.path, stream.PublisherInfo{Protocol: "whip", Remote: ps.remote}, tracks)
		if err != nil {
			ps.srv.log.Info("whip publisher refused", "path", ps.path, "session", ps.id, "err", err)
			ps.close(err)
			return
		}
		ps.pub = pub
		ps.srv.mu.Lock()
		ps.srv.byPath[ps.path] = ps
		ps.srv.mu.Unlock()
	})
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
	var reason error = stream.ErrEnded
	connected, ready := ps.connected, ps.ready
	var pubDone <-chan struct{}
loop:
	for {
		select {
		case <-connected:
			connected = nil // a nil channel blocks: the case is done
		case <-ready:
			ready = nil
			if ps.pub != nil {
				pubDone = ps.pub.Done()
				connect.Stop()
			}
		case <-connect.C:
			s.log.Info("whip publisher sent no media in time", "path", ps.path, "session", ps.id)
			break loop
		case <-tick.C:
			ps.requestKeyframe(false)
		case <-pubDone:
			reason = ps.pub.Err()
			break loop
		case <-ps.stop:
			reason = ps.reason
			break loop
		}
	}
	ps.close(reason)
	ps.begin() // no stream starts after this
	if ps.pub != nil {
		ps.pub.Close()
	}
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

// onTrack reads one published track: once the stream has started, every
// packet is relayed to the viewers and depacketized into the stream's
// units.
func (ps *publishSession) onTrack(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	mid := ""
	for _, tr := range ps.pc.GetTransceivers() {
		if tr.Receiver() == recv {
			mid = tr.Mid()
		}
	}
	codec := strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(remote.Codec().MimeType, "video/"), "audio/"))
	var rl *relay
	if _, ok := webrtcCodecs[codec]; ok {
		local, err := webrtc.NewTrackLocalStaticRTP(remote.Codec().RTPCodecCapability, remote.Kind().String(), ps.path)
		if err == nil {
			rl = &relay{kind: remote.Kind().String(), codec: codec, local: local}
		}
	}
	ps.mu.Lock()
	if _, dup := ps.arrived[mid]; dup {
		// Another simulcast layer of a section: the first layer to
		// arrive is the one carried.
		rl = nil
	} else {
		ps.arrived[mid] = rl
	}
	all := len(ps.arrived) >= ps.want
	ps.mu.Unlock()
	if all {
		ps.begin()
	} else {
		time.AfterFunc(trackWait, ps.begin)
	}
	select {
	case <-ps.ready:
	case <-ps.stop:
		return
	}
	if rl == nil || ps.pub == nil || !rl.registered {
		return // not carried, or the stream did not start
	}
	ci := webrtcCodecs[codec]
	if remote.Kind() == webrtc.RTPCodecTypeVideo {
		ps.videoSSRC.Store(uint32(remote.SSRC()))
		ps.requestKeyframe(true)
	}
	dep := newDepacketizer(rl.index, ci.codec, int(ci.cap.ClockRate))
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
