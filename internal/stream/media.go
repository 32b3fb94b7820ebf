package stream

import (
	"fmt"
	"time"
)

// Codec names a track's codec, as it appears in GET /api/streams.
type Codec string

// The codecs a track may carry. Which ingest produces and which output
// carries each one is in docs/streaming.md (the codec matrix).
const (
	H264 Codec = "h264"
	H265 Codec = "h265"
	AV1  Codec = "av1"
	VP8  Codec = "vp8"
	VP9  Codec = "vp9"
	AAC  Codec = "aac"
	Opus Codec = "opus"
)

// Kind is "video" or "audio".
type Kind string

// The two kinds of track.
const (
	Video Kind = "video"
	Audio Kind = "audio"
)

// Kind returns whether c is a video or an audio codec.
func (c Codec) Kind() Kind {
	switch c {
	case AAC, Opus:
		return Audio
	default:
		return Video
	}
}

// Valid reports whether c is one of the known codecs.
func (c Codec) Valid() bool {
	switch c {
	case H264, H265, AV1, VP8, VP9, AAC, Opus:
		return true
	}
	return false
}

// Track describes one elementary stream of a live stream. The publisher
// fills it in before Registry.Publish; it must not change afterwards.
type Track struct {
	// Codec is the track's codec.
	Codec Codec
	// ClockRate is the rate of the track's timestamps (Unit.PTS, Unit.DTS)
	// in ticks per second: 90000 for video, the sample rate for AAC,
	// 48000 for Opus. Required.
	ClockRate int
	// VPS (H.265 only), SPS and PPS (H.264, H.265) are the parameter sets
	// as NAL units without start codes or length prefixes. They may be nil
	// when the publisher does not know them out of band (WHIP): then they
	// come inside the access units, before the first keyframe at the
	// latest, and a reader that needs them out of band takes them from
	// there.
	VPS, SPS, PPS []byte
	// Config is codec-specific decoder configuration: for AAC the
	// AudioSpecificConfig (ISO 14496-3) bytes, required; for AV1 the
	// sequence header OBU when known; else nil.
	Config []byte
	// SampleRate and Channels describe an audio track (AAC: as in Config;
	// Opus: 48000 and 1 or 2). Zero for video.
	SampleRate int
	Channels   int
}

// Kind returns the track's kind.
func (t *Track) Kind() Kind { return t.Codec.Kind() }

// validate checks the fields every reader relies on.
func (t *Track) validate() error {
	switch {
	case t == nil:
		return fmt.Errorf("%w: nil track", ErrBadTrack)
	case !t.Codec.Valid():
		return fmt.Errorf("%w: unknown codec %q", ErrBadTrack, t.Codec)
	case t.ClockRate <= 0:
		return fmt.Errorf("%w: %s track has no clock rate", ErrBadTrack, t.Codec)
	case t.Codec == AAC && len(t.Config) == 0:
		return fmt.Errorf("%w: aac track has no AudioSpecificConfig", ErrBadTrack)
	}
	return nil
}

// Unit is one access unit of one track: everything that shares a
// presentation time. Once written with Publisher.WriteUnit it is shared by
// every reader and must not be modified by anyone.
type Unit struct {
	// Track is the index of the unit's track in the tracks given to
	// Registry.Publish (and returned by Stream.Tracks).
	Track int
	// PTS is the presentation time and DTS the decoding time, in ticks of
	// the track's ClockRate, from an origin the publisher chooses (the
	// same for all its tracks: they stay in sync). DTS equals PTS except
	// for video with B-frames. They may start anywhere and may be
	// negative.
	PTS, DTS int64
	// Time is the wall-clock time the unit was captured or received; it
	// may be zero when unknown.
	Time time.Time
	// Key marks a random access point: an IDR picture (H.264), an IRAP
	// picture (H.265), a key frame (VP8, VP9, AV1). Always true for audio.
	Key bool
	// NALUs is the payload of an H.264 or H.265 access unit (NAL units
	// without start codes or length prefixes) or of an AV1 temporal unit
	// (OBUs). Nil for the other codecs.
	NALUs [][]byte
	// Payload is the payload of the other codecs: one AAC access unit
	// (raw, no ADTS header), one Opus packet, one VP8 or VP9 frame.
	Payload []byte
}

// Size returns the unit's payload size in bytes.
func (u *Unit) Size() int {
	n := len(u.Payload)
	for _, b := range u.NALUs {
		n += len(b)
	}
	return n
}
