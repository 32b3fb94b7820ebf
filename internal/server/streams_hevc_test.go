package server_test

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"

	"github.com/switchboardhq/switchboard/internal/config"
)

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

// TestStreamsEnhancedRTMPHEVC publishes H.265 over enhanced RTMP (the
// Go RTMP client: Debian's ffmpeg 5.1 predates enhanced RTMP) and finds it
// in the stream list and in the LL-HLS playlist.
func TestStreamsEnhancedRTMPHEVC(t *testing.T) {
	needFFmpeg(t)
	out := filepath.Join(t.TempDir(), "v.hevc")
	enc := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25",
		"-t", "2.5", "-c:v", "libx265", "-x265-params", "keyint=25:min-keyint=25:bframes=0:log-level=error", "-pix_fmt", "yuv420p",
		"-bsf:v", "hevc_metadata=aud=insert", "-f", "hevc", out)
	if b, err := enc.CombinedOutput(); err != nil {
		t.Skipf("no H.265 encoder: %v %s", err, b)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var aus [][][]byte
	var vps, sps, pps []byte
	for _, n := range splitAnnexB(raw) {
		if len(n) < 2 {
			continue
		}
		switch (n[0] >> 1) & 0x3f {
		case 35: // access unit delimiter
			aus = append(aus, nil)
			continue
		case 32:
			vps = n
		case 33:
			sps = n
		case 34:
			pps = n
		}
		if len(aus) > 0 {
			aus[len(aus)-1] = append(aus[len(aus)-1], n)
		}
	}

	ts := start(t, func(c *config.Config) { c.RTMPAddr = "127.0.0.1:0" })
	u, _ := url.Parse("rtmp://" + ts.RTMPAddr() + "/live/hevc?key=" + testKey)
	c := &gortmplib.Client{URL: u, Publish: true}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Initialize(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	track := &gortmplib.Track{Codec: &codecs.H265{VPS: vps, SPS: sps, PPS: pps}}
	w := &gortmplib.Writer{Conn: c, Tracks: []*gortmplib.Track{track}}
	if err := w.Initialize(); err != nil {
		t.Fatal(err)
	}
	for i, au := range aus {
		pts := time.Duration(i) * 40 * time.Millisecond
		if err := w.WriteH265(track, pts, pts, au); err != nil {
			t.Fatal(err)
		}
	}
	info := ts.waitStream("live/hevc")
	if tracks, _ := info["tracks"].([]any); len(tracks) != 1 || tracks[0].(map[string]any)["codec"] != "h265" {
		t.Fatalf("tracks %v", info["tracks"])
	}
	for i := 0; ; i++ {
		status, body := httpGet(t, "http://"+ts.Addr()+"/hls/live/hevc/index.m3u8")
		if status == 200 {
			if !strings.Contains(body, "hvc1") && !strings.Contains(body, "hev1") {
				t.Fatalf("no H.265 in the playlist:\n%s", body)
			}
			break
		}
		if i > 3000 {
			t.Fatalf("index.m3u8: %d %s", status, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
