package stream

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Stream is one live stream: its path, tracks and readers. It is created by
// Registry.Publish and ends with its publisher. Its methods are safe for
// concurrent use.
type Stream struct {
	reg      *Registry
	path     string
	tracks   []*Track
	pub      PublisherInfo
	started  time.Time
	hasVideo bool
	done     chan struct{} // closed by end
	// claimed is set while this node holds the path's cluster record
	// (Options.Owners).
	claimed atomic.Bool

	mu      sync.Mutex // guards the fields below; taken before Reader.mu
	readers map[*Reader]struct{}
	// gop holds the units since the last video keyframe (at most
	// QueueSize), which a new reader starts from; nil while none is known.
	gop     []*Unit
	ended   error
	units   uint64
	bytes   uint64
	rate    rateMeter
	viewers map[string]int // set by outputs without readers (SetViewers)
}

func newStream(r *Registry, path string, info PublisherInfo, tracks []*Track) *Stream {
	s := &Stream{
		reg: r, path: path, tracks: tracks, pub: info,
		started: r.opts.Now(), done: make(chan struct{}),
		readers: map[*Reader]struct{}{}, viewers: map[string]int{},
	}
	for _, t := range tracks {
		if t.Kind() == Video {
			s.hasVideo = true
		}
	}
	return s
}

// Path returns the stream's path, "NAMESPACE/NAME".
func (s *Stream) Path() string { return s.path }

// Claimed reports whether this node holds the stream's cluster record
// (Options.Owners): from a successful claim until the stream ends.
func (s *Stream) Claimed() bool { return s.claimed.Load() }

// Tracks returns the stream's tracks; Unit.Track indexes this slice. The
// tracks are shared and must not be modified.
func (s *Stream) Tracks() []*Track { return s.tracks }

// Publisher describes the stream's publisher.
func (s *Stream) Publisher() PublisherInfo { return s.pub }

// Started returns when the stream started.
func (s *Stream) Started() time.Time { return s.started }

// Done is closed when the stream ends.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Err returns why the stream ended (ErrEnded, ErrKicked, ErrClosed), or
// nil while it is live.
func (s *Stream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended
}

// isVideoKey reports whether u starts a video GOP.
func (s *Stream) isVideoKey(u *Unit) bool {
	return u.Key && s.tracks[u.Track].Kind() == Video
}

// AddReader attaches a reader for the named protocol ("hls", "whep",
// "record"...; it labels GET /api/streams). The reader starts at the last
// video keyframe when the stream has video (the units since then are
// queued at once), else at the next unit. It fails with the stream's end
// reason once it has ended. Close the reader when done.
func (s *Stream) AddReader(protocol string) (*Reader, error) {
	rd := newReader(s, protocol, s.reg.opts.QueueSize)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended != nil {
		return nil, fmt.Errorf("%w: %s", s.ended, s.path)
	}
	rd.mu.Lock()
	rd.starting = s.hasVideo
	for _, u := range s.gop {
		rd.pushLocked(u)
	}
	rd.mu.Unlock()
	s.readers[rd] = struct{}{}
	return rd, nil
}

func (s *Stream) removeReader(rd *Reader) {
	s.mu.Lock()
	delete(s.readers, rd)
	s.mu.Unlock()
}

// SetViewers records n viewers of an output that counts them itself
// rather than with one reader each (LL-HLS counts recent HTTP clients).
// They are shown under protocol in Info.Viewers.
func (s *Stream) SetViewers(protocol string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 {
		delete(s.viewers, protocol)
		return
	}
	s.viewers[protocol] = n
}

func (s *Stream) write(u *Unit) error {
	if u == nil || u.Track < 0 || u.Track >= len(s.tracks) {
		return fmt.Errorf("%w: unit for a track the stream does not have", ErrBadTrack)
	}
	size := u.Size()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended != nil {
		return s.ended
	}
	s.units++
	s.bytes += uint64(size)
	s.reg.unitsIn.Add(1)
	s.reg.bytesIn.Add(uint64(size))
	s.rate.add(s.reg.opts.Now(), size)
	switch {
	case s.isVideoKey(u):
		s.gop = append(s.gop[:0:0], u)
	case s.gop != nil && len(s.gop) < s.reg.opts.QueueSize:
		s.gop = append(s.gop, u)
	default:
		s.gop = nil // too long a GOP to cache: readers wait for the next keyframe
	}
	for rd := range s.readers {
		rd.push(u)
	}
	return nil
}

// end ends the stream with reason; only the first reason counts.
func (s *Stream) end(reason error) {
	s.mu.Lock()
	if s.ended != nil {
		s.mu.Unlock()
		return
	}
	s.ended = reason
	s.gop = nil
	close(s.done)
	for rd := range s.readers {
		rd.end(reason)
	}
	s.mu.Unlock()
	s.reg.remove(s)
	s.reg.log.Info("stream ended", "path", s.path, "reason", reason)
}

// Info describes a live stream for GET /api/streams.
type Info struct {
	Path      string        `json:"path"`
	Publisher PublisherInfo `json:"publisher"`
	Tracks    []TrackInfo   `json:"tracks"`
	// Bitrate is the publisher's payload rate in bits per second over the
	// last whole second.
	Bitrate int64 `json:"bitrate"`
	// Readers counts attached readers by protocol ("hls" is the one LL-HLS
	// muxer, "record" the recorder, "whep" one per viewer).
	Readers map[string]int `json:"readers"`
	// Viewers counts viewers by protocol: WHEP readers, LL-HLS clients
	// seen recently (SetViewers).
	Viewers map[string]int `json:"viewers"`
	// Started and Uptime (seconds) tell how long the stream has been live.
	Started time.Time `json:"started"`
	Uptime  float64   `json:"uptime"`
	// Units and Bytes count what the publisher wrote; Dropped counts the
	// units readers lost by falling behind, summed over current readers.
	Units   uint64 `json:"units"`
	Bytes   uint64 `json:"bytes"`
	Dropped uint64 `json:"dropped"`
}

// TrackInfo describes a track in Info.
type TrackInfo struct {
	Codec      Codec `json:"codec"`
	Kind       Kind  `json:"kind"`
	ClockRate  int   `json:"clock_rate"`
	SampleRate int   `json:"sample_rate,omitempty"`
	Channels   int   `json:"channels,omitempty"`
}

// viewerProtocols are the reader protocols whose readers are viewers.
var viewerProtocols = map[string]bool{"whep": true}

// Info describes the stream now.
func (s *Stream) Info() Info {
	now := s.reg.opts.Now()
	in := Info{
		Path: s.path, Publisher: s.pub, Started: s.started,
		Uptime:  now.Sub(s.started).Round(time.Millisecond).Seconds(),
		Readers: map[string]int{}, Viewers: map[string]int{},
	}
	for _, t := range s.tracks {
		in.Tracks = append(in.Tracks, TrackInfo{Codec: t.Codec, Kind: t.Kind(), ClockRate: t.ClockRate, SampleRate: t.SampleRate, Channels: t.Channels})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in.Units, in.Bytes = s.units, s.bytes
	in.Bitrate = s.rate.bitsPerSecond(now)
	for rd := range s.readers {
		in.Readers[rd.protocol]++
		if viewerProtocols[rd.protocol] {
			in.Viewers[rd.protocol]++
		}
		in.Dropped += rd.Dropped()
	}
	keys := make([]string, 0, len(s.viewers))
	for k := range s.viewers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		in.Viewers[k] += s.viewers[k]
	}
	return in
}

// rateMeter counts bytes per whole second: the bitrate is the last
// complete second's.
type rateMeter struct {
	sec       int64 // the second cur counts
	cur, prev int64
}

func (m *rateMeter) add(now time.Time, n int) {
	sec := now.Unix()
	if sec != m.sec {
		if sec == m.sec+1 {
			m.prev = m.cur
		} else {
			m.prev = 0
		}
		m.cur, m.sec = 0, sec
	}
	m.cur += int64(n)
}

func (m *rateMeter) bitsPerSecond(now time.Time) int64 {
	switch now.Unix() {
	case m.sec:
		return m.prev * 8
	case m.sec + 1:
		return m.cur * 8
	}
	return 0
}
