package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// The sfu scenario: --sfu-publishers pion peers each publish one synthetic
// VP8 video track into one room, --conns pion peers join it to receive
// every track, and the tool measures what the server's SFU forwards: video
// streams, packets per second, server CPU per forwarded packet, loss (from
// RTP sequence numbers at the receivers) and the time from a subscriber's
// join to its first packet of each track. Calls must be on in the server:
// a server the tool starts gets --webrtc, --webrtc-loopback and a free
// --webrtc-udp-port.

// sfuRoom is the room every bench participant joins.
const sfuRoom = "bench-sfu"

// Synthetic video: 30 frames per second of three packets each (about 0.5
// Mbit/s), a keyframe every 2 s and whenever a receiver asks (PLI).
const (
	sfuFPS      = 30
	sfuKeyEvery = 2 * sfuFPS
)

// sfuServerArgs turns calls on in a server the tool starts, on loopback
// with one UDP port.
func sfuServerArgs() ([]string, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sfu: free UDP port: %w", err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	_ = c.Close()
	return []string{"--webrtc", "--webrtc-loopback", "--webrtc-udp-port", strconv.Itoa(port)}, nil
}

func runSFU(ctx context.Context, e *env) (targetResult, error) {
	var res targetResult
	api, err := sfuPionAPI()
	if err != nil {
		return res, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var parts []*sfuPeer
	defer func() {
		for _, p := range parts {
			p.close()
		}
	}()
	// Publishers first, so that each subscriber's first offer carries every
	// track.
	var sources []*sfuSource
	for i := range e.o.sfuPublishers {
		p, err := joinSFU(ctx, api, e.t.Addr)
		if err != nil {
			return res, fmt.Errorf("publisher %d: %w", i, err)
		}
		parts = append(parts, p)
		src, err := p.publish(ctx)
		if err != nil {
			return res, fmt.Errorf("publisher %d: %w", i, err)
		}
		sources = append(sources, src)
	}
	t0 := time.Now()
	var subs []*sfuPeer
	for i := range e.o.conns {
		p, err := joinSFU(ctx, api, e.t.Addr)
		if err != nil {
			return res, fmt.Errorf("subscriber %d: %w", i, err)
		}
		parts = append(parts, p)
		subs = append(subs, p)
	}
	// Every subscriber receives every track.
	want := e.o.sfuPublishers
	deadline := time.Now().Add(e.o.setupTimeout)
	for {
		ready := 0
		for _, s := range subs {
			if s.tracksReceiving() >= want {
				ready++
			}
		}
		if ready == len(subs) {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("sfu: after %s, %d of %d subscribers receive all %d tracks", e.o.setupTimeout, ready, len(subs), want)
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return res, err
		}
	}
	setup := time.Since(t0)
	fmt.Fprintf(os.Stderr, "sfu: %d publishers, %d subscribers receiving after %.1fs; measuring %s\n", len(sources), len(subs), setup.Seconds(), e.o.duration)
	if err := sleepCtx(ctx, e.o.warmup); err != nil {
		return res, err
	}
	before := sfuCount(subs)
	var sent0 uint64
	for _, s := range sources {
		sent0 += s.sent.Load()
	}
	m := e.startMeter()
	if err := sleepCtx(ctx, e.o.duration); err != nil {
		return res, err
	}
	mm := e.stopMeter(m)
	after := sfuCount(subs)
	var sent1 uint64
	for _, s := range sources {
		sent1 += s.sent.Load()
	}
	got, lost := after.got-before.got, after.lost-before.lost
	streams := len(sources) * len(subs)
	var firsts []float64
	for _, s := range subs {
		firsts = append(firsts, s.firstPacketMs()...)
	}
	slices.Sort(firsts)
	s := &res.Summary
	s.add("publishers", float64(len(sources)), "", "")
	s.add("subscribers", float64(len(subs)), "", "")
	s.add("video_streams", float64(streams), "", "")
	s.add("sent_per_s", float64(sent1-sent0)/mm.wall, "pkt/s", "")
	s.add("forwarded_per_s", float64(got)/mm.wall, "pkt/s", "+")
	s.add("loss_pct", 100*float64(lost)/math.Max(1, float64(got+lost)), "%", "-")
	s.add("server_cpu_pct", mm.srvPct, "%core", "-")
	s.add("cpu_per_packet_us", 1e6*mm.srvCPU/math.Max(1, float64(got)), "µs", "-")
	s.add("streams_per_core", float64(streams)/math.Max(mm.srvPct/100, 1e-9), "", "+")
	s.add("first_packet_p50_ms", quantile(firsts, 0.50), "ms", "-")
	s.add("first_packet_p99_ms", quantile(firsts, 0.99), "ms", "-")
	s.add("setup_s", setup.Seconds(), "s", "")
	s.add("client_cpu_pct", mm.cliPct, "%core", "")
	s.add("other_cpu_pct", mm.otherPct, "%core", "")
	s.add("server_rss_kib", mm.serverRSSKiB, "KiB", "")
	if lost > 0 {
		e.notes = append(e.notes, fmt.Sprintf("%d packets lost at the receivers: streams_per_core is not a figure at 0 %% loss", lost))
	}
	return res, nil
}

// quantile of sorted values (NaN when empty).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// sfuPionAPI is the pion side of the load tool: default codecs and
// interceptors (NACK, RTCP reports, TWCC), candidates on loopback only.
func sfuPionAPI() (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, err
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// sfuPeer is one participant: its signaling WebSocket and its two
// PeerConnections with the SFU.
type sfuPeer struct {
	api    *webrtc.API
	nc     net.Conn
	wmu    sync.Mutex // serializes writes to nc
	nextID atomic.Int64

	mu      sync.Mutex
	waiting map[int64]chan sfuReply
	joined  time.Time
	tracks  map[string]*sfuTrack // by the receiver's track id

	closed atomic.Bool

	sub *webrtc.PeerConnection // receives, created at the first offer
	pub *webrtc.PeerConnection // publishes, when publishing
}

type sfuReply struct {
	result json.RawMessage
	err    error
}

// sfuTrack counts one received track's packets.
type sfuTrack struct {
	first   time.Duration // from the join to the first packet
	got     atomic.Uint64
	lost    atomic.Uint64
	lastSeq uint16
}

// joinSFU connects to the server and joins the bench room.
func joinSFU(ctx context.Context, api *webrtc.API, addr string) (*sfuPeer, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	nc, _, _, err := ws.Dial(dctx, "ws://"+addr+"/ws")
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	p := &sfuPeer{api: api, nc: nc, waiting: map[int64]chan sfuReply{}, tracks: map[string]*sfuTrack{}}
	go p.readLoop()
	p.joined = time.Now()
	if _, err := p.call(ctx, "room_join", map[string]any{"room": sfuRoom}); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// call sends a room command and waits for its result.
func (p *sfuPeer) call(ctx context.Context, command string, data map[string]any) (json.RawMessage, error) {
	id := p.nextID.Add(1)
	ch := make(chan sfuReply, 1)
	p.mu.Lock()
	p.waiting[id] = ch
	p.mu.Unlock()
	b, _ := json.Marshal(map[string]any{"id": id, "command": command, "data": data})
	// One write: a pong from the reading goroutine must not fall between
	// the frame's header and payload (wsutil writes them apart).
	frame, err := ws.CompileFrame(ws.MaskFrameInPlace(ws.NewTextFrame(b)))
	if err == nil {
		p.wmu.Lock()
		_, err = p.nc.Write(frame)
		p.wmu.Unlock()
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", command, err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("%s: %w", command, r.err)
		}
		return r.result, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("%s: no reply within 30 s", command)
	}
}

// readLoop dispatches replies to their callers and handles the pushes the
// SFU sends: offers for the receiving connection.
func (p *sfuPeer) readLoop() {
	for {
		b, err := wsutil.ReadServerText(p.nc)
		if err != nil {
			p.mu.Lock()
			for id, ch := range p.waiting {
				ch <- sfuReply{err: fmt.Errorf("connection closed: %w", err)}
				delete(p.waiting, id)
			}
			p.mu.Unlock()
			return
		}
		var m struct {
			ID     int64           `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
			Event string `json:"event"`
			Data  struct {
				SDP string `json:"sdp"`
			} `json:"data"`
		}
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		if m.ID != 0 {
			p.mu.Lock()
			ch := p.waiting[m.ID]
			delete(p.waiting, m.ID)
			p.mu.Unlock()
			if ch != nil {
				r := sfuReply{result: m.Result}
				if m.Error != nil {
					r.err = fmt.Errorf("error %d: %s", m.Error.Code, m.Error.Message)
				}
				ch <- r
			}
			continue
		}
		if m.Event == "offer" && m.Data.SDP != "" {
			go p.answer(m.Data.SDP)
		}
	}
}

// answer answers one of the SFU's offers for the receiving connection.
// Offers come one at a time, so answers never overlap.
func (p *sfuPeer) answer(sdp string) {
	if err := p.answerErr(sdp); err != nil && !p.closed.Load() {
		fmt.Fprintln(os.Stderr, "sfu: answering an offer:", err)
	}
}

func (p *sfuPeer) answerErr(sdp string) error {
	p.mu.Lock()
	if p.sub == nil {
		pc, err := p.api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			p.mu.Unlock()
			return err
		}
		pc.OnTrack(p.receive)
		p.sub = pc
	}
	pc := p.sub
	p.mu.Unlock()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return err
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return err
	}
	local, err := gathered(pc, ans)
	if err != nil {
		return err
	}
	_, err = p.call(context.Background(), "room_answer", map[string]any{"room": sfuRoom, "sdp": local})
	return err
}

// gathered sets d as pc's local description and returns it once every
// candidate is in it (the bench sends no trickled candidates).
func gathered(pc *webrtc.PeerConnection, d webrtc.SessionDescription) (string, error) {
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(d); err != nil {
		return "", err
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return "", errors.New("ICE gathering did not complete")
	}
	return pc.LocalDescription().SDP, nil
}

// receive counts a received track's packets and sequence gaps.
func (p *sfuPeer) receive(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	st := &sfuTrack{}
	first := true
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		if first {
			first = false
			st.first = time.Since(p.joined)
			st.lastSeq = pkt.SequenceNumber
			st.got.Add(1)
			p.mu.Lock()
			p.tracks[tr.ID()] = st
			p.mu.Unlock()
			continue
		}
		// A jump forward counts the packets skipped as lost; an older
		// packet (a retransmission after NACK, or reordering) fills one.
		d := pkt.SequenceNumber - st.lastSeq
		switch {
		case d == 0:
		case d < 0x8000:
			if d > 1 {
				st.lost.Add(uint64(d - 1))
			}
			st.lastSeq = pkt.SequenceNumber
			st.got.Add(1)
		default:
			if st.lost.Load() > 0 {
				st.lost.Add(^uint64(0))
			}
			st.got.Add(1)
		}
	}
}

func (p *sfuPeer) tracksReceiving() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.tracks)
}

// firstPacketMs lists the time from the join to each track's first packet.
func (p *sfuPeer) firstPacketMs() []float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []float64
	for _, t := range p.tracks {
		out = append(out, float64(t.first.Microseconds())/1000)
	}
	return out
}

type sfuCounts struct{ got, lost uint64 }

func sfuCount(peers []*sfuPeer) sfuCounts {
	var c sfuCounts
	for _, p := range peers {
		p.mu.Lock()
		for _, t := range p.tracks {
			c.got += t.got.Load()
			c.lost += t.lost.Load()
		}
		p.mu.Unlock()
	}
	return c
}

func (p *sfuPeer) close() {
	p.closed.Store(true)
	p.mu.Lock()
	pcs := []*webrtc.PeerConnection{p.sub, p.pub}
	p.mu.Unlock()
	for _, pc := range pcs {
		if pc != nil {
			_ = pc.Close()
		}
	}
	_ = p.nc.Close()
}

// sfuSource sends synthetic VP8 on one track.
type sfuSource struct {
	track *webrtc.TrackLocalStaticRTP
	// pads are the filler sizes of each frame's packets (vp8Frame).
	pads []int
	// stamp puts the send time in the last 8 bytes of each packet's
	// payload (see stampSent).
	stamp    bool
	forceKey atomic.Bool
	sent     atomic.Uint64
	bytes    atomic.Uint64 // RTP payload bytes sent
	keyReqs  atomic.Uint64 // keyframe requests (PLI, FIR) received
	keys     atomic.Uint64 // keyframes sent
}

var sfuPads = []int{600, 600, 200}

// publish opens the publishing connection with one VP8 track and starts
// sending on it until ctx ends.
func (p *sfuPeer) publish(ctx context.Context) (*sfuSource, error) {
	pc, err := p.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.pub = pc
	p.mu.Unlock()
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "cam", "bench")
	if err != nil {
		return nil, err
	}
	tr, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return nil, err
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return nil, err
	}
	local, err := gathered(pc, offer)
	if err != nil {
		return nil, err
	}
	r, err := p.call(ctx, "room_offer", map[string]any{"room": sfuRoom, "sdp": local})
	if err != nil {
		return nil, err
	}
	var ans struct {
		SDP string `json:"sdp"`
	}
	if err := json.Unmarshal(r, &ans); err != nil {
		return nil, fmt.Errorf("room_offer result %s: %w", r, err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans.SDP}); err != nil {
		return nil, err
	}
	src := &sfuSource{track: track, pads: sfuPads}
	go src.readRTCP(tr.Sender())
	go src.run(ctx)
	return src, nil
}

// readRTCP turns the receivers' keyframe requests into a keyframe.
func (s *sfuSource) readRTCP(sender *webrtc.RTPSender) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, pk := range pkts {
			switch pk.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				s.keyReqs.Add(1)
				s.forceKey.Store(true)
			}
		}
	}
}

// run sends sfuFPS frames per second until ctx ends.
func (s *sfuSource) run(ctx context.Context) {
	tick := time.NewTicker(time.Second / sfuFPS)
	defer tick.Stop()
	var seq uint16
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		key := i%sfuKeyEvery == 0 || s.forceKey.Swap(false)
		if key {
			s.keys.Add(1)
		}
		pkts := vp8Frame(key, uint16(i&0x7fff), uint8(i), s.pads)
		for j, payload := range pkts {
			seq++
			h := rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(i * 90000 / sfuFPS), Marker: j == len(pkts)-1}
			if s.stamp {
				stampSent(payload, time.Now())
			}
			if s.track.WriteRTP(&rtp.Packet{Header: h, Payload: payload}) == nil {
				s.sent.Add(1)
				s.bytes.Add(uint64(len(payload)))
			}
		}
	}
}

// vp8Frame builds the packets of one synthetic 640x360 VP8 frame: a
// payload descriptor with a 15-bit picture id and TL0PICIDX, a keyframe
// header when key, and pads[i] bytes of filler in packet i.
func vp8Frame(key bool, pic uint16, tl0 uint8, pads []int) [][]byte {
	desc := func(start bool) []byte {
		b0 := byte(0x80)
		if start {
			b0 |= 0x10
		}
		return []byte{b0, 0xe0, 0x80 | byte(pic>>8), byte(pic), tl0, 0x00}
	}
	const w, h = 640, 360
	var first []byte
	if key {
		first = append(desc(true), 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, byte(w&0xff), byte(w>>8), byte(h&0xff), byte(h>>8))
	} else {
		first = append(desc(true), 0x01, 0x00, 0x00)
	}
	out := make([][]byte, len(pads))
	for i, n := range pads {
		if i == 0 {
			out[i] = append(first, make([]byte, n)...)
		} else {
			out[i] = append(desc(false), make([]byte, n)...)
		}
	}
	return out
}
