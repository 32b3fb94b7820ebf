// Package payload reads and patches the codec-specific parts of RTP
// payloads that a forwarding server must understand: the VP8 payload
// descriptor (RFC 7741) with its picture id and TL0PICIDX, and whether a
// packet starts a keyframe in VP8, VP9 or H.264.
package payload

import "errors"

// ErrShort is returned for a payload too short for the header it announces.
var ErrShort = errors.New("payload: truncated header")

// VP8 is a parsed VP8 payload descriptor (RFC 7741, section 4.2), with the
// positions of the fields a forwarder rewrites.
type VP8 struct {
	// Start is the S bit: the packet begins a VP8 partition.
	Start bool
	// PartitionID is the PID field.
	PartitionID uint8
	// NonReference is the N bit: the frame can be dropped without harm.
	NonReference bool

	// PictureID is the picture id when HasPictureID; WidePictureID tells
	// a 15-bit id from a 7-bit one.
	HasPictureID  bool
	WidePictureID bool
	PictureID     uint16

	// TL0PicIdx is the temporal-layer-zero index when HasTL0PicIdx.
	HasTL0PicIdx bool
	TL0PicIdx    uint8

	// TID and LayerSync are the temporal layer fields when HasTID.
	HasTID    bool
	TID       uint8
	LayerSync bool

	// KeyIdx is the key index when HasKeyIdx.
	HasKeyIdx bool
	KeyIdx    uint8

	// Keyframe reports that the packet holds the first bytes of a key
	// frame (S set, partition 0, and the frame header's P bit clear).
	Keyframe bool

	// HeaderSize is the descriptor's length in bytes: the VP8 data
	// starts at payload[HeaderSize].
	HeaderSize int

	picIDAt int // offset of the picture id, 0 when absent
	tl0At   int // offset of TL0PICIDX, 0 when absent
}

// ParseVP8 parses the descriptor at the start of a VP8 RTP payload.
func ParseVP8(p []byte) (VP8, error) {
	var d VP8
	if len(p) < 1 {
		return d, ErrShort
	}
	b := p[0]
	d.NonReference = b&0x20 != 0
	d.Start = b&0x10 != 0
	d.PartitionID = b & 0x07
	i := 1
	if b&0x80 != 0 { // X: extension byte follows
		if len(p) < 2 {
			return d, ErrShort
		}
		x := p[1]
		i = 2
		if x&0x80 != 0 { // I: picture id
			if len(p) < i+1 {
				return d, ErrShort
			}
			d.HasPictureID = true
			d.picIDAt = i
			if p[i]&0x80 != 0 {
				if len(p) < i+2 {
					return d, ErrShort
				}
				d.WidePictureID = true
				d.PictureID = uint16(p[i]&0x7f)<<8 | uint16(p[i+1])
				i += 2
			} else {
				d.PictureID = uint16(p[i] & 0x7f)
				i++
			}
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			if len(p) < i+1 {
				return d, ErrShort
			}
			d.HasTL0PicIdx = true
			d.tl0At = i
			d.TL0PicIdx = p[i]
			i++
		}
		if x&0x30 != 0 { // T or K: TID/Y/KEYIDX byte
			if len(p) < i+1 {
				return d, ErrShort
			}
			d.HasTID = x&0x20 != 0
			d.HasKeyIdx = x&0x10 != 0
			d.TID = p[i] >> 6
			d.LayerSync = p[i]&0x20 != 0
			d.KeyIdx = p[i] & 0x1f
			i++
		}
	}
	d.HeaderSize = i
	if d.Start && d.PartitionID == 0 && len(p) > i {
		d.Keyframe = p[i]&0x01 == 0
	}
	return d, nil
}

// PictureIDMask is the largest picture id the descriptor can carry: 0x7fff
// for a 15-bit id, 0x7f for a 7-bit one.
func (d *VP8) PictureIDMask() uint16 {
	if d.WidePictureID {
		return 0x7fff
	}
	return 0x7f
}

// Rewrite writes p, whose descriptor d describes, to dst (which must be at
// least len(p) long and must not alias p) with the picture id and
// TL0PICIDX replaced (each only when p carries it). The id keeps p's width,
// so it is taken modulo PictureIDMask()+1. It returns dst[:len(p)].
func (d *VP8) Rewrite(dst, p []byte, pictureID uint16, tl0 uint8) []byte {
	dst = dst[:len(p)]
	copy(dst, p)
	if d.HasPictureID {
		if d.WidePictureID {
			dst[d.picIDAt] = 0x80 | byte(pictureID>>8)&0x7f
			dst[d.picIDAt+1] = byte(pictureID)
		} else {
			dst[d.picIDAt] = byte(pictureID) & 0x7f
		}
	}
	if d.HasTL0PicIdx {
		dst[d.tl0At] = tl0
	}
	return dst
}

// VP8Size reads the width and height from the start of a VP8 keyframe
// (RFC 6386, section 9.1): the 3-byte frame tag, the start code 9d 01 2a,
// then 14-bit width and height. data is the payload after the descriptor.
func VP8Size(data []byte) (width, height int, ok bool) {
	if len(data) < 10 || data[0]&0x01 != 0 || data[3] != 0x9d || data[4] != 0x01 || data[5] != 0x2a {
		return 0, 0, false
	}
	width = int(data[6]) | int(data[7]&0x3f)<<8
	height = int(data[8]) | int(data[9]&0x3f)<<8
	return width, height, true
}
