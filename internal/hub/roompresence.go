package hub

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// A room's participant list is the presence of a reserved channel,
// RoomPresencePrefix + the room's name: every participant is a member
// from its join until it leaves, is kicked or its connection ends, and
// each of these publishes a join or leave event on the channel. The store
// and the events go through the broker, so a client on any node reads
// the list with the presence command, or subscribes to the channel and
// gets the events, whichever node serves the room. The channel carries
// nothing else: clients may not publish to it, nor may the server API,
// and its subscribers are watchers, not members.
//
// The presence calls of every membership go through one queue per hub,
// worked by one goroutine (roomPresenceLoop), in the order the
// memberships changed: a leave can never overtake the join it undoes,
// whichever goroutine (a command, the connection's end, the SFU removing
// a participant) caused it.

// RoomPresencePrefix begins the name of a room's presence channel:
// "!room:standup" for the room "standup", "!room:team:daily" for
// "team:daily". '!' is not allowed in namespace names, so no configured
// namespace can collide with it.
const RoomPresencePrefix = "!room:"

// MaxRoomLength is the longest room name accepted, in bytes: its
// presence channel must be a valid channel name.
const MaxRoomLength = protocol.MaxChannelLength - len(RoomPresencePrefix)

// RoomPresenceChannel returns the presence channel of room.
func RoomPresenceChannel(room string) string { return RoomPresencePrefix + room }

// roomOfChannel returns the room whose presence channel is channel.
func roomOfChannel(channel string) (string, bool) {
	return strings.CutPrefix(channel, RoomPresencePrefix)
}

// roomChannelNamespace is the namespace of a room's presence channel:
// presence on, nothing published by clients, no history; who may read
// it is the room's rule (see roomAccess), not this.
func (h *Hub) roomChannelNamespace(channel, room string) (auth.Namespace, *protocol.Error) {
	if room == "" {
		return auth.Namespace{}, protocol.ErrInvalidChannel.WithMessage("%q names no room", channel)
	}
	ns, err := h.cfg.Rules.Lookup(room)
	if err != nil {
		return ns, protocol.ErrInvalidChannel.WithMessage("%v", err)
	}
	return auth.Namespace{Name: strings.TrimSuffix(RoomPresencePrefix, ":"), Subscribe: ns.Subscribe, Presence: true}, nil
}

// roomAccess applies a room's rule (rooms are named like channels): a
// token grant (grants hold the connection token's), the room's user list,
// then its namespace's subscribe rule when it is "anyone" or
// "authenticated" (with a user); a "token" namespace needs the grant. It
// returns whether the client may also publish: a grant, or a namespace
// that lets clients publish. Reading a room's presence channel follows
// the same rule as joining the room.
func (h *Hub) roomAccess(room, user string, grants []string) (publish bool, perr *protocol.Error) {
	if perr := protocol.ValidateChannel(room); perr != nil {
		return false, perr
	}
	// Not h.namespace: a room is never a room's presence channel.
	ns, err := h.cfg.Rules.Lookup(room)
	if err != nil {
		return false, protocol.ErrInvalidChannel.WithMessage("%v", err)
	}
	granted := func(perm string) bool {
		for _, g := range grants {
			if g == "room:*" || g == "room:"+perm || g == "room:"+perm+":"+room {
				return true
			}
		}
		return false
	}
	publish = granted("publish") || ns.Publish
	if granted("join") || granted("publish") {
		return publish, nil
	}
	if !auth.UserAllowed(room, user) {
		return false, protocol.ErrPermissionDenied.WithMessage("room %q is limited to its listed users", room)
	}
	switch ns.Subscribe {
	case auth.SubscribeAnyone:
		return publish, nil
	case auth.SubscribeAuthenticated:
		if user != "" {
			return publish, nil
		}
		return false, protocol.ErrPermissionDenied.WithMessage("room %q needs an authenticated user", room)
	default:
		return false, protocol.ErrPermissionDenied.WithMessage(`room %q needs a token granting "room:join"`, room)
	}
}

// errRoomChannelPublish refuses a publication to a room's presence
// channel.
func errRoomChannelPublish(channel string) *protocol.Error {
	return protocol.ErrPermissionDenied.WithMessage("%q is reserved for a room's participant list: nothing may be published to it", channel)
}

// checkSubscribe is Hub.checkSubscribe for the session's subscribe
// command: a room's presence channel follows the room's rule with the
// connection's grants.
func (s *Session) checkSubscribe(ctx context.Context, channel, token string, data json.RawMessage) (json.RawMessage, error) {
	if room, ok := roomOfChannel(channel); ok {
		if _, perr := s.hub.namespace(channel); perr != nil {
			return nil, perr
		}
		if _, perr := s.canJoinRoom(room); perr != nil {
			return nil, perr
		}
		return nil, nil
	}
	return s.hub.checkSubscribe(ctx, channel, s.id, s.User(), token, data)
}

// grants returns the connection token's grants (none without a token).
func (s *Session) grants() []string {
	if c := s.credentials(); c != nil {
		return c.Grants
	}
	return nil
}

// roomMember is one participant of one room on this node.
type roomMember struct {
	room, client string
}

// roomPresenceOp is one call of the room presence queue.
type roomPresenceOp struct {
	kind   string // "join", "leave" or "refresh"
	member roomMember
	info   broker.ClientInfo // for "join"
	done   chan struct{}     // closed once done (join), or nil
}

// roomPresence is the queue of room presence calls and the memberships
// in the store, owned by roomPresenceLoop.
type roomPresence struct {
	mu     sync.Mutex
	queue  []roomPresenceOp // guarded by mu
	wake   chan struct{}    // a token when queue is not empty
	stored map[roomMember]broker.ClientInfo
}

// roomPresenceInfo is the info of a participant's presence entry.
type roomPresenceInfo struct {
	Participant string `json:"participant"`
	Node        string `json:"node"`
	CanPublish  bool   `json:"can_publish"`
}

// enqueueRoomPresence adds op to the queue. The queue is not bounded by
// a count: it holds at most a join and a leave per membership change
// (memberships are bounded by connections times maxRoomsPerConnection)
// and one refresh, a refresh already waiting taking the place of a new
// one. Callers that order ops hold roomsMu.
func (h *Hub) enqueueRoomPresence(op roomPresenceOp) {
	rp := &h.roomPres
	rp.mu.Lock()
	if op.kind != "refresh" || !slices.ContainsFunc(rp.queue, func(o roomPresenceOp) bool { return o.kind == "refresh" }) {
		rp.queue = append(rp.queue, op)
	}
	rp.mu.Unlock()
	select {
	case rp.wake <- struct{}{}:
	default:
	}
}

// roomJoined queues the presence join of a participant that joined room,
// unless it left meanwhile, and waits until it is stored or ctx ends, so
// that its join reply comes after it is in the list.
func (s *Session) roomJoined(ctx context.Context, room string, canPublish bool) {
	h := s.hub
	info := s.clientInfo()
	info.Info = broker.RawJSON(mustJSON(roomPresenceInfo{Participant: s.id, Node: h.cfg.NodeID, CanPublish: canPublish}))
	op := roomPresenceOp{kind: "join", member: roomMember{room, s.id}, info: info, done: make(chan struct{})}
	h.roomsMu.Lock()
	joined := s.inRoomLocked(room)
	if joined {
		h.enqueueRoomPresence(op)
	}
	h.roomsMu.Unlock()
	if !joined {
		return
	}
	select {
	case <-op.done:
	case <-ctx.Done():
	case <-h.stop:
	}
}

// roomPresenceLoop works the room presence queue until the hub stops,
// then works what is left for up to 5 s.
func (h *Hub) roomPresenceLoop() {
	defer h.loops.Done()
	for {
		select {
		case <-h.stop:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			h.workRoomPresence(ctx)
			cancel()
			return
		case <-h.roomPres.wake:
			h.workRoomPresence(context.Background())
		}
	}
}

// workRoomPresence runs the queued calls in order, each within 10 s and
// parent.
func (h *Hub) workRoomPresence(parent context.Context) {
	rp := &h.roomPres
	for {
		rp.mu.Lock()
		ops := rp.queue
		rp.queue = nil
		rp.mu.Unlock()
		if len(ops) == 0 {
			return
		}
		for _, op := range ops {
			ctx, cancel := context.WithTimeout(parent, 10*time.Second)
			h.runRoomPresence(ctx, op)
			cancel()
		}
	}
}

// runRoomPresence makes one call; failures are logged (a missed entry is
// written again by the next refresh, a missed removal expires after
// presence_ttl).
func (h *Hub) runRoomPresence(ctx context.Context, op roomPresenceOp) {
	rp := &h.roomPres
	channel := RoomPresenceChannel(op.member.room)
	switch op.kind {
	case "join":
		rp.stored[op.member] = op.info
		if err := h.presence.AddPresence(ctx, channel, op.info, h.cfg.PresenceTTL); err != nil {
			h.log.Warn("add room presence failed", "room", op.member.room, "err", err)
		}
		h.publishEvent(ctx, channel, "join", op.info)
		close(op.done)
	case "leave":
		info, ok := rp.stored[op.member]
		if !ok {
			return // its join never ran
		}
		delete(rp.stored, op.member)
		if err := h.presence.RemovePresence(ctx, channel, info.Client); err != nil {
			h.log.Warn("remove room presence failed", "room", op.member.room, "err", err)
		}
		h.publishEvent(ctx, channel, "leave", info)
	case "refresh":
		failed := 0
		var firstErr error
		for m, info := range rp.stored {
			if err := h.presence.AddPresence(ctx, RoomPresenceChannel(m.room), info, h.cfg.PresenceTTL); err != nil {
				failed++
				if firstErr == nil {
					firstErr = err
				}
			}
		}
		if failed > 0 {
			h.log.Warn("refresh room presence failed", "entries", failed, "err", firstErr)
		}
	}
}
