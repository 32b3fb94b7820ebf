package main

import (
	"context"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/pion/rtp/codecs"

	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/server"
)

func TestSeqCount(t *testing.T) {
	tests := map[string]struct {
		seqs      []uint16
		got, lost uint64
	}{
		"in order":            {seqs: []uint16{5, 6, 7}, got: 3},
		"gap":                 {seqs: []uint16{5, 8, 9}, got: 3, lost: 2},
		"late fills a gap":    {seqs: []uint16{5, 8, 6}, got: 3, lost: 1},
		"repeat ignored":      {seqs: []uint16{5, 6, 6, 7}, got: 3},
		"wraps":               {seqs: []uint16{65534, 65535, 0, 1}, got: 4},
		"gap across the wrap": {seqs: []uint16{65534, 1}, got: 2, lost: 2},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var c seqCount
			for _, s := range tc.seqs {
				c.add(s)
			}
			if c.got != tc.got || c.lost != tc.lost {
				t.Errorf("got %d lost %d, want %d and %d", c.got, c.lost, tc.got, tc.lost)
			}
		})
	}
}

func TestStampSent(t *testing.T) {
	now := time.Unix(1700000000, 123456789)
	pkts := vp8Frame(true, 7, 1, streamPads)
	if len(pkts) != len(streamPads) {
		t.Fatalf("%d packets, want %d", len(pkts), len(streamPads))
	}
	for i, p := range pkts {
		stampSent(p, now)
		got, ok := sentAt(p)
		if !ok || !got.Equal(now) {
			t.Errorf("packet %d: sent at %v (%v), want %v", i, got, ok, now)
		}
		// The stamp is in the filler: the VP8 headers stay as they were.
		var vp8 codecs.VP8Packet
		if _, err := vp8.Unmarshal(p); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if start := i == 0; (vp8.S == 1) != start || vp8.PictureID != 7 {
			t.Errorf("packet %d: S %d picture %d", i, vp8.S, vp8.PictureID)
		}
		if i == 0 && vp8.Payload[0]&0x01 != 0 {
			t.Error("the first packet of a keyframe is not marked key")
		}
	}
	if _, ok := sentAt(make([]byte, 20)); ok {
		t.Error("an unstamped payload gave a time")
	}
	if _, ok := sentAt([]byte{1, 2}); ok {
		t.Error("a short payload gave a time")
	}
}

// The sfu scenario's frames keep their sizes.
func TestSFUFrameSizes(t *testing.T) {
	for _, key := range []bool{true, false} {
		pkts := vp8Frame(key, 1, 1, sfuPads)
		head := 9
		if key {
			head = 16
		}
		if len(pkts) != 3 || len(pkts[0]) != head+600 || len(pkts[1]) != 606 || len(pkts[2]) != 206 {
			t.Errorf("key %v: sizes %d %d %d", key, len(pkts[0]), len(pkts[1]), len(pkts[2]))
		}
	}
}

func TestStreamFigures(t *testing.T) {
	tests := map[string]struct {
		f                        streamFigures
		loss, perViewer, perCore float64
	}{
		"plain":      {f: streamFigures{viewers: 20, got: 990, lost: 10, srvPct: 45, ingestPct: 5}, loss: 1, perViewer: 2, perCore: 50},
		"no viewers": {f: streamFigures{}, loss: 0, perViewer: math.NaN(), perCore: math.NaN()},
		"noise":      {f: streamFigures{viewers: 2, srvPct: 3, ingestPct: 4}, perViewer: 0, perCore: math.NaN()},
	}
	same := func(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) || math.Abs(a-b) < 1e-9 }
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tc.f.lossPct(); !same(got, tc.loss) {
				t.Errorf("loss %v, want %v", got, tc.loss)
			}
			if got := tc.f.cpuPerViewer(); !same(got, tc.perViewer) {
				t.Errorf("cpu per viewer %v, want %v", got, tc.perViewer)
			}
			if got := tc.f.viewersPerCore(); !same(got, tc.perCore) {
				t.Errorf("viewers per core %v, want %v", got, tc.perCore)
			}
		})
	}
}

// TestStreamScenarioTiny runs the stream scenario against a node in this
// process: a WHIP publisher and two WHEP viewers for a second. It checks
// that the figures are there, not their values (the machine is shared).
func TestStreamScenarioTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("starts WebRTC peers")
	}
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.APIKey = []string{"bench-test-key"}
	cfg.WebRTC, cfg.WebRTCLoopback = true, true
	o := &options{scenario: "stream", conns: 2, duration: time.Second, warmup: 0, setupTimeout: 30 * time.Second, quietPct: 100}
	if ff, err := exec.LookPath("ffmpeg"); err == nil {
		_, addr, err := rtmpServerArgs()
		if err != nil {
			t.Fatal(err)
		}
		cfg.RTMPAddr, o.rtmpAddr, o.ffmpeg, o.hlsReaders = addr, addr, ff, 1
	} else {
		t.Log("no ffmpeg: the LL-HLS readers are not run")
	}
	cfg.ShutdownTimeout = 5 * time.Second
	srv, err := server.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() { cancel(); <-done }()

	e := &env{o: o, t: &target{Name: kindSwitchboard, Addr: srv.Addr(), APIKey: "bench-test-key", PID: os.Getpid()}}
	res, err := runStream(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	get := func(k string) float64 {
		m, ok := res.Summary.get(k)
		if !ok {
			t.Fatalf("no %s in %v", k, res.Summary)
		}
		return m.Value
	}
	if get("viewers") != 2 {
		t.Errorf("viewers %v, want 2", get("viewers"))
	}
	if get("sent_pkts") <= 0 || get("received_pkts") <= 0 {
		t.Errorf("sent %v received %v packets", get("sent_pkts"), get("received_pkts"))
	}
	for _, k := range []string{"latency_p50_ms", "first_frame_p50_ms", "loss_pct"} {
		if v := get(k); math.IsNaN(v) || v < 0 {
			t.Errorf("%s = %v", k, v)
		}
	}
	if o.hlsReaders > 0 && get("hls_parts") <= 0 {
		t.Errorf("the LL-HLS reader fetched %v parts", get("hls_parts"))
	}
}

func TestNextPart(t *testing.T) {
	const pl = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:1\n" +
		"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.6\n#EXT-X-PART-INF:PART-TARGET=0.2\n" +
		"#EXT-X-MEDIA-SEQUENCE:4\n#EXT-X-MAP:URI=\"init.mp4\"\n" +
		"#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00Z\n" +
		"#EXT-X-PART:DURATION=0.2,URI=\"p0.mp4\",INDEPENDENT=YES\n#EXT-X-PART:DURATION=0.2,URI=\"p1.mp4\"\n" +
		"#EXTINF:0.4,\ns4.mp4\n" +
		"#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.4Z\n" +
		"#EXT-X-PART:DURATION=0.2,URI=\"p2.mp4\",INDEPENDENT=YES\n" +
		"#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p3.mp4\"\n"
	var m playlist.Media
	if err := m.Unmarshal([]byte(pl)); err != nil {
		t.Fatal(err)
	}
	parts, msn, part := nextPart(&m)
	var uris []string
	for _, p := range parts {
		uris = append(uris, p.uri)
	}
	if strings.Join(uris, " ") != "p0.mp4 p1.mp4 p2.mp4" || msn != 5 || part != 1 {
		t.Errorf("parts %v, next %d.%d; want p0 p1 p2 and 5.1", uris, msn, part)
	}
}

// FuzzStreamInput feeds the stream scenario's readers arbitrary input: a
// media playlist for the LL-HLS walk, an RTP payload for the send stamp.
// Neither may panic, and the walk's next position is never behind the
// playlist.
func FuzzStreamInput(f *testing.F) {
	f.Add([]byte("#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:3\n#EXTINF:1,\ns.mp4\n#EXT-X-PART:DURATION=0.2,URI=\"p.mp4\"\n"))
	f.Add(vp8Frame(true, 1, 1, []int{20})[0])
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = sentAt(b)
		var m playlist.Media
		if m.Unmarshal(b) != nil {
			return
		}
		parts, msn, part := nextPart(&m)
		if msn < m.MediaSequence || part < 0 || len(parts) < len(m.Parts) {
			t.Errorf("next %d.%d with media sequence %d, %d parts of %d trailing", msn, part, m.MediaSequence, len(parts), len(m.Parts))
		}
	})
}
