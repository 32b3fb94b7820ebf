package record

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	mp4codecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"

	"github.com/switchboardhq/switchboard/internal/stream"
)

// fragmentDuration is how much media one fMP4 fragment holds.
const fragmentDuration = time.Second

// recTrack is one recorded track. Owned by the writer.
type recTrack struct {
	id      int // fMP4 track id, from 1
	name    stream.Codec
	rate    int
	video   bool
	codec   mp4codecs.Codec // nil until known (H.264/H.265 without out-of-band parameter sets)
	pending *stream.Unit    // the last unit, written once the next gives its duration
	lastDur uint32
	samples []*fmp4.Sample
	base    time.Duration // DTS of samples[0]
}

// writer turns one stream's units into fMP4 files. Used by one goroutine.
type writer struct {
	dir     string
	segDur  time.Duration
	tracks  []*recTrack
	byIdx   map[int]*recTrack
	video   bool
	f       *os.File
	name    string
	origin  time.Duration // DTS of the file's first unit
	fragAt  time.Duration // DTS the current fragment started at
	seq     uint32
	scratch seekablebuffer.Buffer
}

func newWriter(tracks []*stream.Track, dir string, segDur time.Duration) *writer {
	w := &writer{dir: dir, segDur: segDur, byIdx: map[int]*recTrack{}}
	for i, t := range tracks {
		rt := &recTrack{name: t.Codec, rate: t.ClockRate, video: t.Kind() == stream.Video}
		switch t.Codec {
		case stream.H264:
			if t.SPS != nil && t.PPS != nil {
				rt.codec = &mp4codecs.H264{SPS: t.SPS, PPS: t.PPS}
			}
		case stream.H265:
			if t.VPS != nil && t.SPS != nil && t.PPS != nil {
				rt.codec = &mp4codecs.H265{VPS: t.VPS, SPS: t.SPS, PPS: t.PPS}
			}
		case stream.AAC:
			var cfg mpeg4audio.AudioSpecificConfig
			if cfg.Unmarshal(t.Config) != nil {
				continue
			}
			rt.codec = &mp4codecs.MPEG4Audio{Config: cfg}
		case stream.Opus:
			rt.codec = &mp4codecs.Opus{ChannelCount: max(t.Channels, 1)}
		default:
			continue // VP8 has no fMP4 mapping here; VP9 and AV1 need headers parsed first
		}
		if rt.video && w.video {
			continue // one video track
		}
		w.video = w.video || rt.video
		rt.id = len(w.tracks) + 1
		w.tracks = append(w.tracks, rt)
		w.byIdx[i] = rt
	}
	return w
}

// toTime converts ticks of rate to a duration.
func toTime(ticks int64, rate int) time.Duration {
	r := int64(rate)
	return time.Duration(ticks/r)*time.Second + time.Duration(ticks%r)*time.Second/time.Duration(r)
}

// toTicks converts a duration to ticks of rate.
func toTicks(d time.Duration, rate int) int64 {
	return int64(d/time.Second)*int64(rate) + int64(d%time.Second)*int64(rate)/int64(time.Second)
}

// learn takes the parameter sets of an H.264 or H.265 track from a
// keyframe when they were not known out of band.
func (t *recTrack) learn(u *stream.Unit) {
	codec := t.name
	if t.codec != nil || !u.Key {
		return
	}
	var vps, sps, pps []byte
	for _, n := range u.NALUs {
		if len(n) < 2 {
			continue
		}
		if codec == stream.H264 {
			switch h264.NALUType(n[0] & 0x1f) {
			case h264.NALUTypeSPS:
				sps = n
			case h264.NALUTypePPS:
				pps = n
			}
			continue
		}
		switch (n[0] >> 1) & 0x3f {
		case 32:
			vps = n
		case 33:
			sps = n
		case 34:
			pps = n
		}
	}
	switch {
	case codec == stream.H264 && sps != nil && pps != nil:
		t.codec = &mp4codecs.H264{SPS: sps, PPS: pps}
	case codec == stream.H265 && vps != nil && sps != nil && pps != nil:
		t.codec = &mp4codecs.H265{VPS: vps, SPS: sps, PPS: pps}
	}
}

// write adds u; it returns the name of a file it finished, if any.
func (w *writer) write(u *stream.Unit, now time.Time) (finished string, err error) {
	t := w.byIdx[u.Track]
	if t == nil {
		return "", nil
	}
	t.learn(u)
	dts := toTime(u.DTS, t.rate)
	starts := (u.Key && t.video) || !w.video
	if starts && (w.f == nil || dts-w.origin >= w.segDur) {
		if !w.ready() {
			return "", nil
		}
		if w.f != nil {
			if finished, err = w.close(); err != nil {
				return "", err
			}
		}
		if err := w.open(now, dts); err != nil {
			return finished, err
		}
	}
	if w.f == nil {
		return finished, nil // waiting for the first keyframe
	}
	if t.pending != nil {
		d := u.DTS - t.pending.DTS
		if d <= 0 || d > int64(t.rate)*10 {
			d = int64(t.lastDur)
		}
		t.add(t.pending, uint32(d), t.rate)
		t.lastDur = uint32(d)
	}
	t.pending = u
	if dts-w.fragAt >= fragmentDuration {
		if err := w.flush(); err != nil {
			return finished, err
		}
		w.fragAt = dts
	}
	return finished, nil
}

// ready reports whether every track's codec is known, so the init section
// can be written.
func (w *writer) ready() bool {
	for _, t := range w.tracks {
		if t.codec == nil {
			return false
		}
	}
	return true
}

// add appends u as a sample of duration d.
func (t *recTrack) add(u *stream.Unit, d uint32, rate int) {
	s := &fmp4.Sample{Duration: d, PTSOffset: int32(u.PTS - u.DTS), IsNonSyncSample: t.video && !u.Key}
	if u.NALUs != nil {
		avcc, err := h264.AVCC(u.NALUs).Marshal()
		if err != nil {
			return
		}
		s.Payload = avcc
	} else {
		s.Payload = u.Payload
	}
	if len(t.samples) == 0 {
		t.base = toTime(u.DTS, rate)
	}
	t.samples = append(t.samples, s)
}

func (w *writer) open(now time.Time, dts time.Duration) error {
	w.name = filepath.Join(w.dir, now.UTC().Format("20060102-150405.000")+".mp4")
	f, err := os.OpenFile(w.name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("record: %w", err)
	}
	init := fmp4.Init{}
	for _, t := range w.tracks {
		init.Tracks = append(init.Tracks, &fmp4.InitTrack{ID: t.id, TimeScale: uint32(t.rate), Codec: t.codec})
	}
	w.scratch.Reset()
	if err := init.Marshal(&w.scratch); err != nil {
		_ = f.Close()
		return fmt.Errorf("record: init section: %w", err)
	}
	if _, err := f.Write(w.scratch.Bytes()); err != nil {
		_ = f.Close()
		return fmt.Errorf("record: %w", err)
	}
	w.f, w.origin, w.fragAt, w.seq = f, dts, dts, 0
	return nil
}

// flush writes the samples gathered as one fragment.
func (w *writer) flush() error {
	part := fmp4.Part{SequenceNumber: w.seq}
	for _, t := range w.tracks {
		if len(t.samples) == 0 {
			continue
		}
		base := toTicks(t.base-w.origin, t.rate)
		part.Tracks = append(part.Tracks, &fmp4.PartTrack{ID: t.id, BaseTime: uint64(max(base, 0)), Samples: t.samples})
		t.samples = nil
	}
	if len(part.Tracks) == 0 {
		return nil
	}
	w.seq++
	w.scratch.Reset()
	if err := part.Marshal(&w.scratch); err != nil {
		return fmt.Errorf("record: fragment: %w", err)
	}
	if _, err := w.f.Write(w.scratch.Bytes()); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	return nil
}

// close finishes the current file: the pending units go in with their
// track's last duration. It returns the file's name ("" when none).
func (w *writer) close() (string, error) {
	if w.f == nil {
		return "", nil
	}
	for _, t := range w.tracks {
		if t.pending != nil {
			t.add(t.pending, max(t.lastDur, 1), t.rate)
			t.pending = nil
		}
	}
	err := w.flush()
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("record: %w", cerr)
	}
	name := w.name
	w.f, w.name = nil, ""
	return name, err
}
