package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// The stream scenario: one pion peer publishes a synthetic VP8 track of
// about 2 Mbit/s over WHIP to /whip/live/bench, --conns pion peers watch it
// over WHEP, and the tool measures what the server's WHEP relay costs and
// delivers: packets sent and received, loss (from RTP sequence numbers),
// the latency from the publisher's send to a viewer's receive (each
// packet carries its send time), the server's CPU with the publisher alone
// and with the viewers, and so the CPU of one viewer, and each viewer's
// time from its WHEP request to its first complete keyframe.

// streamPath is the stream the scenario publishes and watches.
const streamPath = "live/bench"

// streamPads make a frame of eight packets of about 1.1 kB: 30 frames per
// second of them are about 2.1 Mbit/s of RTP payload.
var streamPads = []int{1100, 1100, 1100, 1100, 1100, 1100, 1100, 1100}

// stampSent writes t, in Unix nanoseconds, in the last 8 bytes of an RTP
// payload (the filler of vp8Frame).
func stampSent(payload []byte, t time.Time) {
	if len(payload) >= 8 {
		binary.BigEndian.PutUint64(payload[len(payload)-8:], uint64(t.UnixNano()))
	}
}

// sentAt reads the time stampSent wrote.
func sentAt(payload []byte) (time.Time, bool) {
	if len(payload) < 8 {
		return time.Time{}, false
	}
	ns := binary.BigEndian.Uint64(payload[len(payload)-8:])
	if ns == 0 || ns > math.MaxInt64 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(ns)), true
}

func runStream(ctx context.Context, e *env) (targetResult, error) {
	var res targetResult
	api, err := sfuPionAPI()
	if err != nil {
		return res, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	base := "http://" + e.t.Addr
	var viewers []*streamViewer
	pub, err := whipPublish(ctx, api, base+"/whip/"+streamPath, e.t.APIKey)
	if err != nil {
		return res, fmt.Errorf("stream: publisher: %w", err)
	}
	closeAll := sync.OnceFunc(func() {
		for _, v := range viewers {
			v.close()
		}
		pub.close()
	})
	defer closeAll()
	// The publisher alone, for the ingest's own CPU.
	if err := sleepCtx(ctx, time.Second); err != nil {
		return res, err
	}
	m := e.startMeter()
	if err := sleepCtx(ctx, max(e.o.warmup, time.Second)); err != nil {
		return res, err
	}
	ingest := e.stopMeter(m)

	t0 := time.Now()
	for i := range e.o.conns {
		v, err := whepView(ctx, api, base+"/whep/"+streamPath, e.t.APIKey, e.o.setupTimeout)
		if err != nil {
			return res, fmt.Errorf("stream: viewer %d: %w", i, err)
		}
		viewers = append(viewers, v)
	}
	deadline := time.Now().Add(e.o.setupTimeout)
	for {
		ready := 0
		for _, v := range viewers {
			if v.firstFrameMs() >= 0 {
				ready++
			}
		}
		if ready == len(viewers) {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("stream: after %s, %d of %d viewers have a first frame", e.o.setupTimeout, ready, len(viewers))
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return res, err
		}
	}
	setup := time.Since(t0)
	fmt.Fprintf(os.Stderr, "stream: %d viewers receiving after %.1fs; measuring %s\n", len(viewers), setup.Seconds(), e.o.duration)
	if err := sleepCtx(ctx, e.o.warmup); err != nil {
		return res, err
	}
	before := streamCount(viewers, true)
	sent0, bytes0 := pub.src.sent.Load(), pub.src.bytes.Load()
	keyReqs0, keys0 := pub.src.keyReqs.Load(), pub.src.keys.Load()
	m = e.startMeter()
	if err := sleepCtx(ctx, e.o.duration); err != nil {
		return res, err
	}
	mm := e.stopMeter(m)
	after := streamCount(viewers, false)
	sent, sentBytes := pub.src.sent.Load()-sent0, pub.src.bytes.Load()-bytes0
	var firsts []float64
	for _, v := range viewers {
		firsts = append(firsts, v.firstFrameMs())
	}
	slices.Sort(firsts)
	fig := streamFigures{
		viewers: len(viewers), wall: mm.wall, sent: sent,
		got: after.got - before.got, lost: after.lost - before.lost,
		srvPct: mm.srvPct, ingestPct: ingest.srvPct,
	}
	s := &res.Summary
	s.add("viewers", float64(len(viewers)), "", "")
	s.add("sent_pkts", float64(sent), "pkt", "")
	s.add("received_pkts", float64(fig.got), "pkt", "")
	s.add("sent_mbit_s", float64(sentBytes)*8/1e6/mm.wall, "Mbit/s", "")
	s.add("received_per_s", float64(fig.got)/mm.wall, "pkt/s", "+")
	s.add("loss_pct", fig.lossPct(), "%", "-")
	s.add("latency_p50_ms", float64(after.lat.quantile(0.50))/1000, "ms", "-")
	s.add("latency_p99_ms", float64(after.lat.quantile(0.99))/1000, "ms", "-")
	s.add("latency_max_ms", float64(after.lat.Max)/1000, "ms", "-")
	s.add("server_cpu_pct", mm.srvPct, "%core", "-")
	s.add("server_cpu_ingest_pct", ingest.srvPct, "%core", "-")
	s.add("cpu_per_viewer_pct", fig.cpuPerViewer(), "%core", "-")
	s.add("viewers_per_core", fig.viewersPerCore(), "", "+")
	s.add("first_frame_p50_ms", quantile(firsts, 0.50), "ms", "-")
	s.add("first_frame_p99_ms", quantile(firsts, 0.99), "ms", "-")
	s.add("setup_s", setup.Seconds(), "s", "")
	s.add("setup_key_requests", float64(keyReqs0), "count", "")
	s.add("setup_keyframes", float64(keys0), "count", "")
	s.add("client_cpu_pct", mm.cliPct, "%core", "")
	s.add("other_cpu_pct", mm.otherPct, "%core", "")
	s.add("server_rss_kib", mm.serverRSSKiB, "KiB", "")
	e.checkSaturation(mm, "stream")
	if fig.lost > 0 {
		e.notes = append(e.notes, fmt.Sprintf("%d packets lost at the viewers: viewers_per_core is not a figure at 0 %% loss", fig.lost))
	}
	if fig.got+fig.lost < fig.sent*uint64(fig.viewers)*9/10 {
		e.notes = append(e.notes, fmt.Sprintf("the viewers received %d packets of the %d sent to %d viewers", fig.got, fig.sent, fig.viewers))
	}
	if e.o.hlsReaders > 0 {
		closeAll() // the LL-HLS readers are measured alone
		if err := runHLS(ctx, e, s); err != nil {
			return res, err
		}
	}
	return res, nil
}

// streamFigures derives the scenario's ratios from its counts.
type streamFigures struct {
	viewers   int
	wall      float64 // s
	sent      uint64  // packets the publisher sent
	got, lost uint64  // packets all viewers received and missed
	srvPct    float64 // server CPU with the viewers, % of a core
	ingestPct float64 // server CPU with the publisher alone
}

func (f streamFigures) lossPct() float64 {
	return 100 * float64(f.lost) / math.Max(1, float64(f.got+f.lost))
}

// cpuPerViewer is the server CPU the viewers added, per viewer, in % of a
// core (NaN without viewers).
func (f streamFigures) cpuPerViewer() float64 {
	if f.viewers == 0 {
		return math.NaN()
	}
	return math.Max(f.srvPct-f.ingestPct, 0) / float64(f.viewers)
}

// viewersPerCore is how many viewers one core would serve at this CPU per
// viewer, the ingest aside.
func (f streamFigures) viewersPerCore() float64 {
	c := f.cpuPerViewer()
	if math.IsNaN(c) || c <= 0 {
		return math.NaN()
	}
	return 100 / c
}

// postSDP posts an SDP offer to a WHIP or WHEP endpoint and returns the
// answer and the session's URL. The server answers once it has its
// candidates: 30 s is far beyond that.
func postSDP(ctx context.Context, url, key, offer string) (answer, session string, status int, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(offer))
	if err != nil {
		return "", "", 0, err
	}
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", "", resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusCreated {
		return "", "", resp.StatusCode, fmt.Errorf("POST %s: HTTP %d: %.200s", url, resp.StatusCode, b)
	}
	loc, err := resp.Location()
	if err != nil {
		return "", "", resp.StatusCode, fmt.Errorf("POST %s: %w", url, err)
	}
	return string(b), loc.String(), resp.StatusCode, nil
}

// deleteSession ends a WHIP or WHEP session, best effort.
func deleteSession(url, key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, url, nil)
	if err != nil {
		return
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		_ = resp.Body.Close()
	}
}

// streamPublisher is the WHIP publisher.
type streamPublisher struct {
	pc           *webrtc.PeerConnection
	src          *sfuSource
	session, key string
}

// whipPublish connects a WHIP publisher of synthetic VP8 to url and
// starts sending once the connection is up.
func whipPublish(ctx context.Context, api *webrtc.API, url, key string) (*streamPublisher, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	p := &streamPublisher{pc: pc, key: key}
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "bench")
	if err != nil {
		p.close()
		return nil, err
	}
	tr, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		p.close()
		return nil, err
	}
	connected := make(chan struct{})
	var once sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		p.close()
		return nil, err
	}
	local, err := gathered(pc, offer)
	if err != nil {
		p.close()
		return nil, err
	}
	ans, session, _, err := postSDP(ctx, url, key, local)
	if err != nil {
		p.close()
		return nil, err
	}
	p.session = session
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans}); err != nil {
		p.close()
		return nil, err
	}
	select {
	case <-connected:
	case <-time.After(20 * time.Second):
		p.close()
		return nil, errors.New("the WHIP connection did not come up in 20 s")
	case <-ctx.Done():
		p.close()
		return nil, ctx.Err()
	}
	p.src = &sfuSource{track: track, pads: streamPads, stamp: true}
	go p.src.readRTCP(tr.Sender())
	go p.src.run(ctx)
	return p, nil
}

func (p *streamPublisher) close() {
	if p.session != "" {
		deleteSession(p.session, p.key)
	}
	_ = p.pc.Close()
}

// streamViewer is one WHEP viewer.
type streamViewer struct {
	pc           *webrtc.PeerConnection
	session, key string
	start        time.Time // the WHEP request

	mu         sync.Mutex
	seq        seqCount
	lat        hist // send to receive, µs, while recording
	recording  bool
	firstFrame time.Duration // from start to the first whole keyframe; -1 until then
}

// whepView starts a WHEP viewer of url. Until the stream is live the
// endpoint answers 404; whepView tries again until wait has passed.
func whepView(ctx context.Context, api *webrtc.API, url, key string, wait time.Duration) (*streamViewer, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	v := &streamViewer{pc: pc, key: key, firstFrame: -1}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		v.close()
		return nil, err
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { v.receive(tr) })
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		v.close()
		return nil, err
	}
	local, err := gathered(pc, offer)
	if err != nil {
		v.close()
		return nil, err
	}
	deadline := time.Now().Add(wait)
	var ans string
	for {
		v.start = time.Now()
		var status int
		ans, v.session, status, err = postSDP(ctx, url, key, local)
		if err == nil {
			break
		}
		if status != http.StatusNotFound || time.Now().After(deadline) {
			v.close()
			return nil, err
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			v.close()
			return nil, err
		}
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans}); err != nil {
		v.close()
		return nil, err
	}
	return v, nil
}

// receive reads the viewer's video track: sequence gaps, latency, the
// first whole keyframe.
func (v *streamViewer) receive(tr *webrtc.TrackRemote) {
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	var vp8 codecs.VP8Packet
	inKey := false // the frame being received started with a keyframe
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		v.mu.Lock()
		v.seq.add(pkt.SequenceNumber)
		if v.recording {
			if t, ok := sentAt(pkt.Payload); ok && !now.Before(t) {
				v.lat.record(uint64(now.Sub(t).Microseconds()))
			}
		}
		if v.firstFrame < 0 {
			if _, err := vp8.Unmarshal(pkt.Payload); err == nil && vp8.S == 1 && vp8.PID == 0 {
				inKey = len(vp8.Payload) > 0 && vp8.Payload[0]&0x01 == 0
			}
			if inKey && pkt.Marker {
				v.firstFrame = now.Sub(v.start)
			}
		}
		v.mu.Unlock()
	}
}

// firstFrameMs is the time from the WHEP request to the first whole
// keyframe, or -1.
func (v *streamViewer) firstFrameMs() float64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.firstFrame < 0 {
		return -1
	}
	return float64(v.firstFrame.Microseconds()) / 1000
}

func (v *streamViewer) close() {
	if v.session != "" {
		deleteSession(v.session, v.key)
	}
	_ = v.pc.Close()
}

// streamCounts are the viewers' counters at one moment.
type streamCounts struct {
	got, lost uint64
	lat       hist
}

// streamCount adds up the viewers' counters and merges their latencies,
// then starts (record) or stops the recording of latencies.
func streamCount(viewers []*streamViewer, record bool) streamCounts {
	var c streamCounts
	for _, v := range viewers {
		v.mu.Lock()
		c.got += v.seq.got
		c.lost += v.seq.lost
		c.lat.merge(&v.lat)
		v.recording = record
		if record {
			v.lat = hist{}
		}
		v.mu.Unlock()
	}
	return c
}

// seqCount counts received RTP packets and the gaps in their sequence
// numbers: a jump forward counts the numbers skipped as lost, an older
// packet (a retransmission or reordering) fills one, a repeat is ignored.
type seqCount struct {
	started   bool
	last      uint16
	got, lost uint64
}

func (c *seqCount) add(seq uint16) {
	if !c.started {
		c.started, c.last, c.got = true, seq, 1
		return
	}
	switch d := seq - c.last; {
	case d == 0:
	case d < 0x8000:
		c.lost += uint64(d - 1)
		c.last = seq
		c.got++
	default:
		if c.lost > 0 {
			c.lost--
		}
		c.got++
	}
}
