package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/stream"
)

// A stream lives on the node that took its publisher. That node records
// itself as the stream's owner in the broker's presence store, under the
// reserved key "$stream:PATH" (no channel or room name starts with '$'),
// refreshes the record while the stream is live and removes it when the
// stream ends; a dead node's records expire after streamOwnerTTL. Other
// nodes read the record to refuse a second publisher (as on one node),
// to redirect viewers to the owner, and to forward a kick there.

// streamOwnerTTL is how long a stream-owner record lives without refresh.
const streamOwnerTTL = 30 * time.Second

// ownerTimeout bounds each call to the presence store.
const ownerTimeout = 5 * time.Second

// streamOwnerKey is the presence key of path's owner record.
func streamOwnerKey(path string) string { return "$stream:" + path }

// streamOwners keeps this node's stream-owner records; it implements
// stream.Owners.
type streamOwners struct {
	store   broker.PresenceStore
	baseURL string // this node's HTTP base URL, "" when unknown
	log     *slog.Logger
	streams func() []*stream.Stream // the live streams, for refresh

	// mu orders claims, releases and refreshes, so that a refresh never
	// puts back a record a release has just removed.
	mu      sync.Mutex
	node    string // set before the first publisher (setNode)
	started bool   // the refresh loop runs

	stop chan struct{}
	done chan struct{}
}

func newStreamOwners(store broker.PresenceStore, baseURL string, log *slog.Logger) *streamOwners {
	return &streamOwners{store: store, baseURL: baseURL, log: log, stop: make(chan struct{}), done: make(chan struct{})}
}

// setNode sets this node's id, before the first claim.
func (o *streamOwners) setNode(node string, streams func() []*stream.Stream) {
	o.mu.Lock()
	o.node, o.streams = node, streams
	o.mu.Unlock()
}

// start starts refreshing the records, until close.
func (o *streamOwners) start() {
	o.mu.Lock()
	o.started = true
	o.mu.Unlock()
	go o.refreshLoop()
}

// record is this node's owner record.
func (o *streamOwners) record() broker.ClientInfo {
	return broker.ClientInfo{Client: o.node, User: o.baseURL, Transport: "stream"}
}

// Claim implements stream.Owners: it records this node as path's owner
// unless another live node is; when two nodes claim at once, the smaller
// node id keeps the stream.
func (o *streamOwners) Claim(path string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), ownerTimeout)
	defer cancel()
	key := streamOwnerKey(path)
	if other, ok, err := o.owner(ctx, path, o.node); err != nil {
		return fmt.Errorf("%w: %w", stream.ErrOwnersUnavailable, err)
	} else if ok {
		return fmt.Errorf("%w: %s is live on node %s", stream.ErrPublisherExists, path, other.Client)
	}
	if err := o.store.AddPresence(ctx, key, o.record(), streamOwnerTTL); err != nil {
		return fmt.Errorf("%w: stream owner record: %w", stream.ErrOwnersUnavailable, err)
	}
	other, ok, err := o.owner(ctx, path, o.node)
	switch {
	case err != nil:
		_ = o.store.RemovePresence(ctx, key, o.node)
		return fmt.Errorf("%w: %w", stream.ErrOwnersUnavailable, err)
	case ok && other.Client < o.node:
		_ = o.store.RemovePresence(ctx, key, o.node)
		return fmt.Errorf("%w: %s went live on node %s at the same time", stream.ErrPublisherExists, path, other.Client)
	}
	return nil
}

// Release implements stream.Owners.
func (o *streamOwners) Release(path string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), ownerTimeout)
	defer cancel()
	if err := o.store.RemovePresence(ctx, streamOwnerKey(path), o.node); err != nil {
		o.log.Warn("cannot remove a stream's owner record; it expires by itself", "path", path, "ttl", streamOwnerTTL, "err", err)
	}
}

// owner returns the owner record of path with the smallest node id,
// leaving out the node except (pass "" to leave out none).
func (o *streamOwners) owner(ctx context.Context, path, except string) (broker.ClientInfo, bool, error) {
	list, err := o.store.Presence(ctx, streamOwnerKey(path))
	if err != nil {
		return broker.ClientInfo{}, false, fmt.Errorf("stream owner record: %w", err)
	}
	var best broker.ClientInfo
	found := false
	for _, c := range list {
		if c.Client != except && (!found || c.Client < best.Client) {
			best, found = c, true
		}
	}
	return best, found, nil
}

func (o *streamOwners) refreshLoop() {
	defer close(o.done)
	t := time.NewTicker(streamOwnerTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-o.stop:
			return
		case <-t.C:
			o.refresh()
		}
	}
}

// refresh renews the records of the streams live here.
func (o *streamOwners) refresh() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, s := range o.streams() {
		if !s.Claimed() {
			continue // a claim that failed, or an end under way
		}
		ctx, cancel := context.WithTimeout(context.Background(), ownerTimeout)
		err := o.store.AddPresence(ctx, streamOwnerKey(s.Path()), o.record(), streamOwnerTTL)
		cancel()
		if err != nil {
			o.log.Warn("cannot refresh a stream's owner record", "path", s.Path(), "err", err)
		}
	}
}

// close stops the refreshes (the streams' ends remove the records).
func (o *streamOwners) close() {
	o.mu.Lock()
	started := o.started
	o.mu.Unlock()
	close(o.stop)
	if started {
		<-o.done
	}
}

// setNode gives the streams this node's id and the hub that extends the
// server API to the cluster.
func (st *streams) setNode(node string, h *hub.Hub) {
	if st == nil {
		return
	}
	st.node, st.cluster = node, h
	if st.owners != nil {
		st.owners.setNode(node, st.registry.Streams)
	}
}

// LocalStreams implements hub.StreamAdmin.
func (st *streams) LocalStreams() []json.RawMessage {
	list := st.registry.List()
	out := make([]json.RawMessage, 0, len(list))
	for _, in := range list {
		raw, err := json.Marshal(struct {
			stream.Info
			Node string `json:"node"`
		}{in, st.node})
		if err == nil {
			out = append(out, raw)
		}
	}
	return out
}

// StreamOwner implements hub.StreamAdmin.
func (st *streams) StreamOwner(ctx context.Context, path string) (string, error) {
	if err := st.registry.CheckPath(path); err != nil {
		return "", fmt.Errorf("%w: %w", hub.ErrStreamPath, err)
	}
	if _, err := st.registry.Get(path); err == nil {
		return st.node, nil
	}
	if st.owners == nil {
		return "", nil
	}
	rec, ok, err := st.owners.owner(ctx, path, "")
	if err != nil || !ok {
		return "", err
	}
	return rec.Client, nil
}

// KickStream implements hub.StreamAdmin.
func (st *streams) KickStream(path string) error {
	if err := st.registry.Kick(path); err != nil {
		if errors.Is(err, stream.ErrNotFound) {
			return fmt.Errorf("%w: %w", hub.ErrStreamNotLive, err)
		}
		return fmt.Errorf("%w: %w", hub.ErrStreamPath, err)
	}
	st.log.Info("stream kicked by the server API", "path", path)
	return nil
}

// List implements api.Streams: the streams of the whole cluster.
func (st *streams) List(ctx context.Context) any { return st.cluster.ListStreams(ctx) }

// Kick implements api.Streams, on whichever node publishes path.
func (st *streams) Kick(ctx context.Context, path string) error {
	return st.cluster.KickStream(ctx, path)
}

// redirect sends the viewers of a stream another node publishes there:
// a WHEP offer (POST /whep/...) and LL-HLS reads (GET /hls/...) get 307
// to the same URL on the owner's HTTP base URL, or 503 when the owner has
// none. A WHIP offer (POST /whip/...) for a path live on another node is
// refused with 409, as on one node. Everything else, and a stream live
// here or nowhere, goes to next.
func (st *streams) redirect(next http.Handler) http.Handler {
	if st.owners == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path, publish, ok := streamRoute(r)
		if !ok || st.registry.CheckPath(path) != nil {
			next.ServeHTTP(w, r)
			return
		}
		if _, err := st.registry.Get(path); err == nil {
			next.ServeHTTP(w, r)
			return
		}
		rec, found, err := st.owners.owner(r.Context(), path, st.node)
		if err != nil {
			st.log.Warn("cannot read a stream's owner record", "path", path, "err", err)
		}
		if !found {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Expose-Headers", "Location, Link")
		switch {
		case publish:
			http.Error(w, fmt.Sprintf("%v: %s is live on node %s", stream.ErrPublisherExists, path, rec.Client), http.StatusConflict)
		case rec.User == "":
			http.Error(w, fmt.Sprintf("stream: %s is live on node %s, which has no public URL (set node_http_url or node_url there)", path, rec.Client), http.StatusServiceUnavailable)
		default:
			h.Set("Cache-Control", "no-store")
			http.Redirect(w, r, rec.User+r.URL.RequestURI(), http.StatusTemporaryRedirect)
		}
	})
}

// streamRoute returns the stream path of a WHIP offer (publish), a WHEP
// offer or an LL-HLS read; ok is false for any other request.
func streamRoute(r *http.Request) (path string, publish, ok bool) {
	switch {
	case r.Method == http.MethodPost && (strings.HasPrefix(r.URL.Path, "/whep/") || strings.HasPrefix(r.URL.Path, "/whip/")):
		rest := r.URL.Path[len("/whep/"):]
		publish = strings.HasPrefix(r.URL.Path, "/whip/")
		switch strings.Count(rest, "/") {
		case 0:
			return "live/" + rest, publish, true
		case 1:
			return rest, publish, true
		}
	case strings.HasPrefix(r.URL.Path, "/hls/") && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		rest := strings.TrimPrefix(r.URL.Path, "/hls/")
		if i := strings.LastIndexByte(rest, '/'); i > 0 {
			return rest[:i], false, true
		}
	}
	return "", false, false
}
