package stream

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultQueueSize is a reader's queue bound in units when
// Options.QueueSize is 0: about 4 seconds of 30 fps video with its audio.
const DefaultQueueSize = 256

// maxPartLen bounds each part of a path.
const maxPartLen = 64

// SplitPath checks a stream path, "NAMESPACE/NAME", and returns its two
// parts. Each part is 1 to 64 letters, digits, '_', '-' or '.', and does
// not start with '.'. It returns an error wrapping ErrBadPath otherwise.
func SplitPath(path string) (namespace, name string, err error) {
	namespace, name, ok := strings.Cut(path, "/")
	if !ok || !validPart(namespace) || !validPart(name) {
		return "", "", fmt.Errorf("%w %q: want NAMESPACE/NAME, each 1-%d of [A-Za-z0-9_.-], not starting with '.'", ErrBadPath, truncate(path), maxPartLen)
	}
	return namespace, name, nil
}

func validPart(s string) bool {
	if s == "" || len(s) > maxPartLen || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func truncate(s string) string {
	if len(s) > 2*maxPartLen+1 {
		return s[:2*maxPartLen+1] + "..."
	}
	return s
}

// Options configure a Registry. The zero value is usable: namespace "live"
// only, default queue size, slog.Default, time.Now.
type Options struct {
	// Namespaces are the namespaces streams may be published in (the first
	// path segment). Default: "live" alone.
	Namespaces []string
	// QueueSize bounds each reader's queue, in units; a reader that falls
	// this far behind loses its queue and resumes at the next video
	// keyframe. It also bounds the keyframe cache a new reader starts
	// from. Default DefaultQueueSize.
	QueueSize int
	// Logger receives the registry's logs. Default slog.Default().
	Logger *slog.Logger
	// Now returns the time, for uptime and bitrate; tests replace it.
	// Default time.Now.
	Now func() time.Time
	// Owners, when set, records across a cluster which node publishes
	// each stream: Publish claims the path there, and a stream's end
	// releases it. Default: none (the streams of this node only).
	Owners Owners
}

// Owners records which node of a cluster publishes each stream. Claim
// returns an error wrapping ErrPublisherExists when another node
// publishes path; Release forgets this node's record of path. Both may
// block on the network for a bounded time; they are called without the
// registry's locks held, Release after the path is free here.
type Owners interface {
	Claim(path string) error
	Release(path string)
}

// PublisherInfo describes who publishes a stream, for GET /api/streams.
type PublisherInfo struct {
	// Protocol is the ingest: "rtmp", "whip".
	Protocol string `json:"protocol"`
	// Remote is the publisher's network address.
	Remote string `json:"remote,omitempty"`
}

// Registry holds the live streams of this node by path. It is safe for
// concurrent use. Lock order: Registry.mu, then Stream.mu, then Reader.mu.
type Registry struct {
	opts       Options
	log        *slog.Logger
	namespaces map[string]bool

	// Totals since the registry started, for Stats.
	unitsIn, bytesIn, dropped atomic.Uint64

	mu        sync.Mutex // guards the fields below
	streams   map[string]*Stream
	onPublish map[int]func(*Stream)
	nextHook  int
	closed    bool
}

// NewRegistry returns an empty registry.
func NewRegistry(opts Options) *Registry {
	if len(opts.Namespaces) == 0 {
		opts.Namespaces = []string{"live"}
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Registry{
		opts:       opts,
		log:        opts.Logger.With("component", "stream"),
		namespaces: map[string]bool{},
		streams:    map[string]*Stream{},
		onPublish:  map[int]func(*Stream){},
	}
	for _, ns := range opts.Namespaces {
		r.namespaces[ns] = true
	}
	return r
}

// CheckPath checks that path is valid and in a configured namespace; the
// error wraps ErrBadPath or ErrUnknownNamespace.
func (r *Registry) CheckPath(path string) error {
	ns, _, err := SplitPath(path)
	if err != nil {
		return err
	}
	if !r.namespaces[ns] {
		return fmt.Errorf("%w %q", ErrUnknownNamespace, ns)
	}
	return nil
}

// OnPublish registers fn to be called with every stream that starts from
// now on, before Publish returns and before its first unit, so that an
// output attaching a reader in fn misses nothing. fn must not block: it
// starts its own goroutine for the work. The returned function removes
// fn.
func (r *Registry) OnPublish(fn func(*Stream)) (remove func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := r.nextHook
	r.nextHook++
	r.onPublish[id] = fn
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.onPublish, id)
	}
}

// Publish starts a stream at path with the given tracks (at least one)
// and returns its publisher. Authorize the publisher first (Authorizer).
// It fails with ErrBadPath, ErrUnknownNamespace, ErrBadTrack,
// ErrPublisherExists (the path is live, here or, with Options.Owners, on
// another node: a second publisher is refused), ErrOwnersUnavailable (the
// cluster's records cannot be reached) or ErrClosed. The tracks must not
// be changed afterwards.
func (r *Registry) Publish(path string, info PublisherInfo, tracks []*Track) (*Publisher, error) {
	if err := r.CheckPath(path); err != nil {
		return nil, err
	}
	if len(tracks) == 0 {
		return nil, fmt.Errorf("%w: a stream needs at least one track", ErrBadTrack)
	}
	for _, t := range tracks {
		if err := t.validate(); err != nil {
			return nil, err
		}
	}
	s := newStream(r, path, info, tracks)
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	if _, ok := r.streams[path]; ok {
		r.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrPublisherExists, path)
	}
	r.streams[path] = s
	r.mu.Unlock()
	if r.opts.Owners != nil {
		// The path is reserved here first, so that two local publishers
		// do not both claim it in the cluster.
		if err := r.opts.Owners.Claim(path); err != nil {
			r.mu.Lock()
			if r.streams[path] == s {
				delete(r.streams, path)
			}
			r.mu.Unlock()
			s.end(err)
			return nil, fmt.Errorf("stream: claim %s: %w", path, err)
		}
		s.claimed.Store(true)
		if s.Err() != nil && s.claimed.Swap(false) {
			// Ended (kicked, shut down) while the claim was made.
			r.opts.Owners.Release(path)
			return nil, s.Err()
		}
	}
	r.mu.Lock()
	hooks := make([]func(*Stream), 0, len(r.onPublish))
	ids := make([]int, 0, len(r.onPublish))
	for id := range r.onPublish {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		hooks = append(hooks, r.onPublish[id])
	}
	r.mu.Unlock()
	r.log.Info("stream started", "path", path, "protocol", info.Protocol, "remote", info.Remote, "tracks", trackList(tracks))
	for _, fn := range hooks {
		fn(s)
	}
	return &Publisher{s: s}, nil
}

func trackList(tracks []*Track) string {
	names := make([]string, len(tracks))
	for i, t := range tracks {
		names[i] = string(t.Codec)
	}
	return strings.Join(names, ",")
}

// Get returns the live stream at path, or an error wrapping ErrNotFound
// (or ErrBadPath, ErrUnknownNamespace).
func (r *Registry) Get(path string) (*Stream, error) {
	if err := r.CheckPath(path); err != nil {
		return nil, err
	}
	r.mu.Lock()
	s := r.streams[path]
	r.mu.Unlock()
	if s == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, path)
	}
	return s, nil
}

// Read attaches a reader to the live stream at path; see Stream.AddReader.
// Authorize the reader first (Authorizer).
func (r *Registry) Read(path, protocol string) (*Reader, error) {
	s, err := r.Get(path)
	if err != nil {
		return nil, err
	}
	return s.AddReader(protocol)
}

// Streams returns the live streams, sorted by path.
func (r *Registry) Streams() []*Stream {
	r.mu.Lock()
	list := make([]*Stream, 0, len(r.streams))
	for _, s := range r.streams {
		list = append(list, s)
	}
	r.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].path < list[j].path })
	return list
}

// List describes every live stream, sorted by path (GET /api/streams).
func (r *Registry) List() []Info {
	streams := r.Streams()
	out := make([]Info, len(streams))
	for i, s := range streams {
		out[i] = s.Info()
	}
	return out
}

// Stats are the registry's numbers for metrics.
type Stats struct {
	// Streams is the number of live streams.
	Streams int
	// Viewers sums Info.Viewers over the live streams.
	Viewers map[string]int
	// UnitsIn and BytesIn count what publishers wrote since the registry
	// started; Dropped counts the units readers lost by falling behind.
	UnitsIn, BytesIn, Dropped uint64
}

// Stats returns the registry's numbers now.
func (r *Registry) Stats() Stats {
	st := Stats{Viewers: map[string]int{}, UnitsIn: r.unitsIn.Load(), BytesIn: r.bytesIn.Load(), Dropped: r.dropped.Load()}
	for _, in := range r.List() {
		st.Streams++
		for p, n := range in.Viewers {
			st.Viewers[p] += n
		}
	}
	return st
}

// Kick ends the stream at path: its publisher's Done closes and Err
// returns ErrKicked, and its ingest drops the connection; readers get
// ErrKicked after the units already queued. The path is free at once. It
// returns an error wrapping ErrNotFound when nothing is live there.
func (r *Registry) Kick(path string) error {
	s, err := r.Get(path)
	if err != nil {
		return err
	}
	s.end(ErrKicked)
	return nil
}

// Close ends every stream with ErrClosed and refuses later publishers.
// It is idempotent.
func (r *Registry) Close() {
	r.mu.Lock()
	r.closed = true
	list := make([]*Stream, 0, len(r.streams))
	for _, s := range r.streams {
		list = append(list, s)
	}
	r.mu.Unlock()
	for _, s := range list {
		s.end(ErrClosed)
	}
}

// remove forgets s if it is still the stream at its path, and releases
// the path's cluster record once it is free here.
func (r *Registry) remove(s *Stream) {
	r.mu.Lock()
	if r.streams[s.path] == s {
		delete(r.streams, s.path)
	}
	r.mu.Unlock()
	if r.opts.Owners != nil && s.claimed.Swap(false) {
		r.opts.Owners.Release(s.path)
	}
}

// Publisher is the writing end of a stream, held by its ingest.
type Publisher struct {
	s *Stream
}

// Stream returns the publisher's stream.
func (p *Publisher) Stream() *Stream { return p.s }

// WriteUnit hands u to every reader of the stream without blocking. u
// must not be modified afterwards. It returns an error wrapping
// ErrBadTrack when u.Track is not a track of the stream, and the end
// reason (ErrEnded, ErrKicked, ErrClosed) once the stream has ended: the
// ingest then stops and drops its connection.
func (p *Publisher) WriteUnit(u *Unit) error { return p.s.write(u) }

// Close ends the stream (readers get ErrEnded after their queued units)
// and frees its path. It is idempotent and safe after a kick.
func (p *Publisher) Close() { p.s.end(ErrEnded) }

// Done is closed when the stream ends, by Close, a kick or shutdown.
func (p *Publisher) Done() <-chan struct{} { return p.s.done }

// Err returns why the stream ended (ErrEnded, ErrKicked, ErrClosed), or
// nil while it is live.
func (p *Publisher) Err() error { return p.s.Err() }
