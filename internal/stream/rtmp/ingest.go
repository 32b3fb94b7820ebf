package rtmp

import (
	"errors"
	"fmt"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/av1"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/vp9"

	"github.com/switchboardhq/switchboard/internal/stream"
)

// ingest turns one RTMP publisher's tracks and data into stream units.
// Its callbacks run on the connection's goroutine, inside Reader.Read.
type ingest struct {
	tracks  []*stream.Track
	ignored []string // codecs of the publish that are not carried
	pub     *stream.Publisher
	err     error // the first write error; ends the connection
}

// errNoTracks: none of the publish's tracks has a codec we carry.
var errNoTracks = errors.New("no track with a supported codec (H.264, H.265, AV1, VP9, AAC, Opus)")

// ticks converts d to ticks of rate, without overflow for long streams.
func ticks(d time.Duration, rate int) int64 {
	sec, rem := int64(d/time.Second), int64(d%time.Second)
	return sec*int64(rate) + rem*int64(rate)/int64(time.Second)
}

func newIngest(rd *gortmplib.Reader) (*ingest, error) {
	in := &ingest{}
	for _, t := range rd.Tracks() {
		idx := len(in.tracks)
		switch c := t.Codec.(type) {
		case *codecs.H264:
			st := &stream.Track{Codec: stream.H264, ClockRate: 90000, SPS: c.SPS, PPS: c.PPS}
			in.tracks = append(in.tracks, st)
			ps := &paramSets{sps: c.SPS, pps: c.PPS}
			rd.OnDataH264(t, func(pts, dts time.Duration, au [][]byte) { in.h264(idx, ps, pts, dts, au) })
		case *codecs.H265:
			st := &stream.Track{Codec: stream.H265, ClockRate: 90000, VPS: c.VPS, SPS: c.SPS, PPS: c.PPS}
			in.tracks = append(in.tracks, st)
			ps := &paramSets{vps: c.VPS, sps: c.SPS, pps: c.PPS}
			rd.OnDataH265(t, func(pts, dts time.Duration, au [][]byte) { in.h265(idx, ps, pts, dts, au) })
		case *codecs.AV1:
			in.tracks = append(in.tracks, &stream.Track{Codec: stream.AV1, ClockRate: 90000})
			rd.OnDataAV1(t, func(pts time.Duration, tu [][]byte) {
				p := ticks(pts, 90000)
				in.write(&stream.Unit{Track: idx, PTS: p, DTS: p, Time: time.Now(), Key: av1.IsRandomAccess2(tu), NALUs: tu})
			})
		case *codecs.VP9:
			in.tracks = append(in.tracks, &stream.Track{Codec: stream.VP9, ClockRate: 90000})
			rd.OnDataVP9(t, func(pts time.Duration, frame []byte) {
				p := ticks(pts, 90000)
				in.write(&stream.Unit{Track: idx, PTS: p, DTS: p, Time: time.Now(), Key: vp9.IsRandomAccess(frame), Payload: frame})
			})
		case *codecs.MPEG4Audio:
			if c.Config == nil {
				in.ignore(rd, t, "aac without AudioSpecificConfig")
				continue
			}
			cfg, err := c.Config.Marshal()
			if err != nil {
				return nil, fmt.Errorf("aac config: %w", err)
			}
			rate := c.Config.SampleRate
			in.tracks = append(in.tracks, &stream.Track{Codec: stream.AAC, ClockRate: rate, Config: cfg, SampleRate: rate, Channels: c.Config.ChannelCount})
			rd.OnDataMPEG4Audio(t, func(pts time.Duration, au []byte) {
				p := ticks(pts, rate)
				in.write(&stream.Unit{Track: idx, PTS: p, DTS: p, Time: time.Now(), Key: true, Payload: au})
			})
		case *codecs.Opus:
			ch := 2
			if c.IDHeader != nil && c.IDHeader.ChannelCount > 0 {
				ch = int(c.IDHeader.ChannelCount)
			}
			in.tracks = append(in.tracks, &stream.Track{Codec: stream.Opus, ClockRate: 48000, SampleRate: 48000, Channels: ch})
			rd.OnDataOpus(t, func(pts time.Duration, packet []byte) {
				p := ticks(pts, 48000)
				in.write(&stream.Unit{Track: idx, PTS: p, DTS: p, Time: time.Now(), Key: true, Payload: packet})
			})
		default:
			in.ignore(rd, t, fmt.Sprintf("%T", t.Codec))
		}
	}
	if len(in.tracks) == 0 {
		return nil, fmt.Errorf("%w; got %v", errNoTracks, in.ignored)
	}
	return in, nil
}

// ignore registers a callback that drops the data of track t (the reader
// calls one for every track it announced) and notes its codec.
func (in *ingest) ignore(rd *gortmplib.Reader, t *gortmplib.Track, name string) {
	in.ignored = append(in.ignored, name)
	switch t.Codec.(type) {
	case *codecs.MPEG4Audio:
		rd.OnDataMPEG4Audio(t, func(time.Duration, []byte) {})
	case *codecs.MPEG1Audio:
		rd.OnDataMPEG1Audio(t, func(time.Duration, []byte) {})
	case *codecs.AC3:
		rd.OnDataAC3(t, func(time.Duration, []byte) {})
	case *codecs.G711:
		rd.OnDataG711(t, func(time.Duration, []byte) {})
	case *codecs.LPCM:
		rd.OnDataLPCM(t, func(time.Duration, []byte) {})
	case *codecs.FLAC:
		rd.OnDataFLAC(t, func(time.Duration, []byte) {})
	}
}

func (in *ingest) write(u *stream.Unit) {
	if in.err != nil || in.pub == nil {
		return
	}
	if err := in.pub.WriteUnit(u); err != nil {
		in.err = err
	}
}

// paramSets are a video track's current parameter sets. RTMP sends them
// once, in the sequence header; they are put back before every keyframe
// that lacks them, so a reader joining later (and an HLS muxer, which
// drops video until it has seen them) can decode.
type paramSets struct {
	vps, sps, pps []byte
}

func (in *ingest) h264(idx int, ps *paramSets, pts, dts time.Duration, au [][]byte) {
	au = dropShort(au, 1)
	if len(au) == 0 {
		return
	}
	var hasSPS, hasPPS, only = false, false, true
	for _, n := range au {
		if len(n) == 0 {
			continue
		}
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeSPS:
			ps.sps, hasSPS = n, true
		case h264.NALUTypePPS:
			ps.pps, hasPPS = n, true
		default:
			only = false
		}
	}
	if only {
		return // a sequence header: parameter sets only, no picture
	}
	key := h264.IsRandomAccess(au)
	if key && (!hasSPS || !hasPPS) && ps.sps != nil && ps.pps != nil {
		au = append([][]byte{ps.sps, ps.pps}, au...)
	}
	in.write(&stream.Unit{Track: idx, PTS: ticks(pts, 90000), DTS: ticks(dts, 90000), Time: time.Now(), Key: key, NALUs: au})
}

func (in *ingest) h265(idx int, ps *paramSets, pts, dts time.Duration, au [][]byte) {
	au = dropShort(au, 2)
	if len(au) == 0 {
		return
	}
	var has, only = 0, true
	for _, n := range au {
		if len(n) < 2 {
			continue
		}
		switch h265.NALUType((n[0] >> 1) & 0x3f) {
		case h265.NALUType_VPS_NUT:
			ps.vps, has = n, has|1
		case h265.NALUType_SPS_NUT:
			ps.sps, has = n, has|2
		case h265.NALUType_PPS_NUT:
			ps.pps, has = n, has|4
		default:
			only = false
		}
	}
	if only {
		return
	}
	key := h265.IsRandomAccess(au)
	if key && has != 7 && ps.vps != nil && ps.sps != nil && ps.pps != nil {
		au = append([][]byte{ps.vps, ps.sps, ps.pps}, au...)
	}
	in.write(&stream.Unit{Track: idx, PTS: ticks(pts, 90000), DTS: ticks(dts, 90000), Time: time.Now(), Key: key, NALUs: au})
}

// dropShort returns au without the NAL units shorter than a header (min
// bytes), which the bitstream helpers cannot take.
func dropShort(au [][]byte, min int) [][]byte {
	for _, n := range au {
		if len(n) < min {
			out := make([][]byte, 0, len(au))
			for _, n := range au {
				if len(n) >= min {
					out = append(out, n)
				}
			}
			return out
		}
	}
	return au
}
