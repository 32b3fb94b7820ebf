// Package selftest checks that calls work through a Switchboard node, the
// way a browser would make them: two pion peers join a room over the
// node's signaling, one publishes an audio track and the other must
// receive it through the SFU, once over direct (host) candidates and once
// with relay-only ICE through the TURN servers of the join reply. The
// TURN credentials are also tried on their own, and the addresses the SFU
// announces are judged. The Report says in plain words what works and
// what is broken.
//
// The server runs it in process for GET /api/webrtc/selftest; "switchboard
// doctor webrtc" runs it from another machine over WebSocket.
package selftest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Conn is one participant's signaling connection to the node.
type Conn interface {
	// Join enters room; push then receives the room's pushes (event name
	// and JSON data) until Close.
	Join(ctx context.Context, room string, push func(event string, data json.RawMessage)) (JoinReply, error)
	// Command sends a room command (room_offer, room_answer,
	// room_candidate, room_leave) with its data and returns its result.
	Command(ctx context.Context, command string, data map[string]any) (json.RawMessage, error)
	// Close leaves every room and ends the connection.
	Close()
}

// Dialer opens a new participant's Conn.
type Dialer func(ctx context.Context) (Conn, error)

// JoinReply is the part of room_join's result the self-test reads.
type JoinReply struct {
	Participant string      `json:"participant"`
	ICEServers  []ICEServer `json:"ice_servers"`
}

// ICEServer is one entry of the join reply's ice_servers.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Config configures Run.
type Config struct {
	// Dial opens the participants' connections. Required.
	Dial Dialer
	// Loopback lets the peers use loopback candidates (a node on the same
	// machine, or one that announces only loopback addresses).
	Loopback bool
	// PublicIPs is the node's webrtc_public_ip when known (in process);
	// nil judges the SFU's addresses from its candidates alone.
	PublicIPs []string
	// Timeout bounds each call attempt. Default 10s.
	Timeout time.Duration
}

// Status of a Check.
const (
	StatusOK      = "ok"
	StatusWarning = "warning"
	StatusFailed  = "failed"
	StatusSkipped = "skipped"
)

// Check is one verdict of the self-test.
type Check struct {
	// Name: "signaling", "direct", "turn", "relay" or "public address".
	Name string `json:"name"`
	// Status: "ok", "warning", "failed" or "skipped".
	Status string `json:"status"`
	// Message says what was seen and, when something is wrong, what to
	// change.
	Message string `json:"message"`
	// Millis is how long the check took.
	Millis int64 `json:"ms"`
}

// Report is the self-test's result.
type Report struct {
	// OK is true when no check failed (warnings allowed).
	OK     bool    `json:"ok"`
	Checks []Check `json:"checks"`
}

// String renders the report as lines of plain text.
func (r Report) String() string {
	var b strings.Builder
	for _, c := range r.Checks {
		fmt.Fprintf(&b, "%-8s %-15s %s\n", c.Status, c.Name, c.Message)
	}
	if r.OK {
		b.WriteString("calls work through this node\n")
	} else {
		b.WriteString("calls are broken: see the failed checks above\n")
	}
	return b.String()
}

func (r *Report) add(c Check, start time.Time) {
	c.Millis = time.Since(start).Milliseconds()
	r.Checks = append(r.Checks, c)
	if c.Status == StatusFailed {
		r.OK = false
	}
}

// Run runs the self-test. It never fails as such: what does not work is
// in the report.
func Run(ctx context.Context, cfg Config) Report {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	rep := Report{OK: true}

	start := time.Now()
	direct, err := call(ctx, cfg, false, nil)
	if err != nil && direct.join == nil {
		rep.add(Check{Name: "signaling", Status: StatusFailed, Message: err.Error()}, start)
		return rep
	}
	rep.add(Check{Name: "signaling", Status: StatusOK, Message: "joined a room and exchanged offers and answers over the node's signaling"}, start)
	if err != nil {
		rep.add(Check{Name: "direct", Status: StatusFailed, Message: err.Error()}, start)
	} else {
		rep.add(Check{Name: "direct", Status: StatusOK, Message: fmt.Sprintf("media flowed through the SFU over %s (%d packets)", direct.path, direct.packets)}, start)
	}
	rep.add(judgeAddresses(direct.sfuAddrs, cfg.PublicIPs), time.Now())

	start = time.Now()
	turnURLs, user, pass := turnServer(direct.join.ICEServers)
	if len(turnURLs) == 0 {
		rep.add(Check{Name: "turn", Status: StatusWarning, Message: "the join reply has no TURN server: TURN is off (set turn_addr), so clients whose UDP is blocked or behind strict NATs cannot call"}, start)
		rep.add(Check{Name: "relay", Status: StatusSkipped, Message: "no TURN server to relay through"}, start)
		return rep
	}
	rep.add(checkTURN(ctx, turnURLs, user, pass, cfg.Timeout), start)

	start = time.Now()
	relayed, err := call(ctx, cfg, true, direct.join.ICEServers)
	if err != nil {
		rep.add(Check{Name: "relay", Status: StatusFailed, Message: err.Error()}, start)
	} else {
		rep.add(Check{Name: "relay", Status: StatusOK, Message: fmt.Sprintf("media flowed through TURN and the SFU with relay-only ICE, over %s (%d packets)", relayed.path, relayed.packets)}, start)
	}
	return rep
}

// turnServer picks the TURN URLs (with their credentials) of a join reply.
func turnServer(list []ICEServer) (urls []string, user, pass string) {
	for _, s := range list {
		for _, u := range s.URLs {
			if strings.HasPrefix(u, "turn:") || strings.HasPrefix(u, "turns:") {
				urls = append(urls, u)
				user, pass = s.Username, s.Credential
			}
		}
	}
	return urls, user, pass
}

// outcome is what one call attempt saw.
type outcome struct {
	join     *JoinReply // the first peer's, once joined
	sfuAddrs []string   // addresses of the SFU's candidates
	path     string     // the publisher's selected candidate pair, in words
	packets  int64
}

func randomName() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "selftest-" + hex.EncodeToString(b[:])
}

// call runs one attempt: a publisher and a subscriber in a fresh room.
func call(ctx context.Context, cfg Config, relay bool, iceServers []ICEServer) (out outcome, err error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	room := randomName()
	what := "direct"
	if relay {
		what = "relay-only"
	}

	pubConn, err := cfg.Dial(ctx)
	if err != nil {
		return out, fmt.Errorf("cannot reach the node's signaling: %w", err)
	}
	defer pubConn.Close()
	subConn, err := cfg.Dial(ctx)
	if err != nil {
		return out, fmt.Errorf("cannot reach the node's signaling: %w", err)
	}
	defer subConn.Close()

	api, pcCfg := newAPI(cfg, relay, iceServers)
	sub := &subscriber{conn: subConn, room: room, api: api, cfg: pcCfg, got: make(chan struct{}), failed: make(chan error, 1)}
	defer sub.close()
	joinPub, err := pubConn.Join(ctx, room, func(string, json.RawMessage) {})
	if err != nil {
		return out, fmt.Errorf("room_join refused: %w", err)
	}
	out.join = &joinPub
	if _, err := subConn.Join(ctx, room, sub.push); err != nil {
		return out, fmt.Errorf("room_join refused: %w", err)
	}

	pc, err := api.NewPeerConnection(pcCfg)
	if err != nil {
		return out, fmt.Errorf("selftest: %w", err)
	}
	defer pc.Close()
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "selftest")
	if err != nil {
		return out, fmt.Errorf("selftest: %w", err)
	}
	if _, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		return out, fmt.Errorf("selftest: %w", err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return out, fmt.Errorf("selftest: %w", err)
	}
	if err := setLocal(ctx, pc, offer); err != nil {
		return out, err
	}
	if relay && !strings.Contains(pc.LocalDescription().SDP, " typ relay") {
		return out, errors.New("no relay candidate: the TURN server gave no allocation (see the turn check)")
	}
	res, err := pubConn.Command(ctx, "room_offer", map[string]any{"room": room, "sdp": pc.LocalDescription().SDP})
	if err != nil {
		return out, fmt.Errorf("room_offer refused: %w", err)
	}
	var answer struct {
		SDP string `json:"sdp"`
	}
	if err := json.Unmarshal(res, &answer); err != nil || answer.SDP == "" {
		return out, fmt.Errorf("room_offer gave no answer: %s", res)
	}
	out.sfuAddrs = candidateAddrs(answer.SDP)
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer.SDP}); err != nil {
		return out, fmt.Errorf("the SFU's answer does not apply: %w", err)
	}

	// Send packets until the subscriber has enough of them.
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		var seq uint16
		for ts := uint32(0); ; ts += 960 {
			select {
			case <-ctx.Done():
				return
			case <-sub.got:
				return
			case <-t.C:
			}
			seq++
			_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Marker: true}, Payload: []byte{0xf8, 0xff, 0xfe}})
		}
	}()

	select {
	case <-sub.got:
		out.packets = sub.packets.Load()
		out.path = describePair(pc)
		return out, nil
	case err := <-sub.failed:
		return out, err
	case <-ctx.Done():
	}
	// Say which leg did not connect.
	pubState := pc.ICEConnectionState()
	subState := sub.iceState()
	addrs := strings.Join(out.sfuAddrs, ", ")
	if addrs == "" {
		addrs = "none"
	}
	switch {
	case pubState != webrtc.ICEConnectionStateConnected && pubState != webrtc.ICEConnectionStateCompleted:
		if relay {
			return out, fmt.Errorf("no %s connection to the SFU within %s: TURN relayed nothing to the SFU's candidates (%s); TURN refuses private and loopback addresses unless turn_allowed_peers lists them, so announce a public address (webrtc_public_ip) or allow the range", what, cfg.Timeout, addrs)
		}
		return out, fmt.Errorf("no %s connection to the SFU within %s: its candidates (%s) did not answer; the UDP port is blocked by a firewall, or the address is not reachable from here (set webrtc_public_ip behind NAT, open webrtc_udp_port)", what, cfg.Timeout, addrs)
	case subState != webrtc.ICEConnectionStateConnected && subState != webrtc.ICEConnectionStateCompleted:
		return out, fmt.Errorf("the publisher connected but the subscriber did not (%s, ICE %s) within %s", what, subState, cfg.Timeout)
	default:
		return out, fmt.Errorf("both connections are up (%s) but no media arrived within %s: the SFU does not forward", what, cfg.Timeout)
	}
}

// newAPI builds the peers' WebRTC API and configuration.
func newAPI(cfg Config, relay bool, ice []ICEServer) (*webrtc.API, webrtc.Configuration) {
	m := &webrtc.MediaEngine{}
	_ = m.RegisterDefaultCodecs()
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(cfg.Loopback)
	se.SetICETimeouts(3*time.Second, 6*time.Second, 500*time.Millisecond)
	pc := webrtc.Configuration{}
	if relay {
		pc.ICETransportPolicy = webrtc.ICETransportPolicyRelay
		for _, s := range ice {
			pc.ICEServers = append(pc.ICEServers, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
		}
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)), pc
}

// setLocal sets d and waits for the candidates (no trickle: they go in
// the SDP), within ctx.
func setLocal(ctx context.Context, pc *webrtc.PeerConnection, d webrtc.SessionDescription) error {
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(d); err != nil {
		return fmt.Errorf("selftest: %w", err)
	}
	select {
	case <-gathered:
		return nil
	case <-ctx.Done():
		return errors.New("gathering ICE candidates did not finish: is a TURN or STUN server unreachable?")
	}
}

// candidateAddrs lists the addresses of an SDP's candidates.
func candidateAddrs(sdp string) []string {
	var out []string
	for _, line := range strings.Split(sdp, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "a=candidate:") {
			continue
		}
		f := strings.Fields(line)
		if len(f) >= 8 {
			a := net.JoinHostPort(f[4], f[5]) + " " + f[2]
			if !containsStr(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// describePair names the publisher's selected candidate pair.
func describePair(pc *webrtc.PeerConnection) string {
	for _, tr := range pc.GetTransceivers() {
		s := tr.Sender()
		if s == nil || s.Transport() == nil {
			continue
		}
		pair, err := s.Transport().ICETransport().GetSelectedCandidatePair()
		if err != nil || pair == nil {
			continue
		}
		return fmt.Sprintf("%s %s candidate %s to %s %s", pair.Local.Protocol, pair.Local.Typ, net.JoinHostPort(pair.Local.Address, fmt.Sprint(pair.Local.Port)), pair.Remote.Typ, net.JoinHostPort(pair.Remote.Address, fmt.Sprint(pair.Remote.Port)))
	}
	return "an ICE connection"
}

// judgeAddresses says whether the SFU announces an address that clients
// on other networks can reach.
func judgeAddresses(addrs, publicIPs []string) Check {
	c := Check{Name: "public address"}
	if len(addrs) == 0 {
		c.Status, c.Message = StatusSkipped, "the SFU's candidates are unknown (the direct call did not get an answer)"
		return c
	}
	var public, private, loop []string
	for _, a := range addrs {
		host, _, _ := net.SplitHostPort(strings.Fields(a)[0])
		ip, err := netip.ParseAddr(host)
		switch {
		case err != nil:
			continue
		case ip.IsLoopback():
			loop = append(loop, host)
		case ip.IsPrivate() || ip.IsLinkLocalUnicast() || cgnat.Contains(ip) || ip.IsUnspecified():
			private = append(private, host)
		default:
			public = append(public, host)
		}
	}
	switch {
	case len(public) > 0:
		c.Status, c.Message = StatusOK, "the SFU announces the public address "+strings.Join(uniq(public), ", ")
	case len(publicIPs) > 0:
		c.Status, c.Message = StatusOK, "the SFU announces the configured webrtc_public_ip "+strings.Join(publicIPs, ", ")
	case len(private) > 0:
		c.Status, c.Message = StatusWarning, "no public address configured: the SFU announces only private addresses ("+strings.Join(uniq(private), ", ")+"), which clients on other networks cannot reach; set webrtc_public_ip to the host's public IP (1:1 NAT) or serve them through TURN"
	default:
		c.Status, c.Message = StatusWarning, "the SFU announces only loopback addresses ("+strings.Join(uniq(loop), ", ")+"): only browsers on this machine can call; turn off webrtc_loopback and set webrtc_public_ip for others"
	}
	return c
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")

func uniq(s []string) []string {
	var out []string
	for _, x := range s {
		if !containsStr(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// subscriber answers the SFU's offers and counts the packets it gets.
type subscriber struct {
	conn    Conn
	room    string
	api     *webrtc.API          // set at creation
	cfg     webrtc.Configuration // set at creation
	packets atomic.Int64
	got     chan struct{} // closed at enough packets
	gotOnce sync.Once
	failed  chan error

	mu sync.Mutex
	pc *webrtc.PeerConnection
}

// enoughPackets is how many packets prove that media flows.
const enoughPackets = 10

func (s *subscriber) push(event string, data json.RawMessage) {
	if event != "offer" {
		return
	}
	var offer struct {
		SDP string `json:"sdp"`
	}
	if json.Unmarshal(data, &offer) != nil || offer.SDP == "" {
		return
	}
	go s.answer(offer.SDP)
}

func (s *subscriber) answer(sdp string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fail := func(err error) {
		select {
		case s.failed <- err:
		default:
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pc == nil {
		pc, err := s.api.NewPeerConnection(s.cfg)
		if err != nil {
			fail(fmt.Errorf("selftest: %w", err))
			return
		}
		pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			for {
				if _, _, err := t.ReadRTP(); err != nil {
					return
				}
				if s.packets.Add(1) >= enoughPackets {
					s.gotOnce.Do(func() { close(s.got) })
				}
			}
		})
		s.pc = pc
	}
	if err := s.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		fail(fmt.Errorf("the SFU's offer does not apply: %w", err))
		return
	}
	ans, err := s.pc.CreateAnswer(nil)
	if err != nil {
		fail(fmt.Errorf("selftest: %w", err))
		return
	}
	if err := setLocal(ctx, s.pc, ans); err != nil {
		fail(err)
		return
	}
	if _, err := s.conn.Command(ctx, "room_answer", map[string]any{"room": s.room, "sdp": s.pc.LocalDescription().SDP}); err != nil {
		fail(fmt.Errorf("room_answer refused: %w", err))
	}
}

func (s *subscriber) iceState() webrtc.ICEConnectionState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pc == nil {
		return webrtc.ICEConnectionStateNew
	}
	return s.pc.ICEConnectionState()
}

func (s *subscriber) close() {
	s.mu.Lock()
	pc := s.pc
	s.mu.Unlock()
	if pc != nil {
		_ = pc.Close()
	}
}
