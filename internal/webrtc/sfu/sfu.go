package sfu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/webrtc/v4"
)

// Errors the SFU's methods fail with; the signaling layer maps them to
// protocol codes.
var (
	// ErrNotInRoom: the participant is not in the room (never joined,
	// left, or was kicked), or the room does not exist.
	ErrNotInRoom = errors.New("sfu: not in room")
	// ErrBadSignal: an SDP or ICE candidate that cannot be applied.
	ErrBadSignal = errors.New("sfu: invalid session description or candidate")
	// ErrRateLimited: the participant sent signaling faster than allowed.
	ErrRateLimited = errors.New("sfu: too many signaling messages")
	// ErrRoomState: the request conflicts with the room: full, another
	// mode, a peer-to-peer room whose other peer is absent, or a
	// participant id already in the room.
	ErrRoomState = errors.New("sfu: room state conflict")
	// ErrNotAllowed: publishing without the permission to publish.
	ErrNotAllowed = errors.New("sfu: not allowed to publish")
	// ErrClosed: the SFU is shutting down.
	ErrClosed = errors.New("sfu: closed")
)

// Room modes.
const (
	// ModeSFU forwards media through the server.
	ModeSFU = "sfu"
	// ModeP2P relays signaling between the two peers of a room of two;
	// media goes directly between them (or through TURN).
	ModeP2P = "p2p"
)

// Signaler carries the SFU's pushes to one participant's client. Signal
// must not block; data is marshalled to JSON.
type Signaler interface {
	Signal(event string, data any)
}

// SFU is the registry of rooms on this node. Create it with New; it is
// safe for concurrent use.
type SFU struct {
	cfg    Config
	log    *slog.Logger
	pubAPI *webrtc.API
	subAPI *webrtc.API
	mx     muxes // shared by both APIs

	// newSubMu serialises the creation of subscribing PeerConnections, so
	// that the estimator the congestion controller announces during
	// NewPeerConnection is the one of the connection being made.
	newSubMu  sync.Mutex
	estimator cc.BandwidthEstimator // guarded by newSubMu

	mu     sync.Mutex
	rooms  map[string]*Room
	closed bool

	stats struct {
		forwarded        atomic.Uint64 // packets written to subscribers
		keyframeRequests atomic.Uint64 // PLIs sent to publishers
		switches         atomic.Uint64 // simulcast layer switches
	}
}

// New builds an SFU from cfg.
func New(cfg Config) (*SFU, error) {
	cfg.setDefaults()
	s := &SFU{cfg: cfg, log: cfg.Logger.With("component", "sfu"), rooms: map[string]*Room{}}
	var err error
	s.mx = newMuxes(&s.cfg)
	if s.pubAPI, err = newPublishAPI(&s.cfg, s.mx); err != nil {
		return nil, err
	}
	if s.subAPI, err = newSubscribeAPI(&s.cfg, s.mx, func(_ string, e cc.BandwidthEstimator) { s.estimator = e }); err != nil {
		return nil, err
	}
	return s, nil
}

// newSubscriberPC creates a subscribing PeerConnection and returns its
// bandwidth estimator.
func (s *SFU) newSubscriberPC() (*webrtc.PeerConnection, cc.BandwidthEstimator, error) {
	s.newSubMu.Lock()
	defer s.newSubMu.Unlock()
	s.estimator = nil
	pc, err := s.subAPI.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, nil, fmt.Errorf("sfu: new subscriber connection: %w", err)
	}
	return pc, s.estimator, nil
}

// JoinRequest asks for a participant to enter a room.
type JoinRequest struct {
	// Room is the room's name; Participant the participant's id, unique
	// in the room (the hub uses the client id); User the user behind it.
	Room, Participant, User string
	// Mode is ModeSFU (default) or ModeP2P; it must match the room's mode
	// when the room exists.
	Mode string
	// Codec, when set on the room's first join, puts this video codec
	// first in the room's preference ("vp8", "vp9", "h264").
	Codec string
	// CanPublish lets the participant publish tracks.
	CanPublish bool
}

// JoinResult describes the room to a participant that entered it.
type JoinResult struct {
	Mode         string            `json:"mode"`
	Codec        string            `json:"codec"`
	Participants []ParticipantInfo `json:"participants"`
}

// Join adds a participant to a room, creating the room when needed. sig
// receives the participant's pushes until it leaves.
func (s *SFU) Join(ctx context.Context, req JoinRequest, sig Signaler) (JoinResult, error) {
	if req.Mode == "" {
		req.Mode = ModeSFU
	}
	if req.Mode != ModeSFU && req.Mode != ModeP2P {
		return JoinResult{}, fmt.Errorf("%w: mode %q is not sfu or p2p", ErrRoomState, req.Mode)
	}
	if req.Codec != "" {
		if _, ok := videoCodecs[req.Codec]; !ok {
			return JoinResult{}, fmt.Errorf("%w: codec %q is not vp8, vp9 or h264", ErrRoomState, req.Codec)
		}
	}
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return JoinResult{}, ErrClosed
		}
		r := s.rooms[req.Room]
		if r == nil {
			r = newRoom(s, req.Room, req.Mode, req.Codec)
			s.rooms[req.Room] = r
		}
		s.mu.Unlock()
		res, err := r.join(ctx, req, sig)
		if err != errRoomClosing {
			return res, err
		}
		s.removeRoom(r) // the room's end will not find it again
	}
}

// room returns the named room, or nil.
func (s *SFU) room(name string) *Room {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rooms[name]
}

// participant returns a participant of a room, or ErrNotInRoom.
func (s *SFU) participant(room, id string) (*Participant, error) {
	r := s.room(room)
	if r == nil {
		return nil, fmt.Errorf("%w: no room %q", ErrNotInRoom, room)
	}
	p := r.get(id)
	if p == nil {
		return nil, fmt.Errorf("%w: %q is not in room %q", ErrNotInRoom, id, room)
	}
	return p, nil
}

// removeRoom forgets r if it is still the registered room of its name.
func (s *SFU) removeRoom(r *Room) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rooms[r.name] == r {
		delete(s.rooms, r.name)
	}
}

// Leave removes a participant from a room, closing its connections and
// telling the others. Leaving a room one is not in does nothing.
func (s *SFU) Leave(room, participant string) {
	if p, err := s.participant(room, participant); err == nil {
		p.room.remove(p, "left")
	}
}

// Kick removes a participant like Leave, telling it why first.
func (s *SFU) Kick(room, participant string) error {
	p, err := s.participant(room, participant)
	if err != nil {
		return err
	}
	p.sig.Signal(EventKicked, map[string]string{"room": room, "reason": "kicked"})
	p.room.remove(p, "kicked")
	return nil
}

// Offer applies a participant's offer. In an SFU room it is the offer of
// the participant's publishing connection and the answer is returned; in
// a peer-to-peer room it is relayed to the other peer and the answer comes
// back as that peer's room_answer.
func (s *SFU) Offer(ctx context.Context, room, participant, sdp string) (string, error) {
	p, err := s.participant(room, participant)
	if err != nil {
		return "", err
	}
	return p.offer(ctx, sdp)
}

// Answer applies a participant's answer to the SFU's offer for its
// subscribing connection (SFU room) or relays it to the peer (P2P room).
func (s *SFU) Answer(ctx context.Context, room, participant, sdp string) error {
	p, err := s.participant(room, participant)
	if err != nil {
		return err
	}
	return p.answer(ctx, sdp)
}

// Candidate is a trickled ICE candidate from a client. Target says which
// of the participant's connections it belongs to in an SFU room:
// "publisher" (default) or "subscriber".
type Candidate struct {
	Candidate     string  `json:"candidate"`
	SDPMid        *string `json:"sdpMid,omitempty"`
	SDPMLineIndex *uint16 `json:"sdpMLineIndex,omitempty"`
	Target        string  `json:"target,omitempty"`
}

// AddCandidate applies (SFU room) or relays (P2P room) a client's ICE
// candidate.
func (s *SFU) AddCandidate(room, participant string, c Candidate) error {
	p, err := s.participant(room, participant)
	if err != nil {
		return err
	}
	return p.candidate(c)
}

// Prefs are a subscriber's wishes for one track.
type Prefs struct {
	// Track is the SFU track id (from track_published).
	Track string `json:"track"`
	// MaxLayer caps the simulcast layer: 0 low, 1 medium, 2 high.
	MaxLayer *int `json:"max_layer,omitempty"`
	// MaxWidth and MaxHeight cap the picked layer's size, for a tile shown
	// small; 0 means no cap.
	MaxWidth  int `json:"max_width,omitempty"`
	MaxHeight int `json:"max_height,omitempty"`
	// Paused stops the track's forwarding to this subscriber.
	Paused bool `json:"paused,omitempty"`
}

// SetPrefs applies a subscriber's wishes for one track.
func (s *SFU) SetPrefs(room, participant string, pr Prefs) error {
	p, err := s.participant(room, participant)
	if err != nil {
		return err
	}
	return p.setPrefs(pr)
}

// User returns the user id a participant joined as.
func (s *SFU) User(room, participant string) (string, error) {
	p, err := s.participant(room, participant)
	if err != nil {
		return "", err
	}
	return p.user, nil
}

// RestartICE makes the next offer of the participant's subscribing
// connection restart ICE (new credentials, so the browser gathers again,
// with the iceServers it has now), and sends it. For the client whose
// path to the server broke, or whose TURN credentials are about to expire.
func (s *SFU) RestartICE(room, participant string) error {
	p, err := s.participant(room, participant)
	if err != nil {
		return err
	}
	if p.sub == nil {
		return fmt.Errorf("%w: no subscribing connection in a p2p room", ErrRoomState)
	}
	p.negMu.Lock()
	p.negRestart = true
	p.negMu.Unlock()
	p.kick()
	return nil
}

// Unpublish stops forwarding one of the participant's tracks.
func (s *SFU) Unpublish(room, participant, track string) error {
	p, err := s.participant(room, participant)
	if err != nil {
		return err
	}
	return p.unpublish(track)
}

// Mute stops (or resumes) forwarding a participant's track, or every
// track of a kind ("audio", "video") when track is a kind or empty (all).
func (s *SFU) Mute(room, participant, track string, muted bool) error {
	p, err := s.participant(room, participant)
	if err != nil {
		return err
	}
	return p.mute(track, muted)
}

// RoomInfo describes a room for the server API.
type RoomInfo struct {
	Name         string            `json:"name"`
	Mode         string            `json:"mode"`
	Codec        string            `json:"codec"`
	Speakers     []string          `json:"speakers"`
	Participants []ParticipantInfo `json:"participants"`
}

// Rooms describes every room of this node, sorted by name.
func (s *SFU) Rooms() []RoomInfo {
	s.mu.Lock()
	rooms := make([]*Room, 0, len(s.rooms))
	for _, r := range s.rooms {
		rooms = append(rooms, r)
	}
	s.mu.Unlock()
	out := make([]RoomInfo, 0, len(rooms))
	for _, r := range rooms {
		out = append(out, r.info(true))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Close ends every room and refuses further joins.
func (s *SFU) Close() error {
	s.mu.Lock()
	s.closed = true
	rooms := make([]*Room, 0, len(s.rooms))
	for _, r := range s.rooms {
		rooms = append(rooms, r)
	}
	s.mu.Unlock()
	for _, r := range rooms {
		r.closeAll()
	}
	var errs []error
	if s.mx.udp != nil {
		errs = append(errs, s.mx.udp.Close())
	}
	if s.mx.tcp != nil {
		errs = append(errs, s.mx.tcp.Close())
	}
	return errors.Join(errs...)
}

// RoomSize returns the number of participants in a room of this node (0
// when there is no such room).
func (s *SFU) RoomSize(name string) int {
	r := s.room(name)
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.parts)
}

// Announce records the description of a track the participant publishes
// or is about to (room_publish).
func (s *SFU) Announce(room, participant string, m TrackMeta) error {
	p, err := s.participant(room, participant)
	if err != nil {
		return err
	}
	if p.room.mode == ModeP2P {
		return fmt.Errorf("%w: a p2p room carries no tracks through the server", ErrRoomState)
	}
	return p.announce(m)
}

// Stats are the SFU's counters and sizes, for metrics.
type Stats struct {
	Rooms, Participants, Tracks, Subscriptions int
	// ForwardedPackets, KeyframeRequests and LayerSwitches count since
	// the SFU started.
	ForwardedPackets, KeyframeRequests, LayerSwitches uint64
}

// Stats reads the SFU's counters and counts its rooms.
func (s *SFU) Stats() Stats {
	st := Stats{
		ForwardedPackets: s.stats.forwarded.Load(),
		KeyframeRequests: s.stats.keyframeRequests.Load(),
		LayerSwitches:    s.stats.switches.Load(),
	}
	s.mu.Lock()
	rooms := make([]*Room, 0, len(s.rooms))
	for _, r := range s.rooms {
		rooms = append(rooms, r)
	}
	s.mu.Unlock()
	st.Rooms = len(rooms)
	for _, r := range rooms {
		for _, p := range r.others(nil) {
			st.Participants++
			p.mu.Lock()
			st.Tracks += len(p.published)
			st.Subscriptions += len(p.downs)
			p.mu.Unlock()
		}
	}
	return st
}
