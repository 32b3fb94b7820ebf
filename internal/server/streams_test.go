package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/message"

	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/stream"
)

// needFFmpeg skips the test when ffmpeg and ffprobe are missing, except in
// CI, which installs them.
func needFFmpeg(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is required in CI: %v", bin, err)
			}
			t.Skipf("%s not installed", bin)
		}
	}
}

// ffmpegPublish starts ffmpeg publishing a test pattern with a tone
// (H.264 baseline, 1 s GOP, AAC) to url for at most seconds, and returns
// the command; it is killed when the test ends.
func ffmpegPublish(t *testing.T, rtmpURL string, seconds int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
		"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
		"-t", strconv.Itoa(seconds),
		"-c:v", "libx264", "-profile:v", "baseline", "-preset", "veryfast", "-tune", "zerolatency",
		"-pix_fmt", "yuv420p", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
		"-c:a", "aac", "-b:a", "64k",
		"-f", "flv", rtmpURL)
	cmd.Stderr = &prefixWriter{t: t, prefix: "ffmpeg: "}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

type prefixWriter struct {
	t      *testing.T
	prefix string
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.t.Log(w.prefix + strings.TrimSpace(string(p)))
	return len(p), nil
}

// streamInfo returns the entry of GET /api/streams for path, nil when
// absent.
func (ts *testServer) streamInfo(path string) map[string]any {
	ts.t.Helper()
	status, body := ts.api("GET", "/api/streams", testKey, "")
	if status != 200 {
		ts.t.Fatalf("GET /api/streams: %d %v", status, body)
	}
	list, _ := body["result"].(map[string]any)["streams"].([]any)
	for _, s := range list {
		if m := s.(map[string]any); m["path"] == path {
			return m
		}
	}
	return nil
}

// waitStream polls GET /api/streams until path is live.
func (ts *testServer) waitStream(path string) map[string]any {
	ts.t.Helper()
	for i := 0; ; i++ {
		if in := ts.streamInfo(path); in != nil {
			return in
		}
		if i > 3000 {
			ts.t.Fatalf("stream %s never started", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// mediaPlaylistURL reads the multivariant playlist at base+index.m3u8,
// waiting for it, and returns the video media playlist's URL.
func mediaPlaylistURL(t *testing.T, base string) string {
	t.Helper()
	for i := 0; ; i++ {
		status, body := httpGet(t, base+"index.m3u8")
		if status == 200 {
			lines := strings.Split(body, "\n")
			for j, l := range lines {
				if strings.HasPrefix(l, "#EXT-X-STREAM-INF") && j+1 < len(lines) {
					return base + strings.TrimSpace(lines[j+1])
				}
			}
			t.Fatalf("no EXT-X-STREAM-INF in\n%s", body)
		}
		if i > 3000 {
			t.Fatalf("multivariant playlist: %d %s", status, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var (
	reSeq  = regexp.MustCompile(`#EXT-X-MEDIA-SEQUENCE:(\d+)`)
	rePart = regexp.MustCompile(`#EXT-X-PART:[^\n]*URI="([^"]+)"`)
	reHint = regexp.MustCompile(`#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"`)
)

// nextPart returns the _HLS_msn and _HLS_part of the part after the last
// one listed in playlist.
func nextPart(t *testing.T, playlist string) (msn, part int) {
	t.Helper()
	m := reSeq.FindStringSubmatch(playlist)
	if m == nil {
		t.Fatalf("no EXT-X-MEDIA-SEQUENCE in\n%s", playlist)
	}
	msn, _ = strconv.Atoi(m[1])
	for _, l := range strings.Split(playlist, "\n") {
		switch {
		case strings.HasPrefix(l, "#EXTINF"):
			msn++
			part = 0
		case strings.HasPrefix(l, "#EXT-X-PART:"):
			part++
		}
	}
	return msn, part
}

// TestStreamsRTMPToLLHLS publishes a test pattern with ffmpeg over RTMP and
// reads it back over LL-HLS, then throws bad input at the node while the
// stream plays: each is answered as docs/streaming.md says and the stream
// keeps playing.
func TestStreamsRTMPToLLHLS(t *testing.T) {
	needFFmpeg(t)
	recDir := t.TempDir()
	ts := start(t, func(c *config.Config) {
		c.StreamRecordDir = recDir
		c.StreamRecordSegment = 2 * time.Second
		c.StreamNamespaces = []stream.Namespace{{Name: "live", Record: true}}
		c.RTMPAddr = "127.0.0.1:0"
		c.HandshakeTimeout = 3 * time.Second
		c.StreamKeySecret = "a-stream-key-secret-for-tests"
	})
	rtmpBase := "rtmp://" + ts.RTMPAddr() + "/"
	status, body := ts.api("POST", "/api/streams/key", testKey, `{"path":"live/test","ttl":600}`)
	if status != 200 {
		t.Fatalf("mint key: %d %v", status, body)
	}
	key := body["result"].(map[string]any)["key"].(string)
	ffmpegPublish(t, rtmpBase+"live/test?key="+url.QueryEscape(key), 60)
	info := ts.waitStream("live/test")
	tracks := fmt.Sprint(info["tracks"])
	if !strings.Contains(tracks, "h264") || !strings.Contains(tracks, "aac") {
		t.Fatalf("tracks %s, want h264 and aac", tracks)
	}
	hlsBase := "http://" + ts.Addr() + "/hls/live/test/"
	media := mediaPlaylistURL(t, hlsBase)

	t.Run("metrics", func(t *testing.T) {
		if n := ts.metric("switchboard_streams"); n != 1 {
			t.Errorf("switchboard_streams %v", n)
		}
		if n := ts.metric(`switchboard_stream_viewers{protocol="hls"}`); n != 1 {
			t.Errorf("hls viewers %v", n)
		}
		if n := ts.metric("switchboard_stream_bytes_received_total"); n <= 0 {
			t.Errorf("bytes received %v", n)
		}
	})

	t.Run("playlist follows LL-HLS", func(t *testing.T) {
		_, pl := httpGet(t, media)
		for _, want := range []string{"#EXT-X-PART-INF:PART-TARGET=", "CAN-BLOCK-RELOAD=YES", "#EXT-X-PRELOAD-HINT:TYPE=PART", "#EXT-X-MAP:URI="} {
			if !strings.Contains(pl, want) {
				t.Errorf("media playlist lacks %s:\n%s", want, pl)
			}
		}
	})

	t.Run("blocking reload answers when the part exists", func(t *testing.T) {
		_, pl := httpGet(t, media)
		hint := reHint.FindStringSubmatch(pl)
		if hint == nil {
			t.Fatalf("no preload hint in\n%s", pl)
		}
		msn, part := nextPart(t, pl)
		sep := "?"
		if strings.Contains(media, "?") {
			sep = "&"
		}
		status, next := httpGet(t, fmt.Sprintf("%s%s_HLS_msn=%d&_HLS_part=%d", media, sep, msn, part))
		if status != 200 {
			t.Fatalf("blocking reload: %d %s", status, next)
		}
		found := false
		for _, m := range rePart.FindAllStringSubmatch(next, -1) {
			found = found || m[1] == hint[1]
		}
		if !found {
			t.Fatalf("the answer lacks the hinted part %s:\n%s", hint[1], next)
		}
		// The hinted part itself is served.
		if status, _ := httpGet(t, hlsBase+hint[1]); status != 200 {
			t.Fatalf("hinted part: %d", status)
		}
		// Too far ahead is refused at once.
		if status, _ := httpGet(t, fmt.Sprintf("%s%s_HLS_msn=%d&_HLS_part=0", media, sep, msn+10)); status != 400 {
			t.Fatalf("msn far ahead: %d, want 400", status)
		}
	})

	t.Run("ffprobe decodes frames", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-read_intervals", "%+2",
			"-count_frames", "-show_entries", "stream=codec_name,nb_read_frames", "-of", "json", hlsBase+"index.m3u8").Output()
		if err != nil {
			t.Fatalf("ffprobe: %v %s", err, out)
		}
		var probe struct {
			Streams []struct {
				CodecName    string `json:"codec_name"`
				NbReadFrames string `json:"nb_read_frames"`
			} `json:"streams"`
		}
		if err := json.Unmarshal(out, &probe); err != nil {
			t.Fatalf("ffprobe output %s: %v", out, err)
		}
		codecs := map[string]int{}
		for _, s := range probe.Streams {
			n, _ := strconv.Atoi(s.NbReadFrames)
			codecs[s.CodecName] += n
		}
		if codecs["h264"] == 0 || codecs["aac"] == 0 {
			t.Fatalf("ffprobe decoded %v (%s)", codecs, out)
		}
	})

	badInput(t, ts, rtmpBase, key)

	t.Run("stream still plays", func(t *testing.T) {
		_, pl := httpGet(t, media)
		msn, part := nextPart(t, pl)
		sep := "?"
		if strings.Contains(media, "?") {
			sep = "&"
		}
		if status, _ := httpGet(t, fmt.Sprintf("%s%s_HLS_msn=%d&_HLS_part=%d", media, sep, msn, part)); status != 200 {
			t.Fatalf("blocking reload after the bad input: %d", status)
		}
		if in := ts.streamInfo("live/test"); in == nil || in["started"] != info["started"] {
			t.Fatalf("the first publisher was replaced or ended: %v", in)
		}
	})

	kicked := t.Run("kick ends the publisher", func(t *testing.T) {
		if status, body := ts.api("POST", "/api/streams/kick", testKey, `{"path":"live/test"}`); status != 200 {
			t.Fatalf("kick: %d %v", status, body)
		}
		for ts.streamInfo("live/test") != nil {
			time.Sleep(10 * time.Millisecond)
		}
		if status, _ := ts.api("POST", "/api/streams/kick", testKey, `{"path":"live/test"}`); status != 404 {
			t.Fatalf("kick of nothing: %d, want 404", status)
		}
		for {
			status, _ := httpGet(t, hlsBase+"index.m3u8")
			if status == 404 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	})

	t.Run("recording plays", func(t *testing.T) {
		if !kicked {
			t.Skip("the stream did not end")
		}
		// The recorder finishes its file when the stream ends.
		var files []string
		for i := 0; len(files) < 2; i++ {
			files, _ = filepath.Glob(filepath.Join(recDir, "live", "test", "*.mp4"))
			if i > 3000 {
				t.Fatalf("recorded files: %v", files)
			}
			time.Sleep(10 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-count_frames",
			"-show_entries", "stream=codec_name,nb_read_frames", "-of", "json", files[0]).Output()
		if err != nil {
			t.Fatalf("ffprobe %s: %v %s", files[0], err, out)
		}
		if !strings.Contains(string(out), `"h264"`) || !strings.Contains(string(out), `"aac"`) || strings.Contains(string(out), `"nb_read_frames": "0"`) {
			t.Fatalf("ffprobe %s: %s", files[0], out)
		}
	})
}

// badInput runs the bad-input cases against a node where live/test plays.
func badInput(t *testing.T, ts *testServer, rtmpBase, key string) {
	t.Run("wrong stream key is refused", func(t *testing.T) {
		cmd := ffmpegPublish(t, rtmpBase+"live/other?key=sk1.p.zzzz.forged", 5)
		if err := cmd.Wait(); err == nil {
			t.Fatal("ffmpeg published with a forged key")
		}
		if ts.streamInfo("live/other") != nil {
			t.Fatal("live/other is listed")
		}
	})
	t.Run("key for another path is refused", func(t *testing.T) {
		cmd := ffmpegPublish(t, rtmpBase+"live/other?key="+url.QueryEscape(key), 5)
		if err := cmd.Wait(); err == nil {
			t.Fatal("ffmpeg published with another path's key")
		}
	})
	t.Run("second publisher on a live path is refused", func(t *testing.T) {
		before := ts.streamInfo("live/test")
		cmd := ffmpegPublish(t, rtmpBase+"live/test?key="+url.QueryEscape(key), 5)
		if err := cmd.Wait(); err == nil {
			t.Fatal("a second publisher took the path")
		}
		if in := ts.streamInfo("live/test"); in == nil || in["started"] != before["started"] {
			t.Fatalf("first publisher disturbed: %v", in)
		}
	})
	for name, data := range map[string][]byte{
		"garbage handshake":   []byte(strings.Repeat("GET / HTTP/1.1\r\n", 200)),
		"truncated handshake": append([]byte{3}, make([]byte, 700)...),
		"wrong version":       append([]byte{42}, make([]byte, 1536)...),
		"nothing sent":        nil,
	} {
		t.Run(name+" is closed", func(t *testing.T) {
			c, err := net.Dial("tcp", ts.RTMPAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if len(data) > 0 {
				if _, err := c.Write(data); err != nil {
					t.Fatal(err)
				}
			}
			// The server closes the connection (at the latest after
			// handshake_timeout): reading ends.
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, err = io.Copy(io.Discard, c)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the server kept the connection open")
			}
		})
	}
	t.Run("malformed FLV tags end that publisher only", func(t *testing.T) {
		u, _ := url.Parse(rtmpBase + "live/garbage?key=" + url.QueryEscape(testKey))
		c := &gortmplib.Client{URL: u, Publish: true}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Initialize(ctx); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		garbage := []message.Message{
			&message.Video{ChunkStreamID: 6, MessageStreamID: 0x1000000, Codec: message.CodecH264, IsKeyFrame: true, Type: message.VideoTypeAU, AU: []byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3}},
			&message.Audio{ChunkStreamID: 4, MessageStreamID: 0x1000000, Codec: message.CodecMPEG4Audio, Rate: message.AudioRate44100, Depth: message.AudioDepth16, IsStereo: true, AACType: message.AudioAACTypeAU, AU: []byte{1, 2, 3}},
		}
		for i := 0; i < 50; i++ {
			if err := c.Write(garbage[i%2]); err != nil {
				break // the server closed the connection
			}
		}
		_ = c.NetConn().SetReadDeadline(time.Now().Add(30 * time.Second))
		for {
			if _, err := c.Read(); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatal("the server kept the malformed publisher")
				}
				break
			}
		}
		if ts.streamInfo("live/garbage") != nil {
			t.Fatal("the malformed publisher is listed")
		}
	})
	t.Run("slow HLS reader does not hold others", func(t *testing.T) {
		media := mediaPlaylistURL(t, "http://"+ts.Addr()+"/hls/live/test/")
		_, pl := httpGet(t, media)
		init := regexp.MustCompile(`#EXT-X-MAP:URI="([^"]+)"`).FindStringSubmatch(pl)
		segs := rePart.FindAllStringSubmatch(pl, -1)
		if init == nil || len(segs) == 0 {
			t.Fatalf("playlist without init or parts:\n%s", pl)
		}
		// A client that asks for many parts and reads none of them.
		c, err := net.Dial("tcp", ts.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.(*net.TCPConn).SetReadBuffer(4096)
		w := bufio.NewWriter(c)
		for i := 0; i < 200; i++ {
			fmt.Fprintf(w, "GET /hls/live/test/%s HTTP/1.1\r\nHost: %s\r\n\r\n", segs[i%len(segs)][1], ts.Addr())
		}
		_ = w.Flush()
		// Others are served, blocking reloads included.
		msn, part := nextPart(t, pl)
		sep := "?"
		if strings.Contains(media, "?") {
			sep = "&"
		}
		for i := 0; i < 3; i++ {
			status, next := httpGet(t, fmt.Sprintf("%s%s_HLS_msn=%d&_HLS_part=%d", media, sep, msn, part))
			if status != 200 {
				t.Fatalf("blocking reload beside a slow reader: %d", status)
			}
			msn, part = nextPart(t, next)
		}
	})
}

// TestStreamAPIErrors: the stream calls of the server API refuse bad
// requests with the documented statuses.
func TestStreamAPIErrors(t *testing.T) {
	ts := start(t, nil)
	cases := []struct {
		name, method, path, body string
		want                     int
	}{
		{"list", "GET", "/api/streams", "", 200},
		{"list by POST", "POST", "/api/streams", "", 405},
		{"kick without path", "POST", "/api/streams/kick", `{}`, 400},
		{"kick bad path", "POST", "/api/streams/kick", `{"path":"nope"}`, 400},
		{"kick unknown namespace", "POST", "/api/streams/kick", `{"path":"x/y"}`, 400},
		{"kick nothing live", "POST", "/api/streams/kick", `{"path":"live/none"}`, 404},
		{"key", "POST", "/api/streams/key", `{"path":"live/a"}`, 200},
		{"read key", "POST", "/api/streams/key", `{"path":"live/a","action":"read","ttl":60}`, 200},
		{"key bad action", "POST", "/api/streams/key", `{"path":"live/a","action":"delete"}`, 400},
		{"key bad ttl", "POST", "/api/streams/key", `{"path":"live/a","ttl":0}`, 400},
		{"key huge ttl", "POST", "/api/streams/key", `{"path":"live/a","ttl":99999999999}`, 400},
		{"key unknown namespace", "POST", "/api/streams/key", `{"path":"vod/a"}`, 400},
		{"key not JSON", "POST", "/api/streams/key", `{`, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if status, body := ts.api(c.method, c.path, testKey, c.body); status != c.want {
				t.Fatalf("%s %s %s: %d %v, want %d", c.method, c.path, c.body, status, body, c.want)
			}
		})
	}
	if status, _ := ts.api("GET", "/api/streams", "", ""); status != 401 {
		t.Fatalf("without the API key: %d", status)
	}
	off := start(t, func(c *config.Config) { c.Streams = false })
	if status, _ := off.api("POST", "/api/streams/key", testKey, `{"path":"live/a"}`); status != 503 {
		t.Fatalf("streams off: %d, want 503", status)
	}
	if status, _ := httpGet(t, "http://"+off.Addr()+"/hls/live/a/index.m3u8"); status == 200 {
		t.Fatal("LL-HLS served with streams off")
	}
}
