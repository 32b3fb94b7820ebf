package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
)

// The LL-HLS part of the stream scenario (--hls-readers M): ffmpeg
// publishes an H.264 test pattern over RTMP (about 2 Mbit/s, a keyframe
// every second) to live/bench-rtmp, and M readers follow its LL-HLS media
// playlist with blocking reloads (_HLS_msn, _HLS_part), fetching every
// part that appears. The figures: parts and bytes fetched, and the part
// delay, from the playlist response that first lists a part to the end of
// the part's fetch. Playlists are parsed with gohlslib's playlist package,
// the library the server's muxer comes from.

// rtmpStreamPath is the stream ffmpeg publishes.
const rtmpStreamPath = "live/bench-rtmp"

// rtmpServerArgs turns the RTMP ingest on, on a free loopback port, and
// returns the arguments and the address.
func rtmpServerArgs() ([]string, string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", fmt.Errorf("rtmp: free TCP port: %w", err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return []string{"--rtmp-addr", addr}, addr, nil
}

// startFFmpeg publishes the test pattern to the RTMP ingest at addr until
// ctx ends or the returned stop is called.
func startFFmpeg(ctx context.Context, bin, addr, key string) (stop func(), err error) {
	args := []string{"-hide_banner", "-loglevel", "error", "-nostdin", "-re",
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
		"-c:v", "libx264", "-profile:v", "baseline", "-preset", "veryfast", "-tune", "zerolatency",
		"-g", "30", "-keyint_min", "30", "-sc_threshold", "0",
		"-b:v", "2000k", "-maxrate", "2000k", "-bufsize", "2000k", "-pix_fmt", "yuv420p",
		"-f", "flv", "rtmp://" + addr + "/" + rtmpStreamPath + "?key=" + url.QueryEscape(key)}
	cctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(cctx, bin, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("ffmpeg: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	return func() { cancel(); <-done }, nil
}

// hlsReader follows one media playlist and fetches its parts.
type hlsReader struct {
	client *http.Client
	media  *url.URL

	mu        sync.Mutex
	recording bool
	parts     uint64 // fetched while recording
	bytes     uint64
	mediaDur  time.Duration // of the parts fetched
	errs      uint64
	delay     hist // µs, listed to fetched
}

// hlsMediaURL reads the multivariant playlist at index and returns its
// first variant's URL, trying again while the stream is not live (404)
// until wait has passed.
func hlsMediaURL(ctx context.Context, client *http.Client, index string, wait time.Duration) (*url.URL, error) {
	base, err := url.Parse(index)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		b, status, err := httpGet(ctx, client, index)
		if err == nil {
			pl, err := playlist.Unmarshal(b)
			if err != nil {
				return nil, fmt.Errorf("hls: %s: %w", index, err)
			}
			mv, ok := pl.(*playlist.Multivariant)
			if !ok || len(mv.Variants) == 0 {
				return nil, fmt.Errorf("hls: %s is not a multivariant playlist with a variant", index)
			}
			return base.Parse(mv.Variants[0].URI)
		}
		if status != http.StatusNotFound || time.Now().After(deadline) {
			return nil, err
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// httpGet returns the body of a 200 answer.
func httpGet(ctx context.Context, client *http.Client, u string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, fmt.Errorf("GET %s: HTTP %d: %.200s", u, resp.StatusCode, b)
	}
	return b, resp.StatusCode, nil
}

// partRef is a part of a media playlist.
type partRef struct {
	uri string
	gap bool
	dur time.Duration
}

// nextPart lists a media playlist's parts, oldest first, and the position
// (media sequence number, part index) of the part after the last one: what
// a blocking reload asks for.
func nextPart(m *playlist.Media) (parts []partRef, msn, part int) {
	for _, s := range m.Segments {
		for _, p := range s.Parts {
			parts = append(parts, partRef{uri: p.URI, gap: p.Gap, dur: p.Duration})
		}
	}
	for _, p := range m.Parts {
		parts = append(parts, partRef{uri: p.URI, gap: p.Gap, dur: p.Duration})
	}
	return parts, m.MediaSequence + len(m.Segments), len(m.Parts)
}

// run follows the playlist until ctx ends. The parts listed in the first
// playlist are taken as seen; every later one is fetched once.
func (r *hlsReader) run(ctx context.Context) {
	seen := map[string]bool{}
	first := true
	msn, part := -1, 0
	for ctx.Err() == nil {
		u := *r.media
		if msn >= 0 {
			q := u.Query()
			q.Set("_HLS_msn", strconv.Itoa(msn))
			q.Set("_HLS_part", strconv.Itoa(part))
			u.RawQuery = q.Encode()
		}
		b, _, err := httpGet(ctx, r.client, u.String())
		listed := time.Now()
		var m playlist.Media
		if err == nil {
			err = m.Unmarshal(b)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.count(func() { r.errs++ })
			msn = -1 // start again without blocking
			_ = sleepCtx(ctx, 100*time.Millisecond)
			continue
		}
		parts, nmsn, npart := nextPart(&m)
		msn, part = nmsn, npart
		fresh := map[string]bool{}
		for _, p := range parts {
			fresh[p.uri] = true
			if seen[p.uri] || p.gap {
				continue
			}
			seen[p.uri] = true
			if first {
				continue
			}
			pu, err := r.media.Parse(p.uri)
			if err != nil {
				r.count(func() { r.errs++ })
				continue
			}
			body, _, err := httpGet(ctx, r.client, pu.String())
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				r.count(func() { r.errs++ })
				continue
			}
			d := time.Since(listed)
			r.count(func() {
				r.parts++
				r.bytes += uint64(len(body))
				r.mediaDur += p.dur
				r.delay.record(uint64(d.Microseconds()))
			})
		}
		first = false
		for k := range seen { // forget the parts that left the playlist
			if !fresh[k] {
				delete(seen, k)
			}
		}
	}
}

// count applies f to the counters when recording.
func (r *hlsReader) count(f func()) {
	r.mu.Lock()
	if r.recording {
		f()
	}
	r.mu.Unlock()
}

// runHLS measures --hls-readers LL-HLS readers of an RTMP stream and adds
// the hls_ figures to s.
func runHLS(ctx context.Context, e *env, s *metrics) error {
	if e.o.rtmpAddr == "" {
		return errors.New("hls: the server has no RTMP ingest (--rtmp)")
	}
	stop, err := startFFmpeg(ctx, e.o.ffmpeg, e.o.rtmpAddr, e.t.APIKey)
	if err != nil {
		return err
	}
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: e.o.hlsReaders + 1}}
	media, err := hlsMediaURL(ctx, client, "http://"+e.t.Addr+"/hls/"+rtmpStreamPath+"/index.m3u8", e.o.setupTimeout)
	if err != nil {
		return err
	}
	readers := make([]*hlsReader, e.o.hlsReaders)
	for i := range readers {
		readers[i] = &hlsReader{client: client, media: media}
		wg.Add(1)
		go func() { defer wg.Done(); readers[i].run(ctx) }()
	}
	fmt.Fprintf(os.Stderr, "stream: %d LL-HLS readers of %s; measuring %s\n", len(readers), media, e.o.duration)
	if err := sleepCtx(ctx, max(e.o.warmup, 2*time.Second)); err != nil {
		return err
	}
	setRecording(readers, true)
	m := e.startMeter()
	if err := sleepCtx(ctx, e.o.duration); err != nil {
		return err
	}
	mm := e.stopMeter(m)
	setRecording(readers, false)
	var parts, bytes, errs uint64
	var mediaDur time.Duration
	var delay hist
	for _, r := range readers {
		r.mu.Lock()
		parts += r.parts
		bytes += r.bytes
		errs += r.errs
		mediaDur += r.mediaDur
		delay.merge(&r.delay)
		r.mu.Unlock()
	}
	s.add("hls_readers", float64(len(readers)), "", "")
	s.add("hls_parts", float64(parts), "count", "")
	s.add("hls_parts_per_s", float64(parts)/mm.wall, "1/s", "+")
	s.add("hls_mbit_s", float64(bytes)*8/1e6/mm.wall, "Mbit/s", "")
	// Media seconds fetched per reader and second: under 100 when the
	// readers fall behind, or when ffmpeg, short of CPU, encodes slower
	// than real time.
	s.add("hls_realtime_pct", 100*mediaDur.Seconds()/float64(len(readers))/mm.wall, "%", "+")
	s.add("hls_errors", float64(errs), "count", "-")
	s.add("hls_part_delay_p50_ms", hlsMs(&delay, 0.50), "ms", "-")
	s.add("hls_part_delay_p99_ms", hlsMs(&delay, 0.99), "ms", "-")
	s.add("hls_server_cpu_pct", mm.srvPct, "%core", "-")
	s.add("hls_other_cpu_pct", mm.otherPct, "%core", "")
	e.checkSaturation(mm, "hls")
	return nil
}

func setRecording(readers []*hlsReader, on bool) {
	for _, r := range readers {
		r.mu.Lock()
		r.recording = on
		r.mu.Unlock()
	}
}

// hlsMs is a quantile of h in milliseconds, NaN when h is empty.
func hlsMs(h *hist, q float64) float64 {
	if h.N == 0 {
		return math.NaN()
	}
	return float64(h.quantile(q)) / 1000
}
