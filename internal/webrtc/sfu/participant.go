package sfu

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/webrtc/v4"
)

// maxSDP bounds an SDP a client may send.
const maxSDP = 64 << 10

// Participant is one client in a room. In an SFU room it has a publishing
// PeerConnection (the client offers, created at its first offer) and a
// subscribing one (the SFU offers, created at join), so that neither side
// ever has to resolve an offer collision. In a P2P room it has neither.
type Participant struct {
	room       *Room
	id, user   string
	sig        Signaler
	canPublish bool

	// Set at creation, never changed.
	sub       *webrtc.PeerConnection // nil in a P2P room
	estimator cc.BandwidthEstimator  // the subscriber connection's; may be nil
	// subReady is set once the subscriber connection is connected (SRTP
	// keys agreed): pion drops what is written before, so forwarding
	// starts, at a keyframe, only then.
	subReady atomic.Bool

	mu        sync.Mutex
	pub       *webrtc.PeerConnection // created by the first offer
	published []*upTrack             // tracks this participant sends
	downs     map[*upTrack]*downTrack
	meta      map[string]TrackMeta           // announced with room_publish, by client track id
	channels  []string                       // labels of the data channels it publishes
	relays    map[string]*webrtc.DataChannel // on its subscriber connection, by label
	closed    bool
	bucket    float64   // signaling rate limit tokens
	bucketAt  time.Time // last refill

	// negMu serialises the subscriber connection's offers and answers;
	// negPending is set when an offer was wanted while one was out.
	negMu      sync.Mutex
	negPending bool
	negRestart bool          // the next offer restarts ICE (RestartICE)
	negKick    chan struct{} // capacity 1: wakes negotiateLoop
	stop       chan struct{} // closed by close
	loopDone   chan struct{} // closed when negotiateLoop returned
}

func newParticipant(r *Room, req JoinRequest, sig Signaler) (*Participant, error) {
	p := &Participant{
		room: r, id: req.Participant, user: req.User, sig: sig, canPublish: req.CanPublish,
		downs: map[*upTrack]*downTrack{}, relays: map[string]*webrtc.DataChannel{}, meta: map[string]TrackMeta{}, bucket: float64(r.sfu.cfg.OfferBurst), bucketAt: time.Now(),
		negKick: make(chan struct{}, 1), stop: make(chan struct{}), loopDone: make(chan struct{}),
	}
	if r.mode == ModeP2P {
		close(p.loopDone)
		return p, nil
	}
	pc, est, err := r.sfu.newSubscriberPC()
	if err != nil {
		return nil, err
	}
	p.sub, p.estimator = pc, est
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		r.sfu.log.Debug("subscriber connection", "room", r.name, "participant", p.id, "state", st.String())
		if st == webrtc.PeerConnectionStateFailed {
			go p.fail("subscriber")
		}
		if st == webrtc.PeerConnectionStateConnected && !p.subReady.Swap(true) {
			p.mu.Lock()
			downs := make([]*downTrack, 0, len(p.downs))
			for _, d := range p.downs {
				downs = append(downs, d)
			}
			p.mu.Unlock()
			for _, d := range downs {
				d.up.requestKeyframe(d.wantedLayer())
			}
		}
	})
	go p.negotiateLoop()
	return p, nil
}

// fail removes a participant whose connection failed for good (ICE
// found no path, or lost it past its timeouts): the others see it leave,
// and it is told, as if kicked, so that it can join again.
func (p *Participant) fail(which string) {
	p.room.sfu.log.Info("connection failed", "room", p.room.name, "participant", p.id, "connection", which)
	p.sig.Signal(EventKicked, map[string]string{"room": p.room.name, "reason": which + " connection failed"})
	p.room.remove(p, "connection failed")
}

// allow takes a token from the participant's signaling bucket.
func (p *Participant) allow() error {
	cfg := &p.room.sfu.cfg
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	p.bucket = min(float64(cfg.OfferBurst), p.bucket+now.Sub(p.bucketAt).Seconds()*cfg.OfferRate)
	p.bucketAt = now
	if p.bucket < 1 {
		return fmt.Errorf("%w: over %g per second", ErrRateLimited, cfg.OfferRate)
	}
	p.bucket--
	return nil
}

func checkSDP(sdp string) error {
	if sdp == "" {
		return fmt.Errorf("%w: empty sdp", ErrBadSignal)
	}
	if len(sdp) > maxSDP {
		return fmt.Errorf("%w: sdp of %d bytes is over %d", ErrBadSignal, len(sdp), maxSDP)
	}
	return nil
}

// peer returns the other participant of a P2P room.
func (p *Participant) peer() (*Participant, error) {
	others := p.room.others(p)
	if len(others) == 0 {
		return nil, fmt.Errorf("%w: the other peer has not joined yet", ErrRoomState)
	}
	return others[0], nil
}

func (p *Participant) offer(ctx context.Context, sdp string) (string, error) {
	if err := p.allow(); err != nil {
		return "", err
	}
	if err := checkSDP(sdp); err != nil {
		return "", err
	}
	if p.room.mode == ModeP2P {
		q, err := p.peer()
		if err != nil {
			return "", err
		}
		q.sig.Signal(EventOffer, map[string]string{"from": p.id, "sdp": sdp})
		return "", nil
	}
	if !p.canPublish {
		return "", fmt.Errorf("%w: in room %q", ErrNotAllowed, p.room.name)
	}
	pc, err := p.publisherPC()
	if err != nil {
		return "", err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadSignal, err)
	}
	p.preferCodecs(pc)
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("%w: create answer: %w", ErrBadSignal, err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("%w: set answer: %w", ErrBadSignal, err)
	}
	p.waitGathered(ctx, gathered)
	return pc.LocalDescription().SDP, nil
}

// waitGathered waits until the server's candidates are gathered (they go
// in the SDP), at most GatherTimeout.
func (p *Participant) waitGathered(ctx context.Context, gathered <-chan struct{}) {
	t := time.NewTimer(p.room.sfu.cfg.GatherTimeout)
	defer t.Stop()
	select {
	case <-gathered:
	case <-t.C:
	case <-ctx.Done():
	case <-p.stop:
	}
}

// preferCodecs orders each video receiver's codecs by the room's
// preference, so that the answer picks the room's codec when the browser
// offered it.
func (p *Participant) preferCodecs(pc *webrtc.PeerConnection) {
	order := p.room.videoOrder()
	if p.room.codec == "" {
		return
	}
	for _, tr := range pc.GetTransceivers() {
		if tr.Kind() != webrtc.RTPCodecTypeVideo {
			continue
		}
		codecs := tr.Receiver().GetParameters().Codecs
		if len(codecs) == 0 {
			continue
		}
		rank := func(c webrtc.RTPCodecParameters) int {
			name := strings.ToLower(strings.TrimPrefix(c.MimeType, "video/"))
			if name == "rtx" {
				return len(order) + 1
			}
			if i := slices.Index(order, name); i >= 0 {
				return i
			}
			return len(order)
		}
		slices.SortStableFunc(codecs, func(a, b webrtc.RTPCodecParameters) int { return rank(a) - rank(b) })
		_ = tr.SetCodecPreferences(codecs)
	}
}

// publisherPC returns the publishing connection, creating it.
func (p *Participant) publisherPC() (*webrtc.PeerConnection, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, fmt.Errorf("%w: participant left", ErrNotInRoom)
	}
	if p.pub != nil {
		return p.pub, nil
	}
	pc, err := p.room.sfu.pubAPI.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("sfu: new publisher connection: %w", err)
	}
	pc.OnTrack(func(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) { p.onTrack(pc, remote, recv) })
	pc.OnDataChannel(p.onDataChannel)
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		p.room.sfu.log.Debug("publisher connection", "room", p.room.name, "participant", p.id, "state", st.String())
		if st == webrtc.PeerConnectionStateFailed {
			go p.fail("publisher")
		}
	})
	p.pub = pc
	return pc, nil
}

func (p *Participant) answer(_ context.Context, sdp string) error {
	if err := p.allow(); err != nil {
		return err
	}
	if err := checkSDP(sdp); err != nil {
		return err
	}
	if p.room.mode == ModeP2P {
		q, err := p.peer()
		if err != nil {
			return err
		}
		q.sig.Signal(EventAnswer, map[string]string{"from": p.id, "sdp": sdp})
		return nil
	}
	p.negMu.Lock()
	defer p.negMu.Unlock()
	if p.sub.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		return fmt.Errorf("%w: no offer of the server is waiting for an answer", ErrBadSignal)
	}
	if err := p.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSignal, err)
	}
	if p.negPending {
		p.negPending = false
		p.kick()
	}
	return nil
}

func (p *Participant) candidate(c Candidate) error {
	if err := p.allow(); err != nil {
		return err
	}
	if len(c.Candidate) > 1024 {
		return fmt.Errorf("%w: candidate too long", ErrBadSignal)
	}
	if p.room.mode == ModeP2P {
		q, err := p.peer()
		if err != nil {
			return err
		}
		q.sig.Signal(EventCandidate, map[string]any{"from": p.id, "candidate": c.Candidate, "sdpMid": c.SDPMid, "sdpMLineIndex": c.SDPMLineIndex})
		return nil
	}
	var pc *webrtc.PeerConnection
	switch c.Target {
	case "", "publisher":
		p.mu.Lock()
		pc = p.pub
		p.mu.Unlock()
		if pc == nil {
			return fmt.Errorf("%w: candidate for a publisher connection before its offer", ErrBadSignal)
		}
	case "subscriber":
		pc = p.sub
	default:
		return fmt.Errorf("%w: target %q is not publisher or subscriber", ErrBadSignal, c.Target)
	}
	init := webrtc.ICECandidateInit{Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex}
	if err := pc.AddICECandidate(init); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSignal, err)
	}
	return nil
}

// kick wakes the negotiation loop.
func (p *Participant) kick() {
	select {
	case p.negKick <- struct{}{}:
	default:
	}
}

// negotiateLoop sends the subscriber connection's offers, one at a time.
func (p *Participant) negotiateLoop() {
	defer close(p.loopDone)
	for {
		select {
		case <-p.stop:
			return
		case <-p.negKick:
		}
		if err := p.negotiate(); err != nil && !errors.Is(err, webrtc.ErrConnectionClosed) {
			p.room.sfu.log.Warn("renegotiation failed", "room", p.room.name, "participant", p.id, "err", err)
		}
	}
}

// negotiate offers the subscriber connection's current tracks, unless an
// offer is already waiting for its answer (then it runs again after it).
func (p *Participant) negotiate() error {
	p.negMu.Lock()
	defer p.negMu.Unlock()
	if p.sub.SignalingState() != webrtc.SignalingStateStable {
		p.negPending = true
		return nil
	}
	offer, err := p.sub.CreateOffer(&webrtc.OfferOptions{ICERestart: p.negRestart})
	p.negRestart = false
	if err != nil {
		return fmt.Errorf("sfu: create offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(p.sub)
	if err := p.sub.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("sfu: set offer: %w", err)
	}
	p.waitGathered(context.Background(), gathered)
	p.sig.Signal(EventOffer, map[string]string{"sdp": p.sub.LocalDescription().SDP})
	return nil
}

// publishedTracks returns the participant's tracks.
func (p *Participant) publishedTracks() []*upTrack {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.published)
}

// onTrack runs for each incoming track, or each simulcast layer of one.
func (p *Participant) onTrack(pc *webrtc.PeerConnection, remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	var t *upTrack
	for _, have := range p.published {
		if have.remoteID == remote.ID() && have.streamID == remote.StreamID() {
			t = have
		}
	}
	isNew := t == nil
	if isNew {
		t = newUpTrack(p, pc, remote)
		t.meta = p.meta[remote.ID()]
		p.published = append(p.published, t)
	}
	p.mu.Unlock()
	l := t.addLayer(remote, recv)
	go t.readLoop(l)
	if !isNew {
		return
	}
	p.room.sfu.log.Debug("track published", "room", p.room.name, "participant", p.id, "track", t.id, "codec", t.codec.MimeType)
	// The event first, so that a client knows the track before the offer
	// that carries it.
	p.room.broadcast(nil, EventPublished, t.info())
	for _, q := range p.room.others(p) {
		q.subscribe(t)
	}
}

// subscribe starts forwarding t to p.
func (p *Participant) subscribe(t *upTrack) {
	p.mu.Lock()
	if p.closed || p.downs[t] != nil {
		p.mu.Unlock()
		return
	}
	d := newDownTrack(t, p)
	p.downs[t] = d
	p.mu.Unlock()
	tr, err := p.sub.AddTransceiverFromTrack(d, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		p.room.sfu.log.Warn("subscribe failed", "room", p.room.name, "participant", p.id, "track", t.id, "err", err)
		p.mu.Lock()
		delete(p.downs, t)
		p.mu.Unlock()
		return
	}
	d.sender = tr.Sender()
	t.addDown(d)
	go d.readRTCP()
	p.kick()
}

// unsubscribe stops forwarding t to p.
func (p *Participant) unsubscribe(t *upTrack) {
	p.mu.Lock()
	d := p.downs[t]
	delete(p.downs, t)
	closed := p.closed
	p.mu.Unlock()
	if d == nil {
		return
	}
	t.removeDown(d)
	if closed || d.sender == nil {
		return
	}
	if err := p.sub.RemoveTrack(d.sender); err == nil {
		p.kick()
	}
}

func (p *Participant) setPrefs(pr Prefs) error {
	p.mu.Lock()
	var d *downTrack
	for t, have := range p.downs {
		if t.id == pr.Track {
			d = have
		}
	}
	p.mu.Unlock()
	if d == nil {
		return fmt.Errorf("%w: no track %q is forwarded to %q", ErrNotInRoom, pr.Track, p.id)
	}
	d.setPrefs(pr)
	return nil
}

func (p *Participant) unpublish(track string) error {
	p.mu.Lock()
	i := slices.IndexFunc(p.published, func(t *upTrack) bool { return t.id == track })
	if i < 0 {
		p.mu.Unlock()
		return fmt.Errorf("%w: %q publishes no track %q", ErrNotInRoom, p.id, track)
	}
	t := p.published[i]
	p.published = slices.Delete(p.published, i, i+1)
	p.mu.Unlock()
	for _, q := range p.room.others(p) {
		q.unsubscribe(t)
	}
	t.end()
	p.room.broadcast(nil, EventUnpublished, map[string]string{"participant": p.id, "track": t.id})
	return nil
}

func (p *Participant) mute(track string, muted bool) error {
	n := 0
	for _, t := range p.publishedTracks() {
		if track == "" || t.id == track || t.kind.String() == track {
			if was := t.muted.Swap(muted); was && !muted {
				for _, d := range *t.downs.Load() {
					d.restart()
				}
				t.requestKeyframe(-1)
			}
			n++
			p.room.broadcast(nil, EventMuted, map[string]any{"participant": p.id, "track": t.id, "muted": muted})
		}
	}
	if n == 0 {
		return fmt.Errorf("%w: %q publishes no track %q", ErrNotInRoom, p.id, track)
	}
	return nil
}

// close ends the participant's connections and goroutines.
func (p *Participant) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	pub, tracks := p.pub, slices.Clone(p.published) // unpublish may delete from p.published meanwhile
	downs := p.downs
	p.downs = map[*upTrack]*downTrack{}
	p.mu.Unlock()
	close(p.stop)
	for t, d := range downs {
		t.removeDown(d)
	}
	for _, t := range tracks {
		t.end()
	}
	if pub != nil {
		_ = pub.Close()
	}
	if p.sub != nil {
		_ = p.sub.Close()
	}
	<-p.loopDone
	for _, t := range tracks {
		t.wait()
	}
}

// TrackMeta describes a track its publisher announced with room_publish:
// what it shows, for the others' layout.
type TrackMeta struct {
	// Track is the client's track id (MediaStreamTrack.id, the msid in
	// the SDP).
	Track string `json:"track"`
	// Source is what the track carries: "camera", "microphone",
	// "screen", "screen_audio" or the application's own word.
	Source string `json:"source,omitempty"`
	// Name is a label for people.
	Name string `json:"name,omitempty"`
}

// maxMeta bounds the announced tracks of one participant.
const maxMeta = 32

// announce records a track's description; when the track already
// arrived, it is updated and published again.
func (p *Participant) announce(m TrackMeta) error {
	if !p.canPublish {
		return fmt.Errorf("%w: in room %q", ErrNotAllowed, p.room.name)
	}
	p.mu.Lock()
	if _, have := p.meta[m.Track]; !have && len(p.meta) >= maxMeta {
		p.mu.Unlock()
		return fmt.Errorf("%w: at most %d announced tracks", ErrRateLimited, maxMeta)
	}
	p.meta[m.Track] = m
	var t *upTrack
	for _, have := range p.published {
		if have.remoteID == m.Track {
			t = have
		}
	}
	p.mu.Unlock()
	if t != nil {
		t.mu.Lock()
		t.meta = m
		t.mu.Unlock()
		p.room.broadcast(nil, EventPublished, t.info())
	}
	return nil
}
