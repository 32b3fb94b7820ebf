package whip_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/switchboardhq/switchboard/internal/stream"
	"github.com/switchboardhq/switchboard/internal/stream/whip"
	"github.com/switchboardhq/switchboard/internal/webrtc/sfu"
)

const apiKey = "the-api-key"

var quiet = slog.New(slog.DiscardHandler)

type env struct {
	reg *stream.Registry
	srv *whip.Server
	url string
}

func newEnv(t *testing.T, mutate ...func(*whip.Options)) *env {
	t.Helper()
	s, err := sfu.New(sfu.Config{Loopback: true, Logger: quiet, VideoCodecs: []string{"h264", "vp8"}})
	if err != nil {
		t.Fatal(err)
	}
	reg := stream.NewRegistry(stream.Options{Logger: quiet})
	a, err := stream.NewAuthorizer(stream.AuthOptions{APIKeys: []string{apiKey}})
	if err != nil {
		t.Fatal(err)
	}
	opts := whip.Options{Registry: reg, Authorizer: a, Connections: s, Logger: quiet, GatherTimeout: time.Second}
	for _, m := range mutate {
		m(&opts)
	}
	w := whip.New(opts)
	hs := httptest.NewServer(w)
	t.Cleanup(func() {
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Close(ctx); err != nil {
			t.Error(err)
		}
		reg.Close()
		_ = s.Close()
	})
	return &env{reg: reg, srv: w, url: hs.URL}
}

// client returns a pion PeerConnection for the test's publishers and
// viewers, on loopback.
func client(t *testing.T) *webrtc.PeerConnection {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// post sends body to url and returns the status, body and Location.
func post(t *testing.T, url, key, ctype, body string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), res.Header.Get("Location")
}

// offer returns pc's offer with its candidates.
func offer(t *testing.T, pc *webrtc.PeerConnection) string {
	t.Helper()
	o, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(o); err != nil {
		t.Fatal(err)
	}
	<-done
	return pc.LocalDescription().SDP
}

// publisher publishes H.264 and Opus to path over WHIP and writes samples
// until the test ends: an IDR access unit with SPS and PPS every 10th.
func publisher(t *testing.T, e *env, path string) string {
	t.Helper()
	return publisherOf(t, e, path, webrtc.MimeTypeH264)
}

// publisherOf is publisher with the video codec mime (H.264 or VP8: a
// key frame every 10th).
func publisherOf(t *testing.T, e *env, path, mime string) string {
	t.Helper()
	pc := client(t)
	vcap := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}
	if mime == webrtc.MimeTypeVP8 {
		vcap = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	}
	video, _ := webrtc.NewTrackLocalStaticSample(vcap, "video", "pub")
	audio, _ := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "pub")
	for _, tr := range []webrtc.TrackLocal{video, audio} {
		if _, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	code, ans, loc := post(t, e.url+"/whip/"+path, apiKey, "application/sdp", offer(t, pc))
	if code != http.StatusCreated {
		t.Fatalf("publish: %d %s", code, ans)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	t.Cleanup(func() { cancel(); <-stopped })
	go func() {
		defer close(stopped)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			au := []byte{0, 0, 0, 1, 0x41, 0x9a, byte(i), 1, 2, 3}
			if i%10 == 0 {
				au = []byte{0, 0, 0, 1, 0x67, 0x42, 0xe0, 0x1f, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80, 0, 0, 0, 1, 0x65, 0x88, byte(i), 4, 5, 6}
			}
			if mime == webrtc.MimeTypeVP8 {
				au = []byte{0x11, byte(i), 1, 2}
				if i%10 == 0 {
					au[0] = 0x10
				}
			}
			_ = video.WriteSample(media.Sample{Data: au, Duration: 20 * time.Millisecond})
			_ = audio.WriteSample(media.Sample{Data: []byte{0xfc, byte(i), 1, 2}, Duration: 20 * time.Millisecond})
		}
	}()
	waitFor(t, "the stream live", func() bool { _, err := e.reg.Get(path); return err == nil })
	return loc
}

// viewer plays path over WHEP and counts the video packets it receives.
func viewer(t *testing.T, e *env, path string) *atomic.Int64 {
	t.Helper()
	pc := client(t)
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	var n atomic.Int64
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			if tr.Kind() == webrtc.RTPCodecTypeVideo {
				n.Add(1)
			}
		}
	})
	code, ans, _ := post(t, e.url+"/whep/"+path, "", "application/sdp", offer(t, pc))
	if code != http.StatusCreated {
		t.Fatalf("view: %d %s", code, ans)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans}); err != nil {
		t.Fatal(err)
	}
	return &n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited too long for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPublishAndView: a WHIP publisher's H.264 reaches a WHEP viewer as
// RTP, and the registry's readers as access units with their NAL units
// and keyframes.
func TestPublishAndView(t *testing.T) {
	e := newEnv(t)
	publisher(t, e, "live/a")
	rd, err := e.reg.Read("live/a", "test")
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	got := viewer(t, e, "live/a")
	waitFor(t, "video packets at the viewer", func() bool { return got.Load() > 20 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var key *stream.Unit
	for key == nil {
		u, _, err := rd.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rd.Tracks()[u.Track].Codec == stream.H264 && u.Key {
			key = u
		}
	}
	if len(key.NALUs) != 3 || key.NALUs[0][0] != 0x67 || key.NALUs[1][0] != 0x68 || key.NALUs[2][0] != 0x65 {
		t.Fatalf("keyframe NAL units %x", key.NALUs)
	}
	in := e.reg.List()[0]
	if in.Publisher.Protocol != "whip" || in.Viewers["whep"] != 1 {
		t.Fatalf("info %+v", in)
	}
	if st := e.srv.Stats(); st.PublishSessions != 1 || st.ViewSessions != 1 || st.ForwardedPackets == 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestBadInput: each bad request gets its documented status, and a
// stream being watched meanwhile keeps playing.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	loc := publisher(t, e, "live/main")
	got := viewer(t, e, "live/main")
	waitFor(t, "video packets", func() bool { return got.Load() > 5 })

	noMedia := client(t)
	if _, err := noMedia.CreateDataChannel("x", nil); err != nil {
		t.Fatal(err)
	}
	dataOnly := offer(t, noMedia)
	second := client(t)
	if _, err := second.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	sendOffer := offer(t, second)
	cases := []struct {
		name, method, path, key, ctype, body string
		want                                 int
	}{
		{"no media", "POST", "/whip/live/x", apiKey, "application/sdp", dataOnly, 400},
		{"garbage sdp", "POST", "/whip/live/x", apiKey, "application/sdp", "hello\r\nworld", 400},
		{"empty body", "POST", "/whip/live/x", apiKey, "application/sdp", "", 400},
		{"wrong content type", "POST", "/whip/live/x", apiKey, "text/plain", sendOffer, 415},
		{"no key", "POST", "/whip/live/x", "", "application/sdp", sendOffer, 401},
		{"wrong key", "POST", "/whip/live/x", "nope", "application/sdp", sendOffer, 403},
		{"bad path", "POST", "/whip/live/a b", apiKey, "application/sdp", sendOffer, 400},
		{"unknown namespace", "POST", "/whip/other/x", apiKey, "application/sdp", sendOffer, 404},
		{"second publisher", "POST", "/whip/live/main", apiKey, "application/sdp", sendOffer, 409},
		{"second publisher, one segment", "POST", "/whip/main", apiKey, "application/sdp", sendOffer, 409},
		{"whep of nothing", "POST", "/whep/live/none", "", "application/sdp", sendOffer, 404},
		{"whep offer that receives nothing", "POST", "/whep/live/main", "", "application/sdp", sendOffer, 400},
		{"delete unknown", "DELETE", "/whip/live/main/0123", apiKey, "", "", 404},
		{"delete unknown whep", "DELETE", "/whep/live/main/0123", "", "", "", 404},
		{"patch", "PATCH", loc, apiKey, "application/trickle-ice-sdpfrag", "a=candidate:1", 405},
		{"get", "GET", "/whip/live/main", "", "", "", 405},
		{"delete with a wrong key", "DELETE", loc, "nope", "", "", 403},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, e.url+c.path, strings.NewReader(c.body))
			if c.ctype != "" {
				req.Header.Set("Content-Type", c.ctype)
			}
			if c.key != "" {
				req.Header.Set("Authorization", "Bearer "+c.key)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != c.want || len(b) == 0 {
				t.Fatalf("got %d %q, want %d and a message", res.StatusCode, b, c.want)
			}
		})
	}
	// The stream played on through all that.
	before := got.Load()
	waitFor(t, "more video packets", func() bool { return got.Load() > before+10 })
	if in, err := e.reg.Get("live/main"); err != nil || in.Err() != nil {
		t.Fatalf("stream disturbed: %v", err)
	}
	// DELETE with the publisher's key ends it, and the path is free.
	req, _ := http.NewRequest("DELETE", e.url+loc, nil)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("delete: %v %v", err, res)
	}
	res.Body.Close()
	waitFor(t, "the stream to end", func() bool {
		_, err := e.reg.Get("live/main")
		return errors.Is(err, stream.ErrNotFound)
	})
}

// TestViewUnitSource: a stream from another ingest (written here straight
// to the registry, as RTMP does) plays over WHEP from its access units;
// its AAC track is not offered.
func TestViewUnitSource(t *testing.T) {
	e := newEnv(t)
	pub, err := e.reg.Publish("live/rtmp", stream.PublisherInfo{Protocol: "rtmp"}, []*stream.Track{
		{Codec: stream.H264, ClockRate: 90000, SPS: []byte{0x67, 0x42, 0xe0, 0x1f}, PPS: []byte{0x68, 0xce, 0x3c, 0x80}},
		{Codec: stream.AAC, ClockRate: 44100, Config: []byte{0x12, 0x10}, SampleRate: 44100, Channels: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	got := viewer(t, e, "live/rtmp")
	for i := 0; got.Load() < 20; i++ {
		if i > 2000 {
			t.Fatal("no video packets from access units")
		}
		_ = pub.WriteUnit(&stream.Unit{Track: 0, PTS: int64(i) * 3000, DTS: int64(i) * 3000, Key: i%10 == 0, NALUs: [][]byte{{0x65, byte(i), 1, 2}}})
		time.Sleep(10 * time.Millisecond)
	}
	if n := e.reg.List()[0].Viewers["whep"]; n != 1 {
		t.Fatalf("whep viewers %d", n)
	}
	// An AAC-only stream has nothing WHEP can carry.
	aac, err := e.reg.Publish("live/radio", stream.PublisherInfo{}, []*stream.Track{{Codec: stream.AAC, ClockRate: 44100, Config: []byte{0x12, 0x10}}})
	if err != nil {
		t.Fatal(err)
	}
	defer aac.Close()
	pc := client(t)
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := post(t, e.url+"/whep/live/radio", "", "application/sdp", offer(t, pc)); code != http.StatusUnprocessableEntity {
		t.Fatalf("aac only: %d %s", code, body)
	}
}

// TestPublishVP8: a VP8 publisher's frames reach the viewer and the
// registry, key frames marked.
func TestPublishVP8(t *testing.T) {
	e := newEnv(t)
	publisherOf(t, e, "live/v", webrtc.MimeTypeVP8)
	rd, err := e.reg.Read("live/v", "test")
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	got := viewer(t, e, "live/v")
	waitFor(t, "video packets at the viewer", func() bool { return got.Load() > 20 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	keys, others := 0, 0
	for keys < 2 {
		u, _, err := rd.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rd.Tracks()[u.Track].Codec != stream.VP8 {
			continue
		}
		if u.Key != (u.Payload[0] == 0x10) {
			t.Fatalf("frame %x marked key=%v", u.Payload, u.Key)
		}
		if u.Key {
			keys++
		} else {
			others++
		}
	}
	if others == 0 {
		t.Fatal("no inter frames between two key frames")
	}
}

// TestSessionLimit: a viewer beyond MaxViewers gets 503; the others play
// on.
func TestSessionLimit(t *testing.T) {
	e := newEnv(t, func(o *whip.Options) { o.MaxViewers = 1 })
	publisher(t, e, "live/l")
	got := viewer(t, e, "live/l")
	pc := client(t)
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := post(t, e.url+"/whep/live/l", "", "application/sdp", offer(t, pc)); code != http.StatusServiceUnavailable {
		t.Fatalf("second viewer: %d %s", code, body)
	}
	waitFor(t, "the first viewer's packets", func() bool { return got.Load() > 10 })
}

// TestLinkICEServers: with ICE servers set, the answer and the pre-flight
// announce them in Link headers.
func TestLinkICEServers(t *testing.T) {
	e := newEnv(t)
	e.srv.SetICEServers(func(host string) ([]whip.ICEServer, error) {
		return []whip.ICEServer{{URLs: []string{"stun:" + host}}, {URLs: []string{"turn:" + host + "?transport=udp"}, Username: "1:u", Credential: `c"x`}}, nil
	})
	req, _ := http.NewRequest(http.MethodOptions, e.url+"/whip/live/a", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	links := res.Header.Values("Link")
	host := strings.TrimPrefix(e.url, "http://")
	want := []string{
		"<stun:" + host + `>; rel="ice-server"`,
		"<turn:" + host + `?transport=udp>; rel="ice-server"; username="1:u"; credential="c\"x"; credential-type="password"`,
	}
	if len(links) != 2 || links[0] != want[0] || links[1] != want[1] {
		t.Fatalf("Link %q, want %q", links, want)
	}
	// The answer carries them too.
	pc := client(t)
	tr, _ := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "pub")
	if _, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	req, _ = http.NewRequest(http.MethodPost, e.url+"/whip/live/a", strings.NewReader(offer(t, pc)))
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+apiKey)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated || len(res.Header.Values("Link")) != 2 {
		t.Fatalf("answer: %d, Link %q", res.StatusCode, res.Header.Values("Link"))
	}
}
