package whip

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/switchboardhq/switchboard/internal/stream"
)

// Connections makes the PeerConnections; the SFU implements it.
type Connections interface {
	// NewReceiveConnection returns a connection for a publisher.
	NewReceiveConnection() (*webrtc.PeerConnection, error)
	// NewSendConnection returns a connection for a viewer.
	NewSendConnection() (*webrtc.PeerConnection, error)
}

// Options configure a Server.
type Options struct {
	// Registry is where WHIP publishes and WHEP reads. Required.
	Registry *stream.Registry
	// Authorizer checks publishers and readers. Required.
	Authorizer *stream.Authorizer
	// Connections makes the PeerConnections. Required.
	Connections Connections
	// DefaultNamespace is the namespace of a one-segment path
	// (/whip/NAME means /whip/DEFAULT/NAME). Default "live".
	DefaultNamespace string
	// GatherTimeout bounds how long an answer waits for the server's ICE
	// candidates (they are sent in the answer, not trickled). Default 2s.
	GatherTimeout time.Duration
	// ConnectTimeout ends a session whose connection is not up this long
	// after the answer. Default 20s.
	ConnectTimeout time.Duration
	// KeyframeInterval is how often a WHIP publisher is asked for a
	// keyframe (PLI), so that LL-HLS can cut segments: browsers send
	// keyframes only when asked. Default 2s.
	KeyframeInterval time.Duration
	// MaxPublishers and MaxViewers bound the WHIP and WHEP sessions of
	// the node (each one a PeerConnection); a request beyond is answered
	// 503. Default 200 and 5000.
	MaxPublishers, MaxViewers int
	// Logger receives the package's logs. Default slog.Default().
	Logger *slog.Logger
}

// Stats are the counters of a Server, for metrics.
type Stats struct {
	// PublishSessions and ViewSessions are the live WHIP and WHEP
	// sessions.
	PublishSessions, ViewSessions int
	// ForwardedPackets counts RTP packets written to WHEP viewers.
	ForwardedPackets uint64
}

// Server serves WHIP and WHEP; mount it at /whip/ and /whep/. It is safe
// for concurrent use.
type Server struct {
	opts       Options
	log        *slog.Logger
	forwarded  atomic.Uint64
	iceServers atomic.Pointer[ICEServersFunc]

	mu       sync.Mutex                 // guards the fields below
	pubs     map[string]*publishSession // by session id
	byPath   map[string]*publishSession // by stream path
	views    map[string]*viewSession    // by session id
	sources  map[*stream.Stream]*unitSource
	closed   bool
	sessions sync.WaitGroup
}

// New returns a server.
func New(opts Options) *Server {
	if opts.DefaultNamespace == "" {
		opts.DefaultNamespace = "live"
	}
	if opts.GatherTimeout <= 0 {
		opts.GatherTimeout = 2 * time.Second
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 20 * time.Second
	}
	if opts.KeyframeInterval <= 0 {
		opts.KeyframeInterval = 2 * time.Second
	}
	if opts.MaxPublishers <= 0 {
		opts.MaxPublishers = 200
	}
	if opts.MaxViewers <= 0 {
		opts.MaxViewers = 5000
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Server{
		opts: opts, log: opts.Logger.With("component", "whip"),
		pubs: map[string]*publishSession{}, byPath: map[string]*publishSession{},
		views: map[string]*viewSession{}, sources: map[*stream.Stream]*unitSource{},
	}
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{PublishSessions: len(s.pubs), ViewSessions: len(s.views), ForwardedPackets: s.forwarded.Load()}
}

// status maps an error to its HTTP status.
func status(err error) int {
	switch {
	case errors.Is(err, ErrBadOffer), errors.Is(err, ErrNoMedia):
		return http.StatusBadRequest
	case errors.Is(err, ErrCodec):
		return http.StatusUnprocessableEntity
	case errors.Is(err, ErrNoSession):
		return http.StatusNotFound
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	}
	return stream.StatusCode(err)
}

// ServeHTTP serves POST /whip/PATH and /whep/PATH (PATH is NAMESPACE/NAME,
// or NAME in the default namespace) and DELETE and PATCH of the session
// resources /whip/NAMESPACE/NAME/ID and /whep/NAMESPACE/NAME/ID.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Expose-Headers", "Location, Link")
	kind, rest, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if !ok || (kind != "whip" && kind != "whep") {
		http.Error(w, "whip: want /whip/NAMESPACE/NAME or /whep/NAMESPACE/NAME", http.StatusNotFound)
		return
	}
	parts := strings.Split(rest, "/")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "POST, DELETE, PATCH, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
		if len(parts) <= 2 {
			s.linkICEServers(h, r)
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	switch {
	case len(parts) <= 2 && r.Method == http.MethodPost:
		path := rest
		if len(parts) == 1 {
			path = s.opts.DefaultNamespace + "/" + rest
		}
		s.post(w, r, kind, path)
	case len(parts) == 3 && r.Method == http.MethodDelete:
		if err := s.end(kind, parts[0]+"/"+parts[1], parts[2], r); err != nil {
			http.Error(w, err.Error(), status(err))
			return
		}
		w.WriteHeader(http.StatusOK)
	case len(parts) == 3 && r.Method == http.MethodPatch:
		// Trickle ICE and ICE restarts are not supported: the answer
		// carries every server candidate, and the server is ICE lite.
		h.Set("Allow", "DELETE, OPTIONS")
		http.Error(w, "whip: trickle ICE and ICE restart (PATCH) are not supported: the answer holds all the server's candidates", http.StatusMethodNotAllowed)
	case len(parts) == 3:
		h.Set("Allow", "DELETE, PATCH, OPTIONS")
		http.Error(w, "whip: a session resource takes DELETE", http.StatusMethodNotAllowed)
	case len(parts) <= 2:
		h.Set("Allow", "POST, OPTIONS")
		http.Error(w, "whip: POST an SDP offer (Content-Type: application/sdp)", http.StatusMethodNotAllowed)
	default:
		http.Error(w, "whip: want /"+kind+"/NAMESPACE/NAME", http.StatusNotFound)
	}
}

// post answers an offer.
func (s *Server) post(w http.ResponseWriter, r *http.Request, kind, path string) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(strings.ToLower(ct), "application/sdp") {
		http.Error(w, fmt.Sprintf("whip: the offer's Content-Type must be application/sdp, not %q", ct), http.StatusUnsupportedMediaType)
		return
	}
	if err := s.opts.Registry.CheckPath(path); err != nil {
		http.Error(w, err.Error(), status(err))
		return
	}
	action := stream.ActionPublish
	if kind == "whep" {
		action = stream.ActionRead
	}
	if err := s.opts.Authorizer.Authorize(action, path, stream.CredentialsFromRequest(r)); err != nil {
		http.Error(w, err.Error(), status(err))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxOfferSize+1))
	if err != nil {
		http.Error(w, "whip: reading the offer: "+err.Error(), http.StatusBadRequest)
		return
	}
	o, err := parseOffer(body)
	if err != nil {
		http.Error(w, err.Error(), status(err))
		return
	}
	id := newID()
	var answer string
	if kind == "whip" {
		answer, err = s.publish(r.Context(), id, path, r.RemoteAddr, o, string(body))
	} else {
		answer, err = s.view(r.Context(), id, path, o, string(body))
	}
	if err != nil {
		if status(err) >= 500 {
			s.log.Warn("session failed", "kind", kind, "path", path, "err", err)
		}
		http.Error(w, err.Error(), status(err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/sdp")
	h.Set("Location", "/"+kind+"/"+path+"/"+id)
	s.linkICEServers(h, r)
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
}

// end ends the session id of path, as DELETE asks. A WHEP session may be
// ended by anyone who knows its id (it is unguessable); a WHIP session's
// DELETE needs the publisher's credential again.
func (s *Server) end(kind, path, id string, r *http.Request) error {
	s.mu.Lock()
	var closer func()
	if kind == "whip" {
		if p := s.pubs[id]; p != nil && p.path == path {
			closer = func() { p.close(stream.ErrEnded) }
		}
	} else if v := s.views[id]; v != nil && v.path == path {
		closer = v.close
	}
	s.mu.Unlock()
	if closer == nil {
		return fmt.Errorf("%w: %s/%s", ErrNoSession, path, id)
	}
	if kind == "whip" {
		if err := s.opts.Authorizer.Authorize(stream.ActionPublish, path, stream.CredentialsFromRequest(r)); err != nil {
			return err
		}
	}
	closer()
	return nil
}

// Close ends every session. It is idempotent.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	var closers []func()
	for _, p := range s.pubs {
		closers = append(closers, func() { p.close(stream.ErrClosed) })
	}
	for _, v := range s.views {
		closers = append(closers, v.close)
	}
	s.mu.Unlock()
	for _, c := range closers {
		c()
	}
	done := make(chan struct{})
	go func() { s.sessions.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("whip: close: %w", ctx.Err())
	}
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// answer sets the offer, lets prepare add tracks, and returns the
// answer with the server's candidates.
func answer(ctx context.Context, pc *webrtc.PeerConnection, sdp string, gather time.Duration, prepare func() error) (string, error) {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadOffer, err)
	}
	if prepare != nil {
		if err := prepare(); err != nil {
			return "", err
		}
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadOffer, err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadOffer, err)
	}
	t := time.NewTimer(gather)
	defer t.Stop()
	select {
	case <-gathered:
	case <-t.C:
	case <-ctx.Done():
		return "", fmt.Errorf("whip: answer: %w", ctx.Err())
	}
	return pc.LocalDescription().SDP, nil
}
