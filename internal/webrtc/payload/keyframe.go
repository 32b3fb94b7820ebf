package payload

import "strings"

// IsKeyframe reports whether an RTP payload of the codec named by mime
// type (video/VP8, video/VP9, video/H264) starts or carries a keyframe.
// For other codecs (audio) it reports true: every packet is a place
// where forwarding may start.
func IsKeyframe(mimeType string, p []byte) bool {
	switch strings.ToLower(mimeType) {
	case "video/vp8":
		d, err := ParseVP8(p)
		return err == nil && d.Keyframe
	case "video/vp9":
		return vp9Keyframe(p)
	case "video/h264":
		return h264Keyframe(p)
	case "video/av1":
		return false
	default:
		return true
	}
}

// vp9Keyframe reads the VP9 payload descriptor (draft-ietf-payload-vp9):
// a keyframe is the start of a frame (B) that is not inter-predicted (P
// clear) in the lowest spatial layer.
func vp9Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	b := p[0]
	interPicture := b&0x40 != 0
	begin := b&0x08 != 0
	if interPicture || !begin {
		return false
	}
	if b&0x20 == 0 { // L: no layer indices, a single spatial layer
		return true
	}
	i := 1
	if b&0x80 != 0 { // I: picture id
		if len(p) < 2 {
			return false
		}
		if p[1]&0x80 != 0 {
			i += 2
		} else {
			i++
		}
	}
	if len(p) <= i {
		return false
	}
	return p[i]>>1&0x07 == 0 // spatial layer id 0
}

// h264Keyframe looks for an IDR slice or a sequence parameter set in a
// single NAL unit, a STAP-A aggregate or the first fragment of a FU-A
// (RFC 6184).
func h264Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch t := p[0] & 0x1f; t {
	case 5, 7:
		return true
	case 24: // STAP-A: 16-bit sizes, each followed by a NAL unit
		for i := 1; i+2 < len(p); {
			n := int(p[i])<<8 | int(p[i+1])
			i += 2
			if n == 0 || i+n > len(p) {
				return false
			}
			if nt := p[i] & 0x1f; nt == 5 || nt == 7 {
				return true
			}
			i += n
		}
		return false
	case 28: // FU-A
		if len(p) < 2 {
			return false
		}
		start := p[1]&0x80 != 0
		nt := p[1] & 0x1f
		return start && (nt == 5 || nt == 7)
	default:
		return false
	}
}
