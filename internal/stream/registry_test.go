package stream_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/stream"
)

func avTracks() []*stream.Track {
	return []*stream.Track{
		{Codec: stream.H264, ClockRate: 90000, SPS: []byte{0x67, 1}, PPS: []byte{0x68, 1}},
		{Codec: stream.AAC, ClockRate: 48000, Config: []byte{0x11, 0x90}, SampleRate: 48000, Channels: 2},
	}
}

func video(pts int64, key bool) *stream.Unit {
	return &stream.Unit{Track: 0, PTS: pts, DTS: pts, Key: key, NALUs: [][]byte{{0x65, byte(pts)}}}
}

func audio(pts int64) *stream.Unit {
	return &stream.Unit{Track: 1, PTS: pts, DTS: pts, Key: true, Payload: []byte{1, 2, 3}}
}

func next(t *testing.T, rd *stream.Reader) (*stream.Unit, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u, dropped, err := rd.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return u, dropped
}

func TestPublishPaths(t *testing.T) {
	reg := stream.NewRegistry(stream.Options{Logger: quiet, Namespaces: []string{"live", "test"}})
	cases := map[string]error{
		"live/one":         nil,
		"test/a.b-c_d":     nil,
		"live":             stream.ErrBadPath,
		"live/":            stream.ErrBadPath,
		"/x":               stream.ErrBadPath,
		"live/a/b":         stream.ErrBadPath,
		"live/.hidden":     stream.ErrBadPath,
		"live/sp ace":      stream.ErrBadPath,
		"other/x":          stream.ErrUnknownNamespace,
		"live/" + long(65): stream.ErrBadPath,
	}
	for path, want := range cases {
		t.Run(path, func(t *testing.T) {
			p, err := reg.Publish(path, stream.PublisherInfo{Protocol: "test"}, avTracks())
			if !errors.Is(err, want) {
				t.Fatalf("Publish(%q) = %v, want %v", path, err, want)
			}
			if p != nil {
				p.Close()
			}
		})
	}
}

func long(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a'
	}
	return string(b)
}

func TestBadTracks(t *testing.T) {
	reg := stream.NewRegistry(stream.Options{Logger: quiet})
	cases := map[string][]*stream.Track{
		"none":         nil,
		"nil":          {nil},
		"codec":        {{Codec: "mp3", ClockRate: 44100}},
		"clock":        {{Codec: stream.H264}},
		"aac-noconfig": {{Codec: stream.AAC, ClockRate: 44100}},
	}
	for name, tracks := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := reg.Publish("live/x", stream.PublisherInfo{}, tracks); !errors.Is(err, stream.ErrBadTrack) {
				t.Fatalf("got %v, want ErrBadTrack", err)
			}
		})
	}
	p, err := reg.Publish("live/x", stream.PublisherInfo{}, avTracks())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.WriteUnit(&stream.Unit{Track: 2}); !errors.Is(err, stream.ErrBadTrack) {
		t.Fatalf("unit of track 2: %v", err)
	}
}

// TestSecondPublisherRefused: a live path refuses a second publisher; after
// the first ends (or is kicked) the path is free again.
func TestSecondPublisherRefused(t *testing.T) {
	reg := stream.NewRegistry(stream.Options{Logger: quiet})
	p1, err := reg.Publish("live/a", stream.PublisherInfo{Protocol: "rtmp"}, avTracks())
	if err != nil {
		t.Fatal(err)
	}
	_, err = reg.Publish("live/a", stream.PublisherInfo{Protocol: "whip"}, avTracks())
	if !errors.Is(err, stream.ErrPublisherExists) || stream.StatusCode(err) != 409 {
		t.Fatalf("second publisher: %v", err)
	}
	if p1.Err() != nil {
		t.Fatalf("first publisher disturbed: %v", p1.Err())
	}
	if err := reg.Kick("live/a"); err != nil {
		t.Fatal(err)
	}
	<-p1.Done()
	if !errors.Is(p1.Err(), stream.ErrKicked) {
		t.Fatalf("kicked publisher's Err = %v", p1.Err())
	}
	if err := p1.WriteUnit(video(0, true)); !errors.Is(err, stream.ErrKicked) {
		t.Fatalf("write after kick: %v", err)
	}
	p2, err := reg.Publish("live/a", stream.PublisherInfo{Protocol: "whip"}, avTracks())
	if err != nil {
		t.Fatalf("publish after kick: %v", err)
	}
	p1.Close() // a late Close of the kicked publisher must not end p2
	if p2.Err() != nil {
		t.Fatalf("p2 ended by p1.Close: %v", p2.Err())
	}
	if _, err := reg.Get("live/a"); err != nil {
		t.Fatalf("p2's stream gone: %v", err)
	}
	if err := reg.Kick("live/none"); !errors.Is(err, stream.ErrNotFound) {
		t.Fatalf("kick of nothing: %v", err)
	}
}

// TestSlowReaderDrops: a reader that does not read loses units and resumes
// at a keyframe; the publisher and a fast reader are not held up.
func TestSlowReaderDrops(t *testing.T) {
	reg := stream.NewRegistry(stream.Options{Logger: quiet, QueueSize: 8})
	p, err := reg.Publish("live/s", stream.PublisherInfo{}, avTracks())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	slow, err := reg.Read("live/s", "test")
	if err != nil {
		t.Fatal(err)
	}
	fast, err := reg.Read("live/s", "test")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	var got atomic.Int64
	go func() {
		defer wg.Done()
		for {
			_, dropped, err := fast.Next(context.Background())
			if err != nil {
				return
			}
			if dropped != 0 {
				t.Errorf("fast reader dropped %d", dropped)
			}
			got.Add(1)
		}
	}()
	// 3 GOPs of 1 keyframe + 5 frames + 6 audio, 12 units each, and the
	// start of a 4th (4 units, fewer than the queue holds); the fast
	// reader is handed every one as the publisher writes.
	const total = 40
	for i := 0; i < total; i++ {
		var u *stream.Unit
		if i%2 == 0 {
			u = video(int64(i), i%12 == 0)
		} else {
			u = audio(int64(i))
		}
		if err := p.WriteUnit(u); err != nil {
			t.Fatal(err)
		}
		// The fast reader takes each unit before the next is written.
		waitFor(t, func() bool { return got.Load() == int64(i+1) })
	}
	p.Close()
	wg.Wait()
	if got.Load() != total {
		t.Fatalf("fast reader got %d of %d", got.Load(), total)
	}
	// The slow reader overflowed: it lost units, and reads next from a
	// keyframe.
	if slow.Dropped() == 0 {
		t.Fatal("slow reader dropped nothing")
	}
	u, dropped := next(t, slow)
	if dropped == 0 || !u.Key || u.Track != 0 {
		t.Fatalf("after a loss: unit %+v dropped %d, want a video keyframe and a count", u, dropped)
	}
	n := 1
	for {
		_, _, err := slow.Next(context.Background())
		if errors.Is(err, stream.ErrEnded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if uint64(n)+slow.Dropped() != total {
		t.Fatalf("slow reader: %d read + %d dropped != %d", n, slow.Dropped(), total)
	}
	if st := reg.Stats(); st.Dropped != slow.Dropped() || st.UnitsIn != total || st.Streams != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for !cond() {
		time.Sleep(time.Millisecond)
	}
}

// TestReaderStartsAtKeyframe: a reader attached mid-GOP gets the cached GOP
// from its keyframe; one attached before any keyframe waits for one.
func TestReaderStartsAtKeyframe(t *testing.T) {
	reg := stream.NewRegistry(stream.Options{Logger: quiet})
	p, err := reg.Publish("live/k", stream.PublisherInfo{}, avTracks())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	early, _ := reg.Read("live/k", "test")
	for _, u := range []*stream.Unit{video(1, false), audio(2), video(3, true), audio(4), video(5, false)} {
		if err := p.WriteUnit(u); err != nil {
			t.Fatal(err)
		}
	}
	late, err := reg.Read("live/k", "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, rd := range []*stream.Reader{early, late} {
		for _, want := range []int64{3, 4, 5} {
			u, dropped := next(t, rd)
			if u.PTS != want || dropped != 0 {
				t.Fatalf("got pts %d dropped %d, want %d", u.PTS, dropped, want)
			}
		}
		if rd.Dropped() != 0 {
			t.Fatalf("skipping to the first keyframe counted as a loss: %d", rd.Dropped())
		}
	}
}

func TestAudioOnlyAndEnd(t *testing.T) {
	reg := stream.NewRegistry(stream.Options{Logger: quiet})
	p, err := reg.Publish("live/radio", stream.PublisherInfo{}, []*stream.Track{{Codec: stream.Opus, ClockRate: 48000, SampleRate: 48000, Channels: 2}})
	if err != nil {
		t.Fatal(err)
	}
	rd, _ := reg.Read("live/radio", "whep")
	if err := p.WriteUnit(&stream.Unit{Track: 0, PTS: 960, Key: true, Payload: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	in := reg.List()
	if len(in) != 1 || in[0].Readers["whep"] != 1 || in[0].Viewers["whep"] != 1 || in[0].Units != 1 || in[0].Tracks[0].Codec != stream.Opus {
		t.Fatalf("info %+v", in)
	}
	p.Close()
	if u, _ := next(t, rd); u.PTS != 960 {
		t.Fatalf("queued unit lost at the end: %+v", u)
	}
	if _, _, err := rd.Next(context.Background()); !errors.Is(err, stream.ErrEnded) {
		t.Fatalf("after the end: %v", err)
	}
	if _, err := reg.Read("live/radio", "whep"); !errors.Is(err, stream.ErrNotFound) {
		t.Fatalf("read of an ended stream: %v", err)
	}
	rd.Close()
}

func TestOnPublishAndClose(t *testing.T) {
	reg := stream.NewRegistry(stream.Options{Logger: quiet})
	var got []string
	remove := reg.OnPublish(func(s *stream.Stream) { got = append(got, s.Path()) })
	p, _ := reg.Publish("live/a", stream.PublisherInfo{}, avTracks())
	remove()
	p2, _ := reg.Publish("live/b", stream.PublisherInfo{}, avTracks())
	if len(got) != 1 || got[0] != "live/a" {
		t.Fatalf("hooks saw %v", got)
	}
	reg.Close()
	for _, p := range []*stream.Publisher{p, p2} {
		if !errors.Is(p.Err(), stream.ErrClosed) {
			t.Fatalf("after Close: %v", p.Err())
		}
	}
	if _, err := reg.Publish("live/c", stream.PublisherInfo{}, avTracks()); !errors.Is(err, stream.ErrClosed) {
		t.Fatalf("publish after Close: %v", err)
	}
}

func TestBitrate(t *testing.T) {
	now := time.Unix(1000, 0)
	reg := stream.NewRegistry(stream.Options{Logger: quiet, Now: func() time.Time { return now }})
	p, _ := reg.Publish("live/r", stream.PublisherInfo{}, avTracks())
	defer p.Close()
	for i := 0; i < 10; i++ {
		_ = p.WriteUnit(audio(int64(i))) // 3 bytes each
	}
	now = now.Add(time.Second)
	if b := reg.List()[0].Bitrate; b != 240 {
		t.Fatalf("bitrate %d, want 240", b)
	}
	if up := reg.List()[0].Uptime; up != 1 {
		t.Fatalf("uptime %v", up)
	}
}

var quiet = slog.New(slog.DiscardHandler)
