// Package hls is the LL-HLS output of live streams: every live stream whose
// codecs HLS can carry is muxed, without transcoding, into fMP4 segments
// and parts served at /hls/NAMESPACE/NAME/index.m3u8, with blocking
// playlist reload (_HLS_msn, _HLS_part) and preload hints. H.264, H.265,
// AV1 and VP9 video and AAC audio are carried; Opus and VP8 are not (no
// browser plays them from HLS), and the stream's other tracks still play.
//
// The muxing is done by github.com/bluenviron/gohlslib.
package hls

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/gohlslib/v2"
	"github.com/bluenviron/gohlslib/v2/pkg/codecs"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/switchboardhq/switchboard/internal/stream"
)

// Options configure a Server.
type Options struct {
	// Registry is where streams come from. Required.
	Registry *stream.Registry
	// Authorizer checks readers of namespaces that need a credential.
	// Required.
	Authorizer *stream.Authorizer
	// SegmentDuration is the shortest segment (a segment also starts on a
	// keyframe, so it lasts at least one GOP). Default 1s.
	SegmentDuration time.Duration
	// PartDuration is the shortest part. Default 200ms.
	PartDuration time.Duration
	// SegmentCount is how many segments a playlist lists (at least 7).
	// Default 7.
	SegmentCount int
	// RequestTimeout bounds a blocking playlist reload or preload hint
	// request; then it gets 503. Default 10s.
	RequestTimeout time.Duration
	// ViewerWindow: a client that fetched the playlist within this window
	// counts as a viewer in GET /api/streams. Default 10s.
	ViewerWindow time.Duration
	// Logger receives the output's logs. Default slog.Default().
	Logger *slog.Logger
}

// Server muxes the live streams and serves them over HTTP; mount it at
// /hls/. It is safe for concurrent use.
type Server struct {
	opts   Options
	log    *slog.Logger
	remove func()

	mu      sync.Mutex // guards muxers
	muxers  map[string]*muxer
	closing bool
	wg      sync.WaitGroup // one per muxer goroutine
}

// New returns a server that muxes every stream the registry starts from now
// on.
func New(opts Options) *Server {
	if opts.SegmentDuration <= 0 {
		opts.SegmentDuration = time.Second
	}
	if opts.PartDuration <= 0 {
		opts.PartDuration = 200 * time.Millisecond
	}
	if opts.SegmentCount < 7 {
		opts.SegmentCount = 7
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 10 * time.Second
	}
	if opts.ViewerWindow <= 0 {
		opts.ViewerWindow = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, log: opts.Logger.With("component", "hls"), muxers: map[string]*muxer{}}
	s.remove = opts.Registry.OnPublish(s.start)
	return s
}

// Close stops muxing: it ends every muxer and waits for their goroutines.
// It is idempotent.
func (s *Server) Close() {
	s.remove()
	s.mu.Lock()
	s.closing = true
	list := make([]*muxer, 0, len(s.muxers))
	for _, m := range s.muxers {
		list = append(list, m)
	}
	s.mu.Unlock()
	for _, m := range list {
		m.rd.Close()
	}
	s.wg.Wait()
}

// muxer is one stream's HLS muxer and the reader that feeds it.
type muxer struct {
	path   string
	rd     *stream.Reader
	mux    *gohlslib.Muxer
	tracks []*gohlslib.Track // by stream track index; nil: not carried
	done   chan struct{}     // closed when the muxer is closed
	views  viewers
}

// start begins muxing s (a Registry.OnPublish hook: it must not block).
func (s *Server) start(st *stream.Stream) {
	tracks, skipped := hlsTracks(st.Tracks())
	if len(skipped) > 0 {
		s.log.Info("hls: tracks not carried", "path", st.Path(), "codecs", strings.Join(skipped, ","))
	}
	var list []*gohlslib.Track
	for _, t := range tracks {
		if t != nil {
			list = append(list, t)
		}
	}
	if len(list) == 0 {
		return
	}
	mux := &gohlslib.Muxer{
		Tracks:             list,
		Variant:            gohlslib.MuxerVariantLowLatency,
		SegmentCount:       s.opts.SegmentCount,
		SegmentMinDuration: s.opts.SegmentDuration,
		PartMinDuration:    s.opts.PartDuration,
		OnEncodeError: func(err error) {
			s.log.Debug("hls: muxing error", "path", st.Path(), "err", err)
		},
	}
	if err := mux.Start(); err != nil {
		s.log.Warn("hls: cannot mux stream", "path", st.Path(), "err", err)
		return
	}
	rd, err := st.AddReader("hls")
	if err != nil {
		mux.Close()
		return
	}
	m := &muxer{path: st.Path(), rd: rd, mux: mux, tracks: tracks, done: make(chan struct{}), views: viewers{window: s.opts.ViewerWindow}}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		rd.Close()
		mux.Close()
		return
	}
	s.muxers[m.path] = m
	s.wg.Add(2)
	s.mu.Unlock()
	go s.run(m)
	go s.countViewers(m)
}

// countViewers refreshes the stream's LL-HLS viewer count while it plays,
// so that viewers who left stop counting without another request.
func (s *Server) countViewers(m *muxer) {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.ViewerWindow / 4)
	defer t.Stop()
	for {
		select {
		case <-m.done:
			return
		case now := <-t.C:
			m.rd.Stream().SetViewers("hls", m.views.count(now))
		}
	}
}

// run feeds the muxer until the stream ends.
func (s *Server) run(m *muxer) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		if s.muxers[m.path] == m {
			delete(s.muxers, m.path)
		}
		s.mu.Unlock()
		close(m.done)
		m.mux.Close()
		m.rd.Stream().SetViewers("hls", 0)
	}()
	for {
		u, _, err := m.rd.Next(context.Background())
		if err != nil {
			return
		}
		t := m.tracks[u.Track]
		if t == nil {
			continue
		}
		if err := write(m.mux, t, u); err != nil {
			s.log.Debug("hls: write", "path", m.path, "err", err)
		}
	}
}

// hlsTracks maps the stream's tracks to muxer tracks (nil where a codec is
// not carried) and names the codecs skipped.
func hlsTracks(tracks []*stream.Track) (out []*gohlslib.Track, skipped []string) {
	out = make([]*gohlslib.Track, len(tracks))
	video := false
	for i, t := range tracks {
		var c codecs.Codec
		switch t.Codec {
		case stream.H264:
			c = &codecs.H264{SPS: t.SPS, PPS: t.PPS}
		case stream.H265:
			c = &codecs.H265{VPS: t.VPS, SPS: t.SPS, PPS: t.PPS}
		case stream.AV1:
			c = &codecs.AV1{}
		case stream.VP9:
			c = &codecs.VP9{}
		case stream.AAC:
			var cfg mpeg4audio.AudioSpecificConfig
			if err := cfg.Unmarshal(t.Config); err != nil {
				skipped = append(skipped, "aac (bad config)")
				continue
			}
			c = &codecs.MPEG4Audio{Config: cfg}
		default:
			skipped = append(skipped, string(t.Codec))
			continue
		}
		if c.IsVideo() {
			if video {
				skipped = append(skipped, string(t.Codec)+" (second video track)")
				continue
			}
			video = true
		}
		out[i] = &gohlslib.Track{Codec: c, ClockRate: t.ClockRate}
	}
	return out, skipped
}

func write(mux *gohlslib.Muxer, t *gohlslib.Track, u *stream.Unit) error {
	ntp := u.Time
	if ntp.IsZero() {
		ntp = time.Now()
	}
	switch t.Codec.(type) {
	case *codecs.H264:
		return mux.WriteH264(t, ntp, u.PTS, u.NALUs)
	case *codecs.H265:
		return mux.WriteH265(t, ntp, u.PTS, u.NALUs)
	case *codecs.AV1:
		return mux.WriteAV1(t, ntp, u.PTS, u.NALUs)
	case *codecs.VP9:
		return mux.WriteVP9(t, ntp, u.PTS, u.Payload)
	case *codecs.MPEG4Audio:
		return mux.WriteMPEG4Audio(t, ntp, u.PTS, [][]byte{u.Payload})
	}
	return errors.New("hls: codec not carried")
}

// ServeHTTP serves /hls/NAMESPACE/NAME/FILE: index.m3u8 (the multivariant
// playlist) and the media playlists, init sections, segments and parts
// it lists. Errors: 400 bad path, 401/403 credentials (namespaces with
// read: token; give ?key= or "Authorization: Bearer"), 404 no such stream
// or file, 503 when a blocking request outlasts RequestTimeout or the
// stream ends during it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	if r.Method == http.MethodOptions {
		w.Header().Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		w.Header().Set("Access-Control-Allow-Headers", "Authorization")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD, OPTIONS")
		http.Error(w, "hls: use GET", http.StatusMethodNotAllowed)
		return
	}
	rest := strings.TrimPrefix(r.URL.Path, "/hls/")
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		http.Error(w, "hls: want /hls/NAMESPACE/NAME/index.m3u8", http.StatusNotFound)
		return
	}
	path, file := rest[:i], rest[i+1:]
	if err := s.opts.Registry.CheckPath(path); err != nil {
		http.Error(w, err.Error(), stream.StatusCode(err))
		return
	}
	if err := s.opts.Authorizer.Authorize(stream.ActionRead, path, stream.CredentialsFromRequest(r)); err != nil {
		http.Error(w, err.Error(), stream.StatusCode(err))
		return
	}
	s.mu.Lock()
	m := s.muxers[path]
	s.mu.Unlock()
	if m == nil {
		http.Error(w, fmt.Sprintf("hls: %s is not live (or has no track HLS can carry)", path), http.StatusNotFound)
		return
	}
	if strings.HasSuffix(file, ".m3u8") {
		m.rd.Stream().SetViewers("hls", m.views.seen(clientID(r), time.Now()))
	}
	m.serve(w, r, s.opts.RequestTimeout)
}

// serve answers r from the muxer. The muxer's handler runs on its own
// goroutine and writes to a buffer, copied to w when it is complete: a
// blocking request is bounded by timeout and by the stream's end, and a
// slow client holds nothing of the muxer while it is written to.
func (m *muxer) serve(w http.ResponseWriter, r *http.Request, timeout time.Duration) {
	rec := &recorder{header: http.Header{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.mux.Handle(rec, r)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
	case <-m.done:
		http.Error(w, "hls: the stream ended", http.StatusServiceUnavailable)
		return
	case <-t.C:
		http.Error(w, "hls: the part or segment asked for did not come in time", http.StatusServiceUnavailable)
		return
	case <-r.Context().Done():
		return
	}
	if rec.status == 0 {
		http.Error(w, "hls: no such file", http.StatusNotFound)
		return
	}
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	if rec.status == http.StatusInternalServerError {
		// The muxer answers 500 once it is closed: the stream ended.
		http.Error(w, "hls: the stream ended", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(rec.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(rec.body)
	}
}

// recorder is an http.ResponseWriter into memory.
type recorder struct {
	header http.Header
	status int
	body   []byte
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.body = append(r.body, p...)
	return len(p), nil
}

// clientID identifies a viewer for counting: its address and user agent.
func clientID(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i > 0 {
		host = host[:i]
	}
	return host + " " + r.UserAgent()
}

// maxViewers bounds the clients a stream's viewer count remembers, so
// that requests with ever new user agents cannot grow it without end.
const maxViewers = 100000

// viewers counts distinct clients seen within a window.
type viewers struct {
	window time.Duration
	mu     sync.Mutex
	last   map[string]time.Time
}

// seen records id at now and returns the number of clients seen within the
// window.
func (v *viewers) seen(id string, now time.Time) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.last == nil {
		v.last = map[string]time.Time{}
	}
	if _, ok := v.last[id]; ok || len(v.last) < maxViewers {
		v.last[id] = now
	}
	return v.countLocked(now)
}

// count returns the number of clients seen within the window before now.
func (v *viewers) count(now time.Time) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.countLocked(now)
}

// countLocked forgets the clients not seen within the window and counts
// the others. v.mu must be held.
func (v *viewers) countLocked(now time.Time) int {
	for k, t := range v.last {
		if now.Sub(t) > v.window {
			delete(v.last, k)
		}
	}
	return len(v.last)
}
