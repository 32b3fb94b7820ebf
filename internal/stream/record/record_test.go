package record_test

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"

	"github.com/switchboardhq/switchboard/internal/stream"
	"github.com/switchboardhq/switchboard/internal/stream/record"
)

var quiet = slog.New(slog.DiscardHandler)

// TestSegmentsAndRetention: an Opus stream is cut into files of at least
// the segment duration, each starting with an init section; a file older
// than the retention goes when a file is finished, newer ones stay.
func TestSegmentsAndRetention(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	old := filepath.Join(dir, "live", "old", "20250101-000000.000.mp4")
	fresh := filepath.Join(dir, "live", "old", "20260102-030000.000.mp4")
	for _, f := range []string{old, fresh} {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.Chtimes(old, now.Add(-2*time.Hour), now.Add(-2*time.Hour))
	_ = os.Chtimes(fresh, now.Add(-time.Minute), now.Add(-time.Minute))

	reg := stream.NewRegistry(stream.Options{Logger: quiet, Namespaces: []string{"live", "other"}})
	clock := now
	rec, err := record.New(record.Options{
		Registry: reg, Dir: dir, Namespaces: []string{"live"}, Logger: quiet,
		SegmentDuration: time.Second, Retention: time.Hour,
		Now: func() time.Time { clock = clock.Add(time.Millisecond); return clock },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	opus := []*stream.Track{{Codec: stream.Opus, ClockRate: 48000, SampleRate: 48000, Channels: 2}}
	for _, path := range []string{"live/radio", "other/radio"} {
		p, err := reg.Publish(path, stream.PublisherInfo{}, opus)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 150; i++ { // 3 s of 20 ms packets, within the reader's queue
			pts := int64(i) * 960
			if err := p.WriteUnit(&stream.Unit{Track: 0, PTS: pts, DTS: pts, Key: true, Payload: []byte{0xfc, byte(i)}}); err != nil {
				t.Fatal(err)
			}
		}
		p.Close()
	}
	rec.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "live", "radio", "*.mp4"))
	if len(files) < 2 {
		t.Fatalf("files %v, want at least 2 (3 s in 1 s segments)", files)
	}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		var init fmp4.Init
		err = init.Unmarshal(fh)
		fh.Close()
		if err != nil || len(init.Tracks) != 1 || init.Tracks[0].TimeScale != 48000 {
			t.Fatalf("%s: init %+v, %v", f, init, err)
		}
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Fatalf("a file past retention is still there: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatalf("a file within retention was removed: %v", err)
	}
	if other, _ := filepath.Glob(filepath.Join(dir, "other", "*", "*")); len(other) != 0 {
		t.Fatalf("a namespace not recorded was: %v", other)
	}
}

func TestNoDirectory(t *testing.T) {
	if _, err := record.New(record.Options{Registry: stream.NewRegistry(stream.Options{})}); err == nil {
		t.Fatal("no error without a directory")
	}
}
