package signal

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/switchboardhq/switchboard/internal/webrtc/sfu"
)

// errBadPayload marks a signaling payload that does not parse.
var errBadPayload = errors.New("signal: bad payload")

// sdpData is the data of room_offer and room_answer.
type sdpData struct {
	SDP string `json:"sdp"`
}

// muteData is the data of room_mute.
type muteData struct {
	Track string `json:"track"`
	Muted *bool  `json:"muted"`
}

// trackData is the data of room_unpublish.
type trackData struct {
	Track string `json:"track"`
}

// iceData is the data of room_ice.
type iceData struct {
	// Restart, when "subscriber", restarts ICE on the subscribing
	// connection (the server's next offer).
	Restart string `json:"restart"`
}

// parseSignal decodes the data of one signaling command by kind into
// sdpData, sfu.Candidate, sfu.Prefs, sfu.TrackMeta, trackData, muteData or iceData. It checks
// the fields each kind needs and their ranges.
func parseSignal(kind string, data []byte) (any, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", errBadPayload, fmt.Sprintf(format, args...))
	}
	unmarshal := func(v any) error {
		if err := json.Unmarshal(data, v); err != nil {
			return bad("invalid data: %v", err)
		}
		return nil
	}
	switch kind {
	case "offer", "answer":
		var d sdpData
		if err := unmarshal(&d); err != nil {
			return nil, err
		}
		if d.SDP == "" {
			return nil, bad(`missing "sdp"`)
		}
		return d, nil
	case "candidate":
		var c sfu.Candidate
		if err := unmarshal(&c); err != nil {
			return nil, err
		}
		if c.Target != "" && c.Target != "publisher" && c.Target != "subscriber" {
			return nil, bad(`"target" must be "publisher" or "subscriber"`)
		}
		return c, nil
	case "subscribe":
		var p sfu.Prefs
		if err := unmarshal(&p); err != nil {
			return nil, err
		}
		if p.Track == "" {
			return nil, bad(`missing "track"`)
		}
		if p.MaxLayer != nil && (*p.MaxLayer < 0 || *p.MaxLayer > 2) {
			return nil, bad(`"max_layer" must be 0, 1 or 2`)
		}
		if p.MaxWidth < 0 || p.MaxHeight < 0 {
			return nil, bad(`"max_width" and "max_height" must not be negative`)
		}
		return p, nil
	case "publish":
		var m sfu.TrackMeta
		if err := unmarshal(&m); err != nil {
			return nil, err
		}
		if m.Track == "" || len(m.Track) > 128 || len(m.Source) > 32 || len(m.Name) > 128 {
			return nil, bad(`"track" (1 to 128 bytes), "source" (up to 32) and "name" (up to 128) are required or too long`)
		}
		return m, nil
	case "unpublish":
		var t trackData
		if err := unmarshal(&t); err != nil {
			return nil, err
		}
		if t.Track == "" {
			return nil, bad(`missing "track"`)
		}
		return t, nil
	case "mute":
		var m muteData
		if err := unmarshal(&m); err != nil {
			return nil, err
		}
		if m.Muted == nil {
			return nil, bad(`missing "muted"`)
		}
		return m, nil
	case "ice":
		var d iceData
		if err := unmarshal(&d); err != nil {
			return nil, err
		}
		if d.Restart != "" && d.Restart != "subscriber" {
			return nil, bad(`"restart" must be "subscriber" or absent`)
		}
		return d, nil
	default:
		return nil, bad("unknown signal %q", kind)
	}
}
