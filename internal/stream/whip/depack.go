package whip

import (
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"

	"github.com/switchboardhq/switchboard/internal/stream"
)

// splitAnnexB returns the NAL units of an Annex B byte stream (start codes
// 00 00 01 or 00 00 00 01), without their start codes; empty units are
// left out. Bytes before the first start code count as a unit, so a
// payload without start codes is one unit.
func splitAnnexB(b []byte) [][]byte {
	var out [][]byte
	start := 0
	i := 0
	for i+2 < len(b) {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			end := i
			if end > start && b[end-1] == 0 {
				end-- // a 4-byte start code
			}
			if end > start {
				out = append(out, b[start:end])
			}
			i += 3
			start = i
			continue
		}
		i++
	}
	if start < len(b) {
		out = append(out, b[start:])
	}
	return out
}

// h264Key reports whether an access unit holds an IDR slice.
func h264Key(nalus [][]byte) bool {
	for _, n := range nalus {
		if len(n) > 0 && n[0]&0x1f == 5 {
			return true
		}
	}
	return false
}

// vp8Key reports whether a VP8 frame is a key frame (RFC 6386 9.1: the
// frame tag's first bit is 0).
func vp8Key(frame []byte) bool { return len(frame) > 0 && frame[0]&1 == 0 }

// vp9Key reports whether a VP9 frame is a key frame, from its
// uncompressed header: frame_marker, profile, show_existing_frame,
// frame_type (VP9 bitstream specification 6.2).
func vp9Key(frame []byte) bool {
	if len(frame) == 0 {
		return false
	}
	b := frame[0]
	if b>>6 != 2 { // frame_marker
		return false
	}
	profile := (b>>5)&1 | ((b>>4)&1)<<1
	bit := 4 // the next bit's index from the top of the byte, after marker and profile
	if profile == 3 {
		bit++ // reserved_zero
	}
	if (b>>(7-bit))&1 == 1 { // show_existing_frame
		return false
	}
	bit++
	return (b>>(7-bit))&1 == 0 // frame_type 0: KEY_FRAME
}

// unwrapper turns 32-bit RTP timestamps into a continuous 64-bit count.
type unwrapper struct {
	started bool
	last    uint32
	acc     int64
}

func (u *unwrapper) unwrap(ts uint32) int64 {
	if !u.started {
		u.started, u.last = true, ts
		return 0
	}
	u.acc += int64(int32(ts - u.last))
	u.last = ts
	return u.acc
}

// depacketizer turns one track's RTP packets into access units.
type depacketizer struct {
	index int // the track's index in the stream
	codec stream.Codec
	clock int
	sb    *samplebuilder.SampleBuilder
	ts    unwrapper
	// offset places the track's first unit on the session's time line:
	// its arrival after the session started, in clock ticks. The tracks'
	// RTP clocks have unrelated origins; arrival keeps them in step to
	// within the network's jitter.
	offset int64
	seen   bool
}

func newDepacketizer(index int, codec stream.Codec, clock int) *depacketizer {
	var d rtp.Depacketizer
	switch codec {
	case stream.H264:
		d = &codecs.H264Packet{}
	case stream.VP8:
		d = &codecs.VP8Packet{}
	case stream.VP9:
		d = &codecs.VP9Packet{}
	default:
		d = &codecs.OpusPacket{}
	}
	return &depacketizer{
		index: index, codec: codec, clock: clock,
		sb: samplebuilder.New(512, d, uint32(clock), samplebuilder.WithMaxTimeDelay(500*time.Millisecond)),
	}
}

// push adds a packet, received since the session's start, and returns the
// units it completes.
func (d *depacketizer) push(pkt *rtp.Packet, since time.Duration) []*stream.Unit {
	if !d.seen {
		d.seen = true
		d.offset = int64(since.Seconds() * float64(d.clock))
	}
	d.sb.Push(pkt)
	var out []*stream.Unit
	for {
		s := d.sb.Pop()
		if s == nil {
			return out
		}
		if len(s.Data) == 0 {
			continue
		}
		pts := d.offset + d.ts.unwrap(s.PacketTimestamp)
		u := &stream.Unit{Track: d.index, PTS: pts, DTS: pts, Time: time.Now()}
		switch d.codec {
		case stream.H264:
			u.NALUs = splitAnnexB(s.Data)
			u.Key = h264Key(u.NALUs)
		case stream.VP8:
			u.Payload, u.Key = s.Data, vp8Key(s.Data)
		case stream.VP9:
			u.Payload, u.Key = s.Data, vp9Key(s.Data)
		default:
			u.Payload, u.Key = s.Data, true
		}
		out = append(out, u)
	}
}
