package sfu

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/transport/v5/vnet"
	"github.com/pion/webrtc/v4"
	"github.com/switchboardhq/switchboard/internal/webrtc/payload"
)

// lab is an SFU and its clients on a pion vnet: no sockets, and a router
// whose filter can drop packets.
type lab struct {
	t      *testing.T
	sfu    *SFU
	router *vnet.Router
	nextIP atomic.Int32
	drop   atomic.Pointer[func(vnet.Chunk) bool] // true drops
}

func newLab(t *testing.T, cfg Config) *lab {
	t.Helper()
	l := &lab{t: t}
	r, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "10.0.0.0/24", LoggerFactory: logging.NewDefaultLoggerFactory()})
	if err != nil {
		t.Fatal(err)
	}
	r.AddChunkFilter(func(c vnet.Chunk) bool {
		if f := l.drop.Load(); f != nil && (*f)(c) {
			return false
		}
		return true
	})
	l.router = r
	cfg.Net = l.newNet()
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l.sfu = s
	t.Cleanup(func() {
		_ = s.Close()
		_ = r.Stop()
	})
	return l
}

func (l *lab) newNet() *vnet.Net {
	n, _ := l.newNetIP()
	return n
}

func (l *lab) newNetIP() (*vnet.Net, string) {
	ip := fmt.Sprintf("10.0.0.%d", 10+l.nextIP.Add(1))
	n, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{ip}})
	if err != nil {
		l.t.Fatal(err)
	}
	if err := l.router.AddNet(n); err != nil {
		l.t.Fatal(err)
	}
	return n, ip
}

// peer is a pion client of the SFU: a publishing and a subscribing
// connection, and what it received.
type peer struct {
	t    *testing.T
	lab  *lab
	id   string
	room string
	ip   string
	api  *webrtc.API

	pub *webrtc.PeerConnection
	sub *webrtc.PeerConnection

	mu       sync.Mutex
	closed   bool // set by the test's cleanup: offers are ignored
	events   []event
	received map[string]*recvTrack // by SFU track id
	wg       sync.WaitGroup
}

type event struct {
	name string
	data []byte
}

type recvTrack struct {
	kind    webrtc.RTPCodecType
	packets []rtp.Packet
}

func (l *lab) join(id, room string, publish bool) *peer {
	t := l.t
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.AudioLevelURI}, webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	n, ip := l.newNetIP()
	se.SetNet(n)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	p := &peer{t: t, lab: l, id: id, room: room, ip: ip, received: map[string]*recvTrack{},
		api: webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))}
	sub, err := p.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	p.sub = sub
	sub.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		rt := &recvTrack{kind: tr.Kind()}
		p.mu.Lock()
		p.received[tr.ID()] = rt
		p.mu.Unlock()
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			p.mu.Lock()
			rt.packets = append(rt.packets, *pkt)
			p.mu.Unlock()
		}
	})
	t.Cleanup(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		_ = sub.Close()
		if p.pub != nil {
			_ = p.pub.Close()
		}
		p.wg.Wait()
	})
	if _, err := l.sfu.Join(context.Background(), JoinRequest{Room: room, Participant: id, User: "u-" + id, CanPublish: publish}, p); err != nil {
		t.Fatalf("join %s: %v", id, err)
	}
	return p
}

// Signal implements Signaler: offers are answered at once, on their own
// goroutine; everything is recorded.
func (p *peer) Signal(name string, data any) {
	b, _ := json.Marshal(data)
	p.mu.Lock()
	p.events = append(p.events, event{name, b})
	p.mu.Unlock()
	if name != EventOffer {
		return
	}
	var o struct{ SDP string }
	_ = json.Unmarshal(b, &o)
	p.mu.Lock()
	if p.closed { // the test is over
		p.mu.Unlock()
		return
	}
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		if err := p.answerOffer(o.SDP); err != nil {
			p.t.Logf("%s: answering the SFU's offer: %v", p.id, err)
		}
	}()
}

var answerMu sync.Mutex // answers of one peer in order

func (p *peer) answerOffer(sdp string) error {
	answerMu.Lock()
	defer answerMu.Unlock()
	if err := p.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return err
	}
	ans, err := p.sub.CreateAnswer(nil)
	if err != nil {
		return err
	}
	done := webrtc.GatheringCompletePromise(p.sub)
	if err := p.sub.SetLocalDescription(ans); err != nil {
		return err
	}
	<-done
	return p.lab.sfu.Answer(context.Background(), p.room, p.id, p.sub.LocalDescription().SDP)
}

// eventsNamed returns the recorded events of one name.
func (p *peer) eventsNamed(name string) []event {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []event
	for _, e := range p.events {
		if e.name == name {
			out = append(out, e)
		}
	}
	return out
}

// track returns a copy of what was received of an SFU track.
func (p *peer) track(id string) []rtp.Packet {
	p.mu.Lock()
	defer p.mu.Unlock()
	rt := p.received[id]
	if rt == nil {
		return nil
	}
	return append([]rtp.Packet(nil), rt.packets...)
}

// publish negotiates the publishing connection with the given senders
// added by add.
func (p *peer) publish(add func(pc *webrtc.PeerConnection)) {
	t := p.t
	t.Helper()
	pc, err := p.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	p.pub = pc
	add(pc)
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-done
	answer, err := p.lab.sfu.Offer(context.Background(), p.room, p.id, pc.LocalDescription().SDP)
	if err != nil {
		t.Fatalf("offer: %v", err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
}

// source sends synthetic VP8 (or Opus) on one track: one stream, or
// three simulcast layers. VP8 frames carry a descriptor with a 15-bit
// picture id and TL0PICIDX, a keyframe header with the layer's size, and
// the layer's number in the byte after it so a receiver can tell layers
// apart. A keyframe is sent every keyEvery frames and on PLI.
type source struct {
	tracks   []*webrtc.TrackLocalStaticRTP
	tr       *webrtc.RTPTransceiver
	sender   *webrtc.RTPSender
	audio    bool
	keyEvery int
	forceKey [3]atomic.Bool
	plis     atomic.Int32
	level    atomic.Int32 // audio level sent, -dBov (0 loudest, 127 silence)
	stop     chan struct{}
	done     sync.WaitGroup
}

func addVideo(t *testing.T, pc *webrtc.PeerConnection, id string, rids ...string) *source {
	t.Helper()
	s := &source{keyEvery: 1000, stop: make(chan struct{})}
	if len(rids) == 0 {
		rids = []string{""}
	}
	for _, rid := range rids {
		var opts []func(*webrtc.TrackLocalStaticRTP)
		if rid != "" {
			opts = append(opts, webrtc.WithRTPStreamID(rid))
		}
		tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, id, "stream-"+id, opts...)
		if err != nil {
			t.Fatal(err)
		}
		s.tracks = append(s.tracks, tr)
	}
	x, err := pc.AddTransceiverFromTrack(s.tracks[0], webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		t.Fatal(err)
	}
	s.tr, s.sender = x, x.Sender()
	for _, tr := range s.tracks[1:] {
		if err := s.sender.AddEncoding(tr); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func addAudio(t *testing.T, pc *webrtc.PeerConnection, id string) *source {
	t.Helper()
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, id, "stream-"+id)
	if err != nil {
		t.Fatal(err)
	}
	x, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		t.Fatal(err)
	}
	return &source{tracks: []*webrtc.TrackLocalStaticRTP{tr}, tr: x, sender: x.Sender(), audio: true, stop: make(chan struct{})}
}

// start sends until stopped: 30 frames per second of 3 packets per layer
// (video) or 50 packets per second (audio).
func (s *source) start(t *testing.T) {
	var midID, ridID, levelID uint8
	for _, ext := range s.sender.GetParameters().HeaderExtensions {
		switch ext.URI {
		case sdp.AudioLevelURI:
			levelID = uint8(ext.ID)
		case sdp.SDESMidURI:
			midID = uint8(ext.ID)
		case sdp.SDESRTPStreamIDURI:
			ridID = uint8(ext.ID)
		}
	}
	mid := ""
	s.done.Add(1 + len(s.tracks))
	for i, tr := range s.tracks {
		go func() { // keyframe requests for this layer
			defer s.done.Done()
			for {
				var pkts []rtcp.Packet
				var err error
				if tr.RID() == "" {
					pkts, _, err = s.sender.ReadRTCP()
				} else {
					pkts, _, err = s.sender.ReadSimulcastRTCP(tr.RID())
				}
				if err != nil {
					return
				}
				for _, p := range pkts {
					if _, ok := p.(*rtcp.PictureLossIndication); ok {
						s.plis.Add(1)
						s.forceKey[i].Store(true)
					}
				}
			}
		}()
	}
	go func() {
		defer s.done.Done()
		interval := 33 * time.Millisecond
		if s.audio {
			interval = 20 * time.Millisecond
		}
		tick := time.NewTicker(interval)
		defer tick.Stop()
		type state struct {
			seq uint16
			ts  uint32
			pic uint16
			tl0 uint8
		}
		var st [3]state
		for i := range st { // different starting points per layer
			st[i] = state{seq: uint16(10000*i + 65500), ts: uint32(1_000_000 * (i + 1)), pic: uint16(32700 - 1000*i), tl0: uint8(250 - 10*i)}
		}
		for n := 0; ; n++ {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			if mid == "" {
				mid = s.tr.Mid()
			}
			for i, tr := range s.tracks {
				var pkts [][]byte
				if s.audio {
					pkts = [][]byte{{0xfc, 0x01, 0x02}}
				} else {
					key := n%s.keyEvery == 0 || s.forceKey[i].Swap(false)
					pkts = vp8Frame(key, st[i].pic, st[i].tl0, i)
				}
				for j, pl := range pkts {
					pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: st[i].seq, Timestamp: st[i].ts, Marker: j == len(pkts)-1}, Payload: pl}
					if midID != 0 && mid != "" {
						_ = pkt.Header.SetExtension(midID, []byte(mid))
					}
					if levelID != 0 && s.audio {
						b, _ := rtp.AudioLevelExtension{Level: uint8(s.level.Load()), Voice: true}.Marshal()
						_ = pkt.Header.SetExtension(levelID, b)
					}
					if ridID != 0 && tr.RID() != "" {
						_ = pkt.Header.SetExtension(ridID, []byte(tr.RID()))
					}
					_ = tr.WriteRTP(pkt)
					st[i].seq++
				}
				if s.audio {
					st[i].ts += 960
				} else {
					st[i].ts += 3000
					st[i].pic = (st[i].pic + 1) & 0x7fff
					st[i].tl0++
				}
			}
		}
	}()
	t.Cleanup(s.halt)
}

func (s *source) halt() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
}

// vp8Frame builds the packets of one synthetic VP8 frame of a layer.
func vp8Frame(key bool, pic uint16, tl0 uint8, layer int) [][]byte {
	desc := func(start bool) []byte {
		b0 := byte(0x80)
		if start {
			b0 |= 0x10
		}
		return []byte{b0, 0xe0, 0x80 | byte(pic>>8), byte(pic), tl0, 0x00}
	}
	w := 320 << layer
	h := 180 << layer
	var first []byte
	if key {
		first = append(desc(true), 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, byte(w), byte(w>>8), byte(h), byte(h>>8), byte(layer))
	} else {
		first = append(desc(true), 0x01, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, byte(layer))
	}
	pad := make([]byte, 150+450*layer) // about 0.13, 0.5 and 0.8 Mbit/s
	return [][]byte{append(first, pad...), append(desc(false), append([]byte{byte(layer)}, pad...)...), append(desc(false), byte(layer))}
}

// layerOf reads the layer number a vp8Frame packet carries.
func layerOf(p *rtp.Packet) int {
	d, err := payload.ParseVP8(p.Payload)
	if err != nil {
		return -1
	}
	if d.Start {
		return int(p.Payload[d.HeaderSize+10])
	}
	return int(p.Payload[d.HeaderSize])
}

// waitFor polls cond until it holds or the time runs out.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
