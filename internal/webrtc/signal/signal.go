// Package signal connects the hub's room commands to the SFU: it
// implements hub.Rooms over an *sfu.SFU, parses the signaling payloads,
// adds the ICE servers (TURN with ephemeral credentials) to the join
// reply, maps the SFU's errors to protocol codes, and records which node
// serves each room so that a client that lands on another node is told
// where to connect.
package signal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/protocol"
	"github.com/switchboardhq/switchboard/internal/webrtc/sfu"
)

var (
	_ hub.Rooms     = (*Service)(nil)
	_ hub.RoomAdmin = (*Service)(nil)
)

// ICEServer is one entry of RTCPeerConnection's iceServers, as the join
// reply gives it.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// ICEServersFunc returns the ICE servers for a user and when their
// credentials expire (zero for never).
type ICEServersFunc func(user string) ([]ICEServer, time.Time, error)

// Config configures a Service.
type Config struct {
	// SFU serves the rooms of this node. Required.
	SFU *sfu.SFU
	// ICEServers returns the ICE servers a user gets in the join reply
	// (the built-in TURN server's, with ephemeral credentials) and when
	// their credentials expire; nil gives none.
	ICEServers ICEServersFunc
	// Owners, when set, records in the broker which node serves each
	// room, for clusters; nil on a single node. The records are presence
	// entries of the pseudo-channel "$room:NAME" whose client is the node
	// id and whose user is the node's URL.
	Owners broker.PresenceStore
	// NodeURL is this node's public URL (node_url), given to clients of a
	// room this node serves that land on another node.
	NodeURL string
	// OwnerTTL is how long an ownership record lives without refresh.
	// Default 30s.
	OwnerTTL time.Duration
	// Logger receives the service's logs. Default slog.Default().
	Logger *slog.Logger
}

// Service implements hub.Rooms. Create it with New, set the node id with
// SetNode once the hub exists, and Close it after the hub.
type Service struct {
	cfg Config
	sfu *sfu.SFU
	log *slog.Logger

	mu    sync.Mutex
	node  string
	ice   ICEServersFunc
	owned map[string]bool // rooms this node recorded as its own

	stop chan struct{}
	done chan struct{}
}

// New returns a service; with Owners it starts refreshing ownership
// records until Close.
func New(cfg Config) *Service {
	if cfg.OwnerTTL <= 0 {
		cfg.OwnerTTL = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Service{cfg: cfg, sfu: cfg.SFU, log: cfg.Logger.With("component", "signal"), ice: cfg.ICEServers, owned: map[string]bool{},
		stop: make(chan struct{}), done: make(chan struct{})}
	if cfg.Owners != nil {
		go s.refresh()
	} else {
		close(s.done)
	}
	return s
}

// SetNode sets the id this node records as a room's owner.
func (s *Service) SetNode(id string) {
	s.mu.Lock()
	s.node = id
	s.mu.Unlock()
}

// SetICEServers replaces Config.ICEServers, for a TURN server started
// after the service.
func (s *Service) SetICEServers(f ICEServersFunc) {
	s.mu.Lock()
	s.ice = f
	s.mu.Unlock()
}

// Close stops refreshing and removes this node's ownership records.
func (s *Service) Close(ctx context.Context) {
	select {
	case <-s.stop:
		return
	default:
	}
	close(s.stop)
	<-s.done
	s.mu.Lock()
	rooms := make([]string, 0, len(s.owned))
	for r := range s.owned {
		rooms = append(rooms, r)
	}
	s.owned = map[string]bool{}
	node := s.node
	s.mu.Unlock()
	if s.cfg.Owners != nil {
		for _, r := range rooms {
			_ = s.cfg.Owners.RemovePresence(ctx, ownerKey(r), node)
		}
	}
}

func ownerKey(room string) string { return "$room:" + room }

// pusher adapts a hub push function to sfu.Signaler.
type pusher func(event string, data []byte)

func (p pusher) Signal(event string, data any) {
	b, err := json.Marshal(data)
	if err != nil {
		return
	}
	p(event, b)
}

// joinReply is the result of room_join.
type joinReply struct {
	Room        string                `json:"room"`
	Participant string                `json:"participant"`
	Mode        string                `json:"mode"`
	Codec       string                `json:"codec"`
	CanPublish  bool                  `json:"can_publish"`
	Node        string                `json:"node,omitempty"`
	ICEServers  []ICEServer           `json:"ice_servers"`
	ICEExpires  int64                 `json:"ice_servers_expire,omitempty"`
	Others      []sfu.ParticipantInfo `json:"participants"`
}

// Join implements hub.Rooms.
func (s *Service) Join(ctx context.Context, j hub.RoomJoin) (json.RawMessage, error) {
	if err := s.claim(ctx, j.Room); err != nil {
		return nil, err
	}
	res, err := s.sfu.Join(ctx, sfu.JoinRequest{Room: j.Room, Participant: j.Participant, User: j.User, Mode: j.Mode, Codec: j.Codec, CanPublish: j.CanPublish}, pusher(j.Push))
	if err != nil {
		s.releaseIfEmpty(j.Room)
		return nil, toProtocol(err)
	}
	s.mu.Lock()
	node, ice := s.node, s.ice
	s.mu.Unlock()
	r := joinReply{Room: j.Room, Participant: j.Participant, Mode: res.Mode, Codec: res.Codec, CanPublish: j.CanPublish, Node: node,
		Others: res.Participants}
	r.ICEServers, r.ICEExpires = s.iceFor(ice, j.Room, j.Participant, j.User)
	return json.Marshal(r)
}

// iceReply is the result of room_ice: fresh ICE servers.
type iceReply struct {
	ICEServers []ICEServer `json:"ice_servers"`
	ICEExpires int64       `json:"ice_servers_expire,omitempty"`
}

// iceFor returns the ICE servers of a participant, with fresh TURN
// credentials, and when they expire (Unix seconds, 0 for never). TURN
// quotas count per user: an anonymous client is its own.
func (s *Service) iceFor(ice ICEServersFunc, room, participant, user string) ([]ICEServer, int64) {
	if ice == nil {
		return []ICEServer{}, 0
	}
	if user == "" {
		user = participant
	}
	list, exp, err := ice(user)
	switch {
	case err != nil:
		s.log.Warn("no ICE servers for a participant", "room", room, "participant", participant, "err", err)
	case list != nil:
		var unix int64
		if !exp.IsZero() {
			unix = exp.Unix()
		}
		return list, unix
	}
	return []ICEServer{}, 0
}

// Leave implements hub.Rooms.
func (s *Service) Leave(room, participant string) {
	s.sfu.Leave(room, participant)
	s.releaseIfEmpty(room)
}

// Signal implements hub.Rooms.
func (s *Service) Signal(ctx context.Context, room, participant, kind string, data json.RawMessage) (json.RawMessage, error) {
	v, err := parseSignal(kind, data)
	if err != nil {
		return nil, toProtocol(err)
	}
	switch v := v.(type) {
	case sdpData:
		if kind == "answer" {
			return nil, toProtocol(s.sfu.Answer(ctx, room, participant, v.SDP))
		}
		answer, err := s.sfu.Offer(ctx, room, participant, v.SDP)
		if err != nil {
			return nil, toProtocol(err)
		}
		if answer == "" { // p2p: the answer comes from the peer
			return nil, nil
		}
		return json.Marshal(sdpData{SDP: answer})
	case sfu.Candidate:
		return nil, toProtocol(s.sfu.AddCandidate(room, participant, v))
	case sfu.Prefs:
		return nil, toProtocol(s.sfu.SetPrefs(room, participant, v))
	case sfu.TrackMeta:
		return nil, toProtocol(s.sfu.Announce(room, participant, v))
	case trackData:
		return nil, toProtocol(s.sfu.Unpublish(room, participant, v.Track))
	case muteData:
		return nil, toProtocol(s.sfu.Mute(room, participant, v.Track, *v.Muted))
	case iceData:
		user, err := s.sfu.User(room, participant)
		if err != nil {
			return nil, toProtocol(err)
		}
		if v.Restart == "subscriber" {
			if err := s.sfu.RestartICE(room, participant); err != nil {
				return nil, toProtocol(err)
			}
		}
		s.mu.Lock()
		ice := s.ice
		s.mu.Unlock()
		var r iceReply
		r.ICEServers, r.ICEExpires = s.iceFor(ice, room, participant, user)
		return json.Marshal(r)
	}
	return nil, protocol.ErrInternal.WithMessage("unhandled signal %q", kind)
}

// toProtocol maps an SFU or parse error to the client's error; nil stays
// nil (as an error interface holding no value).
func toProtocol(err error) error {
	if err == nil {
		return nil
	}
	var perr *protocol.Error
	switch {
	case errors.As(err, &perr):
		return perr
	case errors.Is(err, errBadPayload):
		return protocol.ErrBadRequest.WithMessage("%v", err)
	case errors.Is(err, sfu.ErrNotInRoom):
		return protocol.ErrNotInRoom.WithMessage("%v", err)
	case errors.Is(err, sfu.ErrBadSignal):
		return protocol.ErrBadSignal.WithMessage("%v", err)
	case errors.Is(err, sfu.ErrRateLimited):
		return protocol.ErrLimitExceeded.WithMessage("%v", err)
	case errors.Is(err, sfu.ErrRoomState):
		return protocol.ErrRoomState.WithMessage("%v", err)
	case errors.Is(err, sfu.ErrNotAllowed):
		return protocol.ErrPermissionDenied.WithMessage("%v", err)
	case errors.Is(err, sfu.ErrClosed):
		return protocol.ErrUnavailable.WithMessage("%v", err)
	default:
		return protocol.ErrInternal.WithMessage("%v", err)
	}
}

// claim makes sure this node serves room: it records itself as the owner
// when no live node is, and refuses with ErrRoomElsewhere (and the owner's
// URL) when another node is. Two nodes claiming at once both write; the
// smaller node id keeps the room and the other backs off.
func (s *Service) claim(ctx context.Context, room string) error {
	if s.cfg.Owners == nil {
		return nil
	}
	s.mu.Lock()
	node, mine := s.node, s.owned[room]
	s.mu.Unlock()
	if mine {
		return nil
	}
	key := ownerKey(room)
	if other, ok, err := s.otherOwner(ctx, key, node); err != nil {
		return err
	} else if ok {
		return elsewhere(other)
	}
	if err := s.cfg.Owners.AddPresence(ctx, key, broker.ClientInfo{Client: node, User: s.cfg.NodeURL, Transport: "sfu"}, s.cfg.OwnerTTL); err != nil {
		return protocol.ErrUnavailable.WithMessage("cannot record the room's node: %v", err)
	}
	if other, ok, err := s.otherOwner(ctx, key, node); err != nil {
		return err
	} else if ok && other.Client < node {
		_ = s.cfg.Owners.RemovePresence(ctx, key, node)
		return elsewhere(other)
	}
	s.mu.Lock()
	s.owned[room] = true
	s.mu.Unlock()
	return nil
}

// otherOwner returns the owner record of another node, the smallest id
// first, if there is one.
func (s *Service) otherOwner(ctx context.Context, key, node string) (broker.ClientInfo, bool, error) {
	list, err := s.cfg.Owners.Presence(ctx, key)
	if err != nil {
		return broker.ClientInfo{}, false, protocol.ErrUnavailable.WithMessage("cannot read the room's node: %v", err)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Client < list[j].Client })
	for _, c := range list {
		if c.Client != node {
			return c, true, nil
		}
	}
	return broker.ClientInfo{}, false, nil
}

func elsewhere(owner broker.ClientInfo) error {
	e := protocol.ErrRoomElsewhere.WithMessage("room is served by node %s: connect to %s", owner.Client, owner.User)
	e.URL = owner.User
	return e
}

// releaseIfEmpty removes this node's ownership of room once it has no
// participants here.
func (s *Service) releaseIfEmpty(room string) {
	if s.cfg.Owners == nil || s.sfu.RoomSize(room) > 0 {
		return
	}
	s.mu.Lock()
	mine := s.owned[room]
	delete(s.owned, room)
	node := s.node
	s.mu.Unlock()
	if mine {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.cfg.Owners.RemovePresence(ctx, ownerKey(room), node); err != nil {
			s.log.Warn("cannot remove a room's owner record", "room", room, "err", fmt.Errorf("signal: %w", err))
		}
	}
}

// refresh re-records the rooms this node owns before their records
// expire.
func (s *Service) refresh() {
	defer close(s.done)
	t := time.NewTicker(s.cfg.OwnerTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		rooms := make([]string, 0, len(s.owned))
		for r := range s.owned {
			rooms = append(rooms, r)
		}
		node := s.node
		s.mu.Unlock()
		for _, r := range rooms {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := s.cfg.Owners.AddPresence(ctx, ownerKey(r), broker.ClientInfo{Client: node, User: s.cfg.NodeURL, Transport: "sfu"}, s.cfg.OwnerTTL)
			cancel()
			if err != nil {
				s.log.Warn("cannot refresh a room's owner record", "room", r, "err", err)
			}
		}
	}
}
