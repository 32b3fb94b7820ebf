package hls_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/switchboardhq/switchboard/internal/stream"
	"github.com/switchboardhq/switchboard/internal/stream/hls"
)

var quiet = slog.New(slog.DiscardHandler)

// encodeH264 returns two seconds of a test pattern as H.264 access units
// (baseline, 25 fps, a keyframe each second), made by ffmpeg.
func encodeH264(t *testing.T) [][][]byte {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("ffmpeg is required in CI")
		}
		t.Skip("ffmpeg not installed")
	}
	out := filepath.Join(t.TempDir(), "v.h264")
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25",
		"-t", "2.2", "-c:v", "libx264", "-profile:v", "baseline", "-g", "25", "-pix_fmt", "yuv420p",
		"-bsf:v", "h264_metadata=aud=insert", "-f", "h264", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v %s", err, b)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	nalus := splitAnnexB(raw)
	var aus [][][]byte
	for _, n := range nalus {
		if h264.NALUType(n[0]&0x1f) == h264.NALUTypeAccessUnitDelimiter {
			aus = append(aus, nil)
			continue
		}
		if len(aus) > 0 {
			aus[len(aus)-1] = append(aus[len(aus)-1], n)
		}
	}
	return aus
}

// splitAnnexB splits an Annex B byte stream at its start codes.
func splitAnnexB(b []byte) [][]byte {
	var out [][]byte
	start := -1
	for i := 0; i+3 <= len(b); i++ {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			if start >= 0 {
				out = append(out, bytes.TrimRight(b[start:i], "\x00"))
			}
			start = i + 3
			i += 2
		}
	}
	if start >= 0 && start < len(b) {
		out = append(out, b[start:])
	}
	return out
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func setup(t *testing.T) (*stream.Registry, *hls.Server) {
	t.Helper()
	reg := stream.NewRegistry(stream.Options{Logger: quiet})
	a, err := stream.NewAuthorizer(stream.AuthOptions{Namespaces: []stream.Namespace{{Name: "live"}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := hls.New(hls.Options{Registry: reg, Authorizer: a, Logger: quiet})
	t.Cleanup(func() {
		reg.Close()
		srv.Close()
	})
	return reg, srv
}

// TestOpusNotCarried: a stream of H.264 and Opus plays on LL-HLS with its
// video only.
func TestOpusNotCarried(t *testing.T) {
	aus := encodeH264(t)
	reg, srv := setup(t)
	var sps, pps []byte
	for _, n := range aus[0] {
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeSPS:
			sps = n
		case h264.NALUTypePPS:
			pps = n
		}
	}
	p, err := reg.Publish("live/mixed", stream.PublisherInfo{Protocol: "test"}, []*stream.Track{
		{Codec: stream.H264, ClockRate: 90000, SPS: sps, PPS: pps},
		{Codec: stream.Opus, ClockRate: 48000, SampleRate: 48000, Channels: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i, au := range aus {
		pts := int64(i) * 3600
		if err := p.WriteUnit(&stream.Unit{Track: 0, PTS: pts, DTS: pts, Key: h264.IsRandomAccess(au), NALUs: au}); err != nil {
			t.Fatal(err)
		}
		op := int64(i) * 1920
		if err := p.WriteUnit(&stream.Unit{Track: 1, PTS: op, DTS: op, Key: true, Payload: []byte{0xfc, 1, 2}}); err != nil {
			t.Fatal(err)
		}
	}
	status, body := get(t, srv, "/hls/live/mixed/index.m3u8")
	if status != 200 {
		t.Fatalf("index.m3u8: %d %s", status, body)
	}
	if !strings.Contains(body, "avc1.") || strings.Contains(body, "opus") || strings.Contains(body, "TYPE=AUDIO") {
		t.Fatalf("want video only:\n%s", body)
	}
	var media string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasSuffix(l, ".m3u8") {
			media = l
		}
	}
	status, pl := get(t, srv, "/hls/live/mixed/"+media)
	if status != 200 || !strings.Contains(pl, "#EXT-X-PART:") {
		t.Fatalf("media playlist: %d\n%s", status, pl)
	}
	if in := reg.List()[0]; in.Readers["hls"] != 1 || in.Viewers["hls"] != 1 {
		t.Fatalf("readers %v viewers %v", in.Readers, in.Viewers)
	}
}

// TestNothingCarried: a stream of VP8 and Opus has no LL-HLS output: 404.
func TestNothingCarried(t *testing.T) {
	reg, srv := setup(t)
	p, err := reg.Publish("live/webrtc", stream.PublisherInfo{}, []*stream.Track{
		{Codec: stream.VP8, ClockRate: 90000},
		{Codec: stream.Opus, ClockRate: 48000},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if status, body := get(t, srv, "/hls/live/webrtc/index.m3u8"); status != 404 || !strings.Contains(body, "no track HLS can carry") {
		t.Fatalf("got %d %s", status, body)
	}
}

func TestRequestErrors(t *testing.T) {
	reg := stream.NewRegistry(stream.Options{Logger: quiet, Namespaces: []string{"live", "members"}})
	a, _ := stream.NewAuthorizer(stream.AuthOptions{APIKeys: []string{"k"}, Namespaces: []stream.Namespace{{Name: "members", Read: stream.ReadToken}}})
	srv := hls.New(hls.Options{Registry: reg, Authorizer: a, Logger: quiet})
	defer srv.Close()
	cases := map[string]int{
		"/hls/live/none/index.m3u8":          404,
		"/hls/live/index.m3u8":               400,
		"/hls/other/x/index.m3u8":            404,
		"/hls/live/../x/index.m3u8":          400,
		"/hls/members/x/index.m3u8":          401,
		"/hls/members/x/index.m3u8?key=bad":  403,
		"/hls/members/x/index.m3u8?key=k":    404,
		"/hls/" + strings.Repeat("a", 300):   404,
		"/hls/live/x/" + string([]byte{0}):   404,
		"/hls/live/x/a.m3u8?_HLS_msn=banana": 404,
	}
	for path, want := range cases {
		t.Run(path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("GET", "/", nil)
			req.URL.Path, req.URL.RawQuery, _ = strings.Cut(path, "?")
			srv.ServeHTTP(rec, req)
			if rec.Code != want {
				t.Fatalf("%s: %d %s, want %d", path, rec.Code, bytes.TrimSpace(rec.Body.Bytes()), want)
			}
		})
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("POST", "/hls/live/x/index.m3u8", nil))
	if rec.Code != 405 {
		t.Fatalf("POST: %d", rec.Code)
	}
}

// TestStreamEndDuringBlockingRequest: a viewer waiting on the preload hint
// when the stream ends is answered (the last part, or 503), and no
// goroutine is left behind (TestMain checks).
func TestStreamEndDuringBlockingRequest(t *testing.T) {
	aus := encodeH264(t)
	reg, srv := setup(t)
	p, err := reg.Publish("live/end", stream.PublisherInfo{}, []*stream.Track{{Codec: stream.H264, ClockRate: 90000}})
	if err != nil {
		t.Fatal(err)
	}
	for i, au := range aus {
		pts := int64(i) * 3600
		_ = p.WriteUnit(&stream.Unit{Track: 0, PTS: pts, DTS: pts, Key: h264.IsRandomAccess(au), NALUs: au})
	}
	_, body := get(t, srv, "/hls/live/end/index.m3u8")
	var media string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasSuffix(l, ".m3u8") {
			media = l
		}
	}
	_, pl := get(t, srv, "/hls/live/end/"+media)
	i := strings.Index(pl, `#EXT-X-PRELOAD-HINT:TYPE=PART,URI="`)
	if i < 0 {
		t.Fatalf("no preload hint:\n%s", pl)
	}
	hint := pl[i+len(`#EXT-X-PRELOAD-HINT:TYPE=PART,URI="`):]
	hint = hint[:strings.IndexByte(hint, '"')]
	done := make(chan int)
	go func() {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest("GET", "/hls/live/end/"+hint, nil))
		done <- rec.Code
	}()
	// Wait until the request is parked in the muxer, then end the stream.
	for reg.List()[0].Viewers["hls"] == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	p.Close()
	if code := <-done; code != 200 && code != 503 {
		t.Fatalf("waiting request got %d, want 200 or 503", code)
	}
}
