package hub

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

var _ broker.Handler = (*Hub)(nil)

const (
	numShards  = 64
	numStripes = 256
)

// Hub is the engine of one node. Create it with New, then call Start.
type Hub struct {
	cfg      Config
	broker   broker.Broker
	presence broker.PresenceStore
	log      *slog.Logger
	metrics  *metrics.Metrics
	started  time.Time
	clock    clockwork.Clock
	epoch    time.Time // the clock reading nanotime counts from
	seed     maphash.Seed

	shards  [numShards]shard
	stripes [numStripes]sync.Mutex

	sessMu   sync.Mutex
	sessions map[string]*Session
	perIP    map[string]int
	drained  chan struct{} // closed when draining and the last session is gone

	stop     chan struct{}
	stopOnce sync.Once
	loops    sync.WaitGroup

	// roomsMu guards inRooms: the rooms each session joined (rooms.go).
	// Kept here rather than in Session, which every idle connection pays
	// for, since few connections are in calls.
	roomsMu sync.Mutex
	inRooms map[*Session][]string
	// roomPres is the queue of room presence calls (roompresence.go).
	roomPres roomPresence

	cl      cluster
	address atomic.Pointer[string] // the bound address, set by SetNodeAddress

	holdDelay atomic.Int64 // the write delay in force (ns): WriteDelay or 0
	busy      atomic.Bool  // the node sends directMaxRate messages/s or more: no direct writes

	nextID        atomic.Uint64
	subscriptions atomic.Int64
	channels      atomic.Int64
	closing       atomic.Bool
}

// New returns a hub that publishes through b and keeps presence in p (which
// may be nil when cfg.Presence is off).
func New(cfg Config, b broker.Broker, p broker.PresenceStore) *Hub {
	cfg.setDefaults()
	if cfg.Metrics == nil {
		panic("hub: Config.Metrics is required")
	}
	if p == nil {
		p = nopPresence{}
	}
	h := &Hub{
		cfg:      cfg,
		broker:   b,
		presence: p,
		log:      cfg.Logger.With("component", "hub"),
		metrics:  cfg.Metrics,
		started:  cfg.Clock.Now(),
		clock:    cfg.Clock,
		epoch:    cfg.Clock.Now(),
		seed:     maphash.MakeSeed(),
		sessions: make(map[string]*Session),
		perIP:    make(map[string]int),
		inRooms:  make(map[*Session][]string),
		roomPres: roomPresence{wake: make(chan struct{}, 1), stored: map[roomMember]broker.ClientInfo{}},
		stop:     make(chan struct{}),
		drained:  make(chan struct{}),
	}
	if cfg.WriteDelayMinRate <= 0 {
		h.holdDelay.Store(int64(cfg.WriteDelay))
	}
	for i := range h.shards {
		h.shards[i].channels = make(map[string][]*subscription)
	}
	return h
}

// Start connects the hub to its broker.
func (h *Hub) Start(ctx context.Context) error {
	h.initCluster()
	if err := h.broker.Start(ctx, h); err != nil {
		return fmt.Errorf("hub: start broker: %w", err)
	}
	h.every(h.cfg.SweepInterval, h.sweep())
	h.every(h.cfg.PresenceTTL/3, h.presenceRefresh())
	h.loops.Add(1)
	go h.roomPresenceLoop()
	if h.cfg.WriteDelay > 0 && h.cfg.WriteDelayMinRate > 0 {
		h.every(coalesceInterval, h.writeDelaySwitch())
	}
	h.metrics.DirectWritesActive.Set(1)
	h.every(coalesceInterval, h.busySwitch())
	h.startCluster()
	return nil
}

// appendSessions appends every registered session to dst, so that a loop
// can visit them without holding sessMu.
func (h *Hub) appendSessions(dst []*Session) []*Session {
	h.sessMu.Lock()
	defer h.sessMu.Unlock()
	for _, s := range h.sessions {
		dst = append(dst, s)
	}
	return dst
}

// every runs f once per interval on its own goroutine until the hub stops.
func (h *Hub) every(interval time.Duration, f func()) {
	h.loops.Add(1)
	go func() {
		defer h.loops.Done()
		t := h.clock.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.Chan():
			}
			f()
		}
	}()
}

// sweep returns the sweep: it closes sessions whose token expired and,
// when authentication is required, those that did not authenticate within
// the connect timeout.
func (h *Hub) sweep() func() {
	var batch []*Session
	return func() {
		now := h.clock.Now()
		batch = h.appendSessions(batch[:0])
		for _, s := range batch {
			exp := s.expires.Load()
			switch {
			case exp != 0 && now.UnixNano() > exp && s.refreshable() && now.UnixNano() < exp+int64(refreshGrace):
				s.refreshExpired()
			case exp != 0 && now.UnixNano() > exp:
				s.Close(protocol.DisconnectTokenExpired)
			case h.cfg.RequireAuth && !s.authed.Load() && time.Duration(h.nanotime()-s.created) > h.cfg.ConnectTimeout:
				s.Close(protocol.DisconnectUnauthorized)
			}
		}
		clear(batch)
	}
}

// NodeID returns this node's id.
func (h *Hub) NodeID() string { return h.cfg.NodeID }

// Channels lists the channels with subscribers on any node of the cluster,
// with their subscriber counts summed over the nodes, sorted by name.
func (h *Hub) Channels(ctx context.Context) []ChannelInfo { return h.gatherChannels(ctx) }

// Info describes this node and the cluster it is part of.
type Info struct {
	Node          string     `json:"node"`
	Version       string     `json:"version"`
	UptimeSeconds float64    `json:"uptime_seconds"`
	Connections   int        `json:"connections"`
	Subscriptions int64      `json:"subscriptions"`
	Channels      int64      `json:"channels"`
	Nodes         []NodeInfo `json:"nodes"`
}

// Info returns this node's description and counters, and the live nodes.
func (h *Hub) Info() Info {
	me := h.nodeInfo()
	return Info{
		Node:          me.ID,
		Version:       me.Version,
		UptimeSeconds: me.UptimeSeconds,
		Connections:   me.Connections,
		Subscriptions: me.Subscriptions,
		Channels:      me.Channels,
		Nodes:         h.Nodes(),
	}
}

// ErrNotFound is returned when a client id names no connection of a live
// node.
var ErrNotFound = errors.New("hub: client not found")

// Disconnect closes the connection of a client (by client id) or every
// connection of a user, on whichever node they are. With reconnect the
// client is told it may come back (4003), otherwise not (4500). For a
// client of another node, or a user, the request is sent to every node and
// Disconnect does not wait for it to be carried out.
func (h *Hub) Disconnect(clientID, user string, reconnect bool) error {
	if clientID != "" {
		node := nodeOfClient(clientID)
		if node == h.cfg.NodeID {
			if h.disconnectLocal(clientID, "", reconnect) == 0 {
				return ErrNotFound
			}
		} else {
			known := false
			for _, n := range h.Nodes() {
				known = known || n.ID == node
			}
			if !known || h.cl.ctl == nil {
				return ErrNotFound
			}
			h.sendControl(control{Type: "disconnect", Client: clientID, Reconnect: reconnect})
		}
	}
	if user != "" {
		h.disconnectLocal("", user, reconnect)
		if h.cl.ctl != nil {
			h.sendControl(control{Type: "disconnect", User: user, Reconnect: reconnect})
		}
	}
	return nil
}

func disconnectFor(reconnect bool) protocol.Disconnect {
	if reconnect {
		return protocol.DisconnectForceReconnect
	}
	return protocol.DisconnectForce
}

// Draining reports whether Shutdown has begun; transports refuse new
// connections then.
func (h *Hub) Draining() bool { return h.closing.Load() }

// Shutdown closes every session with the "server shutting down" disconnect
// (after flushing what is already queued for it), waits for them to finish
// until ctx is done, then closes the broker.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.closing.Store(true)
	h.sessMu.Lock()
	all := make([]*Session, 0, len(h.sessions))
	for _, s := range h.sessions {
		all = append(all, s)
	}
	h.signalDrainedLocked()
	h.sessMu.Unlock()
	for _, s := range all {
		s.Close(protocol.DisconnectShutdown)
	}
	var err error
	select {
	case <-h.drained:
	case <-ctx.Done():
		err = fmt.Errorf("hub: shutdown: sessions still open: %w", ctx.Err())
	}
	h.stopOnce.Do(func() { close(h.stop) })
	h.loops.Wait()
	if cerr := h.broker.Close(ctx); cerr != nil && err == nil {
		err = fmt.Errorf("hub: close broker: %w", cerr)
	}
	return err
}

// register adds s to the session registry. It reports false when a
// connection limit is reached.
func (h *Hub) register(s *Session) bool {
	ip := s.ip()
	h.sessMu.Lock()
	over := h.cfg.MaxConnections > 0 && len(h.sessions) >= h.cfg.MaxConnections ||
		h.cfg.MaxConnectionsPerIP > 0 && h.perIP[ip] >= h.cfg.MaxConnectionsPerIP
	h.sessions[s.id] = s
	h.perIP[ip]++
	h.sessMu.Unlock()
	h.metrics.Connections.WithLabelValues(s.transport.Name()).Inc()
	h.metrics.ConnectionsTotal.WithLabelValues(s.transport.Name()).Inc()
	return !over
}

// unregister removes s from the registry and all its channels.
func (h *Hub) unregister(s *Session) {
	for _, sub := range s.takeSubs() {
		sub.end()
		h.removeSubscription(sub)
	}
	h.sessMu.Lock()
	delete(h.sessions, s.id)
	if ip := s.ip(); h.perIP[ip] > 1 {
		h.perIP[ip]--
	} else {
		delete(h.perIP, ip)
	}
	h.signalDrainedLocked()
	h.sessMu.Unlock()
	h.metrics.Connections.WithLabelValues(s.transport.Name()).Dec()
}

// signalDrainedLocked closes h.drained once Shutdown has begun and no
// session is left. h.sessMu must be held.
func (h *Hub) signalDrainedLocked() {
	if h.closing.Load() && len(h.sessions) == 0 {
		select {
		case <-h.drained:
		default:
			close(h.drained)
		}
	}
}

// newClientID returns an id unique across nodes: the node id and a counter.
func (h *Hub) newClientID() string {
	return h.cfg.NodeID + "-" + strconv.FormatUint(h.nextID.Add(1), 36)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only fixed struct types are marshaled
	}
	return b
}

// randomID returns n random base32 characters (lower case).
func randomID(n int) string {
	b := make([]byte, (n*5+7)/8)
	_, _ = rand.Read(b)
	id := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)
	out := []byte(id[:n])
	for i, c := range out {
		if c >= 'A' && c <= 'Z' {
			out[i] = c + 'a' - 'A'
		}
	}
	return string(out)
}

// nanotime returns the hub clock's monotonic reading in nanoseconds.
func (h *Hub) nanotime() int64 { return h.clock.Since(h.epoch).Nanoseconds() }
