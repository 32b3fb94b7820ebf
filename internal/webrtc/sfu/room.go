package sfu

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// Events pushed to participants through their Signaler.
const (
	// EventOffer: {"sdp"} the SFU's offer for the subscribing connection
	// (SFU room), or {"from","sdp"} the peer's offer (P2P room).
	EventOffer = "offer"
	// EventAnswer: {"from","sdp"} the peer's answer (P2P room).
	EventAnswer = "answer"
	// EventCandidate: {"from","candidate",...} the peer's ICE candidate
	// (P2P room).
	EventCandidate = "candidate"
	// EventJoined: {"participant","user"} someone entered the room.
	EventJoined = "participant_joined"
	// EventLeft: {"participant","reason"} someone left the room.
	EventLeft = "participant_left"
	// EventPublished: a TrackInfo with "participant": a new track.
	EventPublished = "track_published"
	// EventUnpublished: {"participant","track"}: a track ended.
	EventUnpublished = "track_unpublished"
	// EventMuted: {"participant","track","muted"}.
	EventMuted = "track_muted"
	// EventSpeakers: {"speakers":[ids, loudest first]}.
	EventSpeakers = "speakers"
	// EventLayer: {"track","layer"}: the simulcast layer now forwarded to
	// this subscriber.
	EventLayer = "layer"
	// EventKicked: {"room","reason"}: the server removed this participant
	// (the server API, or a connection that failed).
	EventKicked = "kicked"
)

// errRoomClosing: the room ended while a join was on its way to it; the
// join retries with a new room.
var errRoomClosing = fmt.Errorf("%w: room is closing, retry", ErrRoomState)

// Room is one call: its participants and, in an SFU room, the tracks they
// forward to each other. Lock order: Room.mu, then Participant.mu, then
// downTrack.mu, then upTrack.mu (a leaf: only a track's layers and
// description).
type Room struct {
	sfu   *SFU
	name  string
	mode  string
	codec string // first video codec choice, "" for the SFU's order

	mu           sync.Mutex
	parts        []*Participant // in join order
	closed       bool
	speakers     []string // owned by the loop goroutine
	lastSpeakers []string // a copy for info, guarded by mu

	stop chan struct{} // closed when the room ends
	done chan struct{} // closed when the loop returned
}

func newRoom(s *SFU, name, mode, codec string) *Room {
	r := &Room{sfu: s, name: name, mode: mode, codec: codec, stop: make(chan struct{}), done: make(chan struct{})}
	go r.loop()
	return r
}

// get returns the participant with id, or nil.
func (r *Room) get(id string) *Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.parts {
		if p.id == id {
			return p
		}
	}
	return nil
}

// others returns the participants but p.
func (r *Room) others(p *Participant) []*Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Participant, 0, len(r.parts))
	for _, q := range r.parts {
		if q != p {
			out = append(out, q)
		}
	}
	return out
}

func (r *Room) join(ctx context.Context, req JoinRequest, sig Signaler) (JoinResult, error) {
	if req.Mode != r.mode {
		return JoinResult{}, fmt.Errorf("%w: room %q is a %s room", ErrRoomState, r.name, r.mode)
	}
	p, err := newParticipant(r, req, sig)
	if err != nil {
		return JoinResult{}, err
	}
	r.mu.Lock()
	limit := r.sfu.cfg.MaxParticipants
	if r.mode == ModeP2P {
		limit = 2
	}
	switch {
	case r.closed:
		err = errRoomClosing
	case len(r.parts) >= limit:
		err = fmt.Errorf("%w: room %q is full (%d)", ErrRoomState, r.name, limit)
	default:
		for _, q := range r.parts {
			if q.id == p.id {
				err = fmt.Errorf("%w: %q is already in room %q", ErrRoomState, p.id, r.name)
			}
		}
	}
	if err != nil {
		r.mu.Unlock()
		p.close()
		return JoinResult{}, err
	}
	existing := slices.Clone(r.parts)
	r.parts = append(r.parts, p)
	r.mu.Unlock()

	res := JoinResult{Mode: r.mode, Codec: r.codecName(), Participants: make([]ParticipantInfo, 0, len(existing))}
	for _, q := range existing {
		res.Participants = append(res.Participants, q.info(false))
		q.sig.Signal(EventJoined, map[string]string{"participant": p.id, "user": p.user})
		if r.mode == ModeSFU {
			for _, t := range q.publishedTracks() {
				p.subscribe(t)
			}
			for _, label := range q.dataChannels() {
				p.relayFor(q.id, label)
			}
		}
	}
	r.sfu.log.Debug("joined", "room", r.name, "participant", p.id, "mode", r.mode)
	return res, nil
}

func (r *Room) codecName() string {
	if r.codec != "" {
		return r.codec
	}
	return r.sfu.cfg.VideoCodecs[0]
}

// videoOrder is the room's video codec preference.
func (r *Room) videoOrder() []string {
	order := []string{}
	if r.codec != "" {
		order = append(order, r.codec)
	}
	for _, c := range r.sfu.cfg.VideoCodecs {
		if c != r.codec {
			order = append(order, c)
		}
	}
	return order
}

// remove takes p out of the room, closes it and tells the others; the
// room ends with its last participant.
func (r *Room) remove(p *Participant, reason string) {
	r.mu.Lock()
	i := slices.Index(r.parts, p)
	if i < 0 {
		r.mu.Unlock()
		return
	}
	r.parts = slices.Delete(r.parts, i, i+1)
	rest := slices.Clone(r.parts)
	empty := len(r.parts) == 0
	if empty {
		r.closed = true
	}
	r.mu.Unlock()
	tracks := p.publishedTracks()
	p.close()
	for _, q := range rest {
		for _, t := range tracks {
			q.unsubscribe(t)
		}
		q.sig.Signal(EventLeft, map[string]string{"participant": p.id, "reason": reason})
	}
	if empty {
		r.end()
	}
}

// end stops the room's loop and forgets the room.
func (r *Room) end() {
	r.sfu.removeRoom(r)
	close(r.stop)
	<-r.done
}

// closeAll removes every participant (SFU shutdown).
func (r *Room) closeAll() {
	for {
		r.mu.Lock()
		if len(r.parts) == 0 {
			closed := r.closed
			r.closed = true
			r.mu.Unlock()
			if !closed {
				r.end()
			}
			return
		}
		p := r.parts[0]
		r.mu.Unlock()
		r.remove(p, "server shutdown")
	}
}

// broadcast pushes an event to every participant but skip.
func (r *Room) broadcast(skip *Participant, event string, data any) {
	for _, q := range r.others(skip) {
		q.sig.Signal(event, data)
	}
}

// loop measures layer bitrates, re-chooses subscribers' layers and picks
// the active speakers until the room ends.
func (r *Room) loop() {
	defer close(r.done)
	layerT := time.NewTicker(r.sfu.cfg.LayerInterval)
	defer layerT.Stop()
	speakT := time.NewTicker(r.sfu.cfg.SpeakerInterval)
	defer speakT.Stop()
	for {
		select {
		case <-r.stop:
			return
		case now := <-layerT.C:
			parts := r.others(nil)
			for _, p := range parts {
				for _, t := range p.publishedTracks() {
					t.measure(now)
				}
			}
			for _, p := range parts {
				p.allocate()
			}
		case <-speakT.C:
			r.pickSpeakers()
		}
	}
}

// speakerThreshold is the audio level (in -dBov, lower is louder) under
// which a participant counts as speaking.
const speakerThreshold = 50

// pickSpeakers ranks participants by the mean audio level of their audio
// tracks over the last interval and pushes the list when it changed.
func (r *Room) pickSpeakers() {
	type loud struct {
		id    string
		level float64
	}
	var ls []loud
	for _, p := range r.others(nil) {
		best := -1.0
		for _, t := range p.publishedTracks() {
			if lvl, ok := t.takeLevel(); ok && (best < 0 || lvl < best) {
				best = lvl
			}
		}
		if best >= 0 && best < speakerThreshold {
			ls = append(ls, loud{p.id, best})
		}
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].level < ls[j].level })
	ids := make([]string, 0, len(ls))
	for _, l := range ls {
		ids = append(ids, l.id)
	}
	if slices.Equal(ids, r.speakers) {
		return
	}
	r.speakers = ids
	r.mu.Lock()
	r.lastSpeakers = slices.Clone(ids)
	r.mu.Unlock()
	r.broadcast(nil, EventSpeakers, map[string][]string{"speakers": ids})
}

// info describes the room; withSubs adds what each participant receives.
func (r *Room) info(withSubs bool) RoomInfo {
	r.mu.Lock()
	parts := slices.Clone(r.parts)
	speakers := slices.Clone(r.lastSpeakers)
	r.mu.Unlock()
	ri := RoomInfo{Name: r.name, Mode: r.mode, Codec: r.codecName(), Speakers: speakers, Participants: make([]ParticipantInfo, 0, len(parts))}
	if ri.Speakers == nil {
		ri.Speakers = []string{}
	}
	for _, p := range parts {
		ri.Participants = append(ri.Participants, p.info(withSubs))
	}
	return ri
}
