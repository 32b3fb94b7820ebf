// Package record writes live streams to disk: each stream of a recorded
// namespace becomes a series of fMP4 files (init section, then one
// fragment per second) under DIR/NAMESPACE/NAME/, a new file at the first
// keyframe after each SegmentDuration, and files older than Retention are
// deleted. H.264, H.265, AAC and Opus tracks are recorded; VP8, VP9 and
// AV1 tracks are left out. Each file plays on its own.
//
// The boxes are written by github.com/bluenviron/mediacommon's fmp4
// package.
package record

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/internal/stream"
)

// Options configure a Recorder.
type Options struct {
	// Registry is where streams come from. Required.
	Registry *stream.Registry
	// Dir is the directory recordings go under. Required.
	Dir string
	// Namespaces are the stream namespaces recorded; others are not.
	Namespaces []string
	// SegmentDuration is the shortest file: a new one starts at the first
	// keyframe after it. Default 10s.
	SegmentDuration time.Duration
	// Retention is how long a file is kept (by its modification time);
	// 0 keeps files forever. Checked whenever a file is finished.
	Retention time.Duration
	// Logger receives the recorder's logs. Default slog.Default().
	Logger *slog.Logger
	// Now returns the time for file names and retention; tests replace
	// it. Default time.Now.
	Now func() time.Time
}

// Recorder records the streams of its namespaces. Create it with New, stop
// it with Close.
type Recorder struct {
	opts   Options
	log    *slog.Logger
	ns     map[string]bool
	remove func()
	wg     sync.WaitGroup // one per recording goroutine

	mu      sync.Mutex // guards readers and closing
	readers map[*stream.Reader]struct{}
	closing bool
}

// New returns a recorder that records every stream of its namespaces the
// registry starts from now on.
func New(opts Options) (*Recorder, error) {
	if opts.Dir == "" {
		return nil, errors.New("record: no directory")
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	if opts.SegmentDuration <= 0 {
		opts.SegmentDuration = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Recorder{opts: opts, log: opts.Logger.With("component", "record"), ns: map[string]bool{}, readers: map[*stream.Reader]struct{}{}}
	for _, n := range opts.Namespaces {
		r.ns[n] = true
	}
	r.remove = opts.Registry.OnPublish(r.start)
	return r, nil
}

// Close stops recording and waits until the files being written are
// finished. The queued units of streams that have already ended are
// written first (close the registry before the recorder to keep them
// all); streams still live stop being recorded at once. It is idempotent.
func (r *Recorder) Close() {
	r.remove()
	r.mu.Lock()
	r.closing = true
	list := make([]*stream.Reader, 0, len(r.readers))
	for rd := range r.readers {
		if rd.Stream().Err() == nil {
			list = append(list, rd)
		}
	}
	r.mu.Unlock()
	for _, rd := range list {
		rd.Close()
	}
	r.wg.Wait()
}

// start begins recording st if its namespace is recorded (an OnPublish
// hook: it must not block).
func (r *Recorder) start(st *stream.Stream) {
	ns, name, err := stream.SplitPath(st.Path())
	if err != nil || !r.ns[ns] {
		return
	}
	w := newWriter(st.Tracks(), filepath.Join(r.opts.Dir, ns, name), r.opts.SegmentDuration)
	if len(w.tracks) == 0 {
		r.log.Info("record: no track can be recorded", "path", st.Path())
		return
	}
	rd, err := st.AddReader("record")
	if err != nil {
		return
	}
	r.mu.Lock()
	if r.closing {
		r.mu.Unlock()
		rd.Close()
		return
	}
	r.readers[rd] = struct{}{}
	r.wg.Add(1)
	r.mu.Unlock()
	go r.run(rd, w)
}

func (r *Recorder) run(rd *stream.Reader, w *writer) {
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		delete(r.readers, rd)
		r.mu.Unlock()
		rd.Close()
	}()
	path := rd.Stream().Path()
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		r.log.Warn("record: cannot create the directory", "path", path, "err", err)
		return
	}
	for {
		u, dropped, err := rd.Next(context.Background())
		if err != nil {
			break
		}
		if dropped > 0 {
			r.log.Warn("record: the disk is too slow, units lost", "path", path, "dropped", dropped)
		}
		finished, err := w.write(u, r.opts.Now())
		if err != nil {
			r.log.Warn("record: write failed; recording of this stream stops", "path", path, "err", err)
			break
		}
		if finished != "" {
			r.finished(finished)
		}
	}
	if name, err := w.close(); err != nil {
		r.log.Warn("record: closing the file failed", "path", path, "err", err)
	} else if name != "" {
		r.finished(name)
	}
}

// finished logs a finished file and applies the retention.
func (r *Recorder) finished(name string) {
	r.log.Debug("record: file finished", "file", name)
	if r.opts.Retention <= 0 {
		return
	}
	cutoff := r.opts.Now().Add(-r.opts.Retention)
	_ = filepath.WalkDir(r.opts.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".mp4") {
			return nil
		}
		if info, err := d.Info(); err == nil && info.ModTime().Before(cutoff) {
			if err := os.Remove(p); err == nil {
				r.log.Debug("record: retention removed a file", "file", p)
			}
		}
		return nil
	})
}
