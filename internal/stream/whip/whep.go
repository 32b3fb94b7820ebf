package whip

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/switchboardhq/switchboard/internal/stream"
)

// viewSession is one WHEP viewer.
type viewSession struct {
	srv      *Server
	id, path string
	st       *stream.Stream
	pc       *webrtc.PeerConnection
	src      source

	connected chan struct{}
	connOnce  sync.Once
	stop      chan struct{}
	stopOnce  sync.Once
}

// view starts a WHEP session.
func (s *Server) view(ctx context.Context, id, path string, o *offer, sdp string) (string, error) {
	if s.opts.Connections == nil {
		return "", ErrUnavailable
	}
	s.mu.Lock()
	full := len(s.views) >= s.opts.MaxViewers
	s.mu.Unlock()
	if full {
		return "", fmt.Errorf("%w: this node has %d WHEP sessions, its most", ErrUnavailable, s.opts.MaxViewers)
	}
	st, err := s.opts.Registry.Get(path)
	if err != nil {
		return "", err
	}
	recv := o.receiving()
	if len(recv) == 0 {
		return "", fmt.Errorf("%w: no audio or video section receives media", ErrNoMedia)
	}
	src, err := s.acquire(st)
	if err != nil {
		return "", err
	}
	var chosen []srcTrack
	var missing []string
	for _, t := range src.tracks() {
		if m, ok := recv[t.kind]; ok && m.has(t.codec) {
			chosen = append(chosen, t)
		} else if ok {
			missing = append(missing, t.codec)
		}
	}
	if len(chosen) == 0 {
		s.release(st, src)
		if len(src.tracks()) == 0 {
			return "", fmt.Errorf("%w: %s has no track WebRTC carries (H.264, VP8, VP9, Opus)", ErrCodec, path)
		}
		return "", fmt.Errorf("%w: the offer does not receive %s", ErrCodec, strings.Join(missing, " or "))
	}
	pc, err := s.opts.Connections.NewSendConnection()
	if err != nil {
		s.release(st, src)
		return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	v := &viewSession{srv: s, id: id, path: path, st: st, pc: pc, src: src, connected: make(chan struct{}), stop: make(chan struct{})}
	ans, err := answer(ctx, pc, sdp, s.opts.GatherTimeout, func() error {
		for _, t := range chosen {
			sender, err := pc.AddTrack(t.local)
			if err != nil {
				return fmt.Errorf("whip: add track: %w", err)
			}
			go v.readRTCP(sender)
		}
		return nil
	})
	if err != nil {
		_ = pc.Close()
		s.release(st, src)
		return "", err
	}
	pc.OnConnectionStateChange(func(state webrtc.PeerConnectionState) {
		switch state {
		case webrtc.PeerConnectionStateConnected:
			v.connOnce.Do(func() { close(v.connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			v.close()
		}
	})
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = pc.Close()
		s.release(st, src)
		return "", ErrUnavailable
	}
	s.views[id] = v
	s.sessions.Add(1)
	s.mu.Unlock()
	s.countViewers(st)
	go v.run()
	return ans, nil
}

// run watches the viewer until it ends, then tears it down.
func (v *viewSession) run() {
	s := v.srv
	defer s.sessions.Done()
	connect := time.NewTimer(s.opts.ConnectTimeout)
	defer connect.Stop()
	connected := v.connected
loop:
	for {
		select {
		case <-connected:
			connect.Stop()
			connected = nil
			v.src.keyframe()
		case <-connect.C:
			break loop
		case <-v.src.done():
			break loop
		case <-v.stop:
			break loop
		}
	}
	_ = v.pc.Close()
	s.mu.Lock()
	delete(s.views, v.id)
	s.mu.Unlock()
	s.release(v.st, v.src)
	s.countViewers(v.st)
}

// close asks the session to end; it does not wait.
func (v *viewSession) close() { v.stopOnce.Do(func() { close(v.stop) }) }

// readRTCP reads a viewer's feedback for one track (the NACK responder
// answers NACKs as they pass) and passes keyframe requests on.
func (v *viewSession) readRTCP(sender *webrtc.RTPSender) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				v.src.keyframe()
			}
		}
	}
}

// countViewers records the stream's WHEP viewers in its Info.
func (s *Server) countViewers(st *stream.Stream) {
	s.mu.Lock()
	n := 0
	for _, v := range s.views {
		if v.st == st {
			n++
		}
	}
	s.mu.Unlock()
	st.SetViewers("whep", n)
}

// acquire returns the source of st's viewers, counting one more viewer:
// the WHIP session publishing it, or else a packetizer of its units,
// started for the first viewer.
func (s *Server) acquire(st *stream.Stream) (source, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrUnavailable
	}
	var src source
	if ps := s.byPath[st.Path()]; ps != nil && ps.pub.Stream() == st {
		src = ps
	} else if us := s.sources[st]; us != nil {
		src = us
	} else {
		us, err := newUnitSource(s, st)
		if err != nil {
			return nil, err
		}
		s.sources[st] = us
		src = us
	}
	src.viewerCount().Add(1)
	return src, nil
}

// release counts one viewer less; a packetizer without viewers stops.
func (s *Server) release(st *stream.Stream, src source) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if src.viewerCount().Add(-1) > 0 {
		return
	}
	if us, ok := src.(*unitSource); ok {
		us.cancel()
		if s.sources[st] == us {
			delete(s.sources, st)
		}
	}
}

// unitSource packetizes a stream's access units for its WHEP viewers: for
// a stream from an ingest other than WHIP. It is shared by the stream's
// viewers: each unit is packetized once.
type unitSource struct {
	rd      *stream.Reader
	cancel  context.CancelFunc
	ended   chan struct{}
	viewers atomic.Int32
	out     []srcTrack
	samples map[int]*sampleTrack // by stream track index
}

// sampleTrack is one carried track of a unitSource.
type sampleTrack struct {
	local   *webrtc.TrackLocalStaticSample
	track   *stream.Track
	lastDTS int64
	started bool
}

var _ source = (*unitSource)(nil)

// readerProtocol labels the unitSource's reader in GET /api/streams; its
// viewers are counted under "whep".
const readerProtocol = "webrtc"

func newUnitSource(s *Server, st *stream.Stream) (*unitSource, error) {
	us := &unitSource{ended: make(chan struct{}), samples: map[int]*sampleTrack{}}
	for i, t := range st.Tracks() {
		name := sdpName(t.Codec)
		if name == "" {
			continue // AAC, H.265, AV1: not carried
		}
		local, err := webrtc.NewTrackLocalStaticSample(webrtcCodecs[name].cap, string(t.Kind()), st.Path())
		if err != nil {
			return nil, fmt.Errorf("whip: sample track: %w", err)
		}
		us.samples[i] = &sampleTrack{local: local, track: t}
		us.out = append(us.out, srcTrack{kind: string(t.Kind()), codec: name, local: local})
	}
	if len(us.out) == 0 {
		return nil, fmt.Errorf("%w: %s has no track WebRTC carries (H.264, VP8, VP9, Opus)", ErrCodec, st.Path())
	}
	rd, err := st.AddReader(readerProtocol)
	if err != nil {
		return nil, err
	}
	us.rd = rd
	ctx, cancel := context.WithCancel(context.Background())
	us.cancel = cancel
	go us.run(ctx, s)
	return us, nil
}

func (us *unitSource) run(ctx context.Context, s *Server) {
	defer close(us.ended)
	defer us.rd.Close()
	for {
		u, _, err := us.rd.Next(ctx)
		if err != nil {
			return
		}
		t := us.samples[u.Track]
		if t == nil {
			continue
		}
		if err := t.write(u); err == nil {
			s.forwarded.Add(uint64(us.viewers.Load()))
		}
	}
}

// write packetizes one unit.
func (t *sampleTrack) write(u *stream.Unit) error {
	dur := time.Second / 30
	if t.track.Kind() == stream.Audio {
		dur = 20 * time.Millisecond
	}
	if t.started && u.DTS > t.lastDTS {
		dur = time.Duration(float64(u.DTS-t.lastDTS) / float64(t.track.ClockRate) * float64(time.Second))
	}
	t.started, t.lastDTS = true, u.DTS
	data := u.Payload
	if t.track.Codec == stream.H264 {
		data = annexB(u, t.track)
	}
	if err := t.local.WriteSample(media.Sample{Data: data, Duration: dur}); err != nil {
		return fmt.Errorf("whip: write sample: %w", err)
	}
	return nil
}

// annexB writes an H.264 access unit with start codes, putting the
// track's SPS and PPS before a keyframe that does not carry its own.
func annexB(u *stream.Unit, t *stream.Track) []byte {
	sc := []byte{0, 0, 0, 1}
	var out []byte
	if u.Key && len(t.SPS) > 0 && len(t.PPS) > 0 && !hasNALU(u.NALUs, 7) {
		out = append(append(append(out, sc...), t.SPS...), sc...)
		out = append(out, t.PPS...)
	}
	for _, n := range u.NALUs {
		out = append(append(out, sc...), n...)
	}
	return out
}

func hasNALU(nalus [][]byte, typ byte) bool {
	for _, n := range nalus {
		if len(n) > 0 && n[0]&0x1f == typ {
			return true
		}
	}
	return false
}

func (us *unitSource) tracks() []srcTrack         { return us.out }
func (us *unitSource) keyframe()                  {} // an RTMP publisher cannot be asked
func (us *unitSource) done() <-chan struct{}      { return us.ended }
func (us *unitSource) viewerCount() *atomic.Int32 { return &us.viewers }
