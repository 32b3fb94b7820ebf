package whip

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pion/sdp/v3"
)

// Errors of offers and sessions; each maps to an HTTP status (status).
var (
	// ErrBadOffer: the body is not an SDP offer this server can use
	// (unparseable, or its media sections are wrong): 400.
	ErrBadOffer = errors.New("whip: invalid SDP offer")
	// ErrNoMedia: the offer has no audio or video section to send (WHIP)
	// or receive (WHEP): 400.
	ErrNoMedia = errors.New("whip: the offer has no usable audio or video")
	// ErrCodec: no codec in common (WHIP: the offer has none of H.264,
	// VP8, VP9, Opus; WHEP: the viewer offers none of the stream's codecs,
	// or the stream has no track WebRTC carries): 422.
	ErrCodec = errors.New("whip: no codec in common")
	// ErrNoSession: DELETE or PATCH of a resource that does not exist
	// (never made, or already ended): 404.
	ErrNoSession = errors.New("whip: no such session")
	// ErrUnavailable: WebRTC is not set up on this node, it is shutting
	// down, or it has as many sessions as it takes: 503.
	ErrUnavailable = errors.New("whip: WebRTC is not available")
)

// maxOfferSize bounds the offer body.
const maxOfferSize = 64 << 10

// offerMedia is one media section of an offer.
type offerMedia struct {
	kind string // "audio" or "video"
	mid  string
	// codecs are the offered codec names, lower case ("h264", "opus").
	codecs []string
	// sends and receives tell the direction from the offerer's side.
	sends, receives bool
}

// offer is what the server checks in an offer before it builds a
// connection.
type offer struct {
	media []offerMedia
}

// parseOffer parses an SDP offer and keeps its audio and video sections
// (data channels and others are ignored). It fails with ErrBadOffer.
func parseOffer(body []byte) (*offer, error) {
	if len(body) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrBadOffer)
	}
	if len(body) > maxOfferSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadOffer, maxOfferSize)
	}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(string(body)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadOffer, err)
	}
	o := &offer{}
	for _, md := range sd.MediaDescriptions {
		kind := md.MediaName.Media
		if kind != "audio" && kind != "video" {
			continue
		}
		m := offerMedia{kind: kind, sends: true, receives: true}
		if md.MediaName.Port.Value == 0 {
			continue // rejected or stopped section
		}
		for _, a := range md.Attributes {
			switch a.Key {
			case "mid":
				m.mid = a.Value
			case "sendonly":
				m.receives = false
			case "recvonly":
				m.sends = false
			case "inactive":
				m.sends, m.receives = false, false
			case "rtpmap":
				// "96 VP8/90000"
				_, enc, ok := strings.Cut(a.Value, " ")
				if !ok {
					return nil, fmt.Errorf("%w: rtpmap %q", ErrBadOffer, a.Value)
				}
				name, _, _ := strings.Cut(enc, "/")
				m.codecs = append(m.codecs, strings.ToLower(strings.TrimSpace(name)))
			}
		}
		o.media = append(o.media, m)
	}
	return o, nil
}

// sending returns the sections the offerer sends, at most one of each
// kind; a second section of a kind is ErrBadOffer (a stream has one audio
// and one video track).
func (o *offer) sending() ([]offerMedia, error) {
	var out []offerMedia
	seen := map[string]bool{}
	for _, m := range o.media {
		if !m.sends {
			continue
		}
		if seen[m.kind] {
			return nil, fmt.Errorf("%w: more than one %s section (a stream has one audio and one video track)", ErrBadOffer, m.kind)
		}
		seen[m.kind] = true
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no audio or video section sends media", ErrNoMedia)
	}
	return out, nil
}

// receiving returns the first section of each kind the offerer receives.
func (o *offer) receiving() map[string]offerMedia {
	out := map[string]offerMedia{}
	for _, m := range o.media {
		if _, ok := out[m.kind]; m.receives && !ok {
			out[m.kind] = m
		}
	}
	return out
}

// has reports whether m offers the codec.
func (m offerMedia) has(codec string) bool {
	for _, c := range m.codecs {
		if c == codec {
			return true
		}
	}
	return false
}
