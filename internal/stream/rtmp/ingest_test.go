package rtmp

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/switchboardhq/switchboard/internal/stream"
)

func TestTicks(t *testing.T) {
	cases := []struct {
		d    time.Duration
		rate int
		want int64
	}{
		{0, 90000, 0},
		{time.Second, 90000, 90000},
		{40 * time.Millisecond, 90000, 3600},
		{21333 * time.Microsecond, 48000, 1023},
		{100 * time.Hour, 90000, 100 * 3600 * 90000},
		{-time.Second, 44100, -44100},
	}
	for _, c := range cases {
		if got := ticks(c.d, c.rate); got != c.want {
			t.Errorf("ticks(%s, %d) = %d, want %d", c.d, c.rate, got, c.want)
		}
	}
}

var (
	testSPS = []byte{0x67, 0x42, 0xc0, 0x1e, 0xd9}
	testPPS = []byte{0x68, 0xce, 0x3c, 0x80}
	testIDR = []byte{0x65, 0x88, 0x84}
	testP   = []byte{0x41, 0x9a, 0x02}
)

func newTestIngest(t testing.TB) (*ingest, *paramSets, *stream.Reader) {
	t.Helper()
	reg := stream.NewRegistry(stream.Options{Logger: slog.New(slog.DiscardHandler), QueueSize: 1 << 12})
	in := &ingest{tracks: []*stream.Track{{Codec: stream.H264, ClockRate: 90000, SPS: testSPS, PPS: testPPS}}}
	pub, err := reg.Publish("live/t", stream.PublisherInfo{}, in.tracks)
	if err != nil {
		t.Fatal(err)
	}
	in.pub = pub
	rd, _ := pub.Stream().AddReader("test")
	t.Cleanup(pub.Close)
	return in, &paramSets{sps: testSPS, pps: testPPS}, rd
}

func nextUnit(t testing.TB, rd *stream.Reader) *stream.Unit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	u, _, err := rd.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestParameterSetsBeforeKeyframes: RTMP sends SPS and PPS once; every
// keyframe is written with them in front, the latest ones after a new
// sequence header; other frames are left alone.
func TestParameterSetsBeforeKeyframes(t *testing.T) {
	in, ps, rd := newTestIngest(t)
	in.h264(0, ps, 0, 0, [][]byte{testIDR})
	u := nextUnit(t, rd)
	if !u.Key || len(u.NALUs) != 3 || !bytes.Equal(u.NALUs[0], testSPS) || !bytes.Equal(u.NALUs[1], testPPS) {
		t.Fatalf("keyframe %x", u.NALUs)
	}
	in.h264(0, ps, 40*time.Millisecond, 40*time.Millisecond, [][]byte{testP})
	if u := nextUnit(t, rd); u.Key || len(u.NALUs) != 1 || u.PTS != 3600 {
		t.Fatalf("P frame %+v", u)
	}
	sps2 := []byte{0x67, 0x64, 0, 0x1f}
	in.h264(0, ps, 0, 0, [][]byte{sps2, testPPS}) // a new sequence header: no unit
	in.h264(0, ps, 80*time.Millisecond, 80*time.Millisecond, [][]byte{testIDR})
	if u := nextUnit(t, rd); !bytes.Equal(u.NALUs[0], sps2) {
		t.Fatalf("keyframe after a new SPS starts with %x", u.NALUs[0])
	}
	in.h264(0, ps, 120*time.Millisecond, 120*time.Millisecond, [][]byte{testSPS, testPPS, testIDR})
	if u := nextUnit(t, rd); len(u.NALUs) != 3 {
		t.Fatalf("parameter sets doubled: %d NAL units", len(u.NALUs))
	}
}

// FuzzH264AccessUnit feeds arbitrary NAL units: no panic, and a keyframe
// always leaves with an SPS and a PPS.
func FuzzH264AccessUnit(f *testing.F) {
	f.Add(testIDR, testP, []byte{})
	f.Add(testSPS, testPPS, testIDR)
	f.Add([]byte{0x67}, []byte{}, []byte{0x65})
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		in, ps, rd := newTestIngest(t)
		in.h264(0, ps, time.Second, time.Second, [][]byte{a, b, c})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		u, _, err := rd.Next(ctx)
		if err != nil {
			return // parameter sets only: nothing written
		}
		if !u.Key {
			return
		}
		var sps, pps bool
		for _, n := range u.NALUs {
			if len(n) > 0 {
				sps = sps || h264.NALUType(n[0]&0x1f) == h264.NALUTypeSPS
				pps = pps || h264.NALUType(n[0]&0x1f) == h264.NALUTypePPS
			}
		}
		if !sps || !pps {
			t.Fatalf("keyframe without parameter sets: %x", u.NALUs)
		}
	})
}
