package sfu

import (
	"fmt"
	"time"

	"github.com/pion/webrtc/v4"
)

// NewReceiveConnection returns a PeerConnection built like a room
// publisher's (same codecs, NACK generation, receiver reports,
// transport-cc feedback, ICE settings and media port), for an ingest
// outside rooms: WHIP. The caller owns and closes it.
func (s *SFU) NewReceiveConnection() (*webrtc.PeerConnection, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	pc, err := s.pubAPI.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("sfu: new receiving connection: %w", err)
	}
	return pc, nil
}

// NewSendConnection returns a PeerConnection built like a room
// subscriber's (same codecs, NACK responder, sender reports, transport-wide
// sequence numbers, ICE settings and media port), for an output outside
// rooms: WHEP. The caller owns and closes it.
func (s *SFU) NewSendConnection() (*webrtc.PeerConnection, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	pc, _, err := s.newSubscriberPC()
	return pc, err
}

// GatherTimeout is how long an answer waits for the server's ICE
// candidates (Config.GatherTimeout).
func (s *SFU) GatherTimeout() time.Duration { return s.cfg.GatherTimeout }

func (s *SFU) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}
