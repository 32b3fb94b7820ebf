package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

var _ broker.Handler = (*Hub)(nil)

const (
	numShards  = 64
	numStripes = 256
)

// Config configures a Hub. Zero fields take the defaults documented on them.
type Config struct {
	// NodeID identifies this node in client ids and the server API. Default:
	// random.
	NodeID string
	// Version is reported by the connect command and the server API.
	Version string
	// QueueMaxMessages bounds each connection's outbound queue by count.
	// Default 4096.
	QueueMaxMessages int
	// WriteDelay lets a busy connection's writer wait up to this long after
	// its previous write, so that more messages go out in one write (fewer
	// system calls per delivery under load, at most this much more
	// latency). Connections written to less often are not delayed. 0
	// writes at once.
	WriteDelay time.Duration
	// WriteDelayMinRate makes WriteDelay apply only while the node sends
	// at least this many messages per second (it stops below half of it),
	// so that a quiet node writes at once and a loaded one batches. 0
	// applies WriteDelay always.
	WriteDelayMinRate int
	// QueueMaxBytes bounds each connection's outbound queue by bytes. A
	// connection whose queue would exceed either bound is closed as a slow
	// consumer. Default 1 MiB.
	QueueMaxBytes int
	// MaxChannelsPerConnection bounds the subscriptions of one connection.
	// Default 128.
	MaxChannelsPerConnection int
	// ClientPublish allows clients to publish with the publish command.
	ClientPublish bool
	// HistorySize is how many publications each channel keeps for recovery.
	HistorySize int
	// HistoryTTL is how long a publication stays in history.
	HistoryTTL time.Duration
	// HistoryMaxLimit caps the publications one history request returns.
	// Default 1000.
	HistoryMaxLimit int
	// Presence keeps who is subscribed to each channel.
	Presence bool
	// JoinLeave sends join and leave pushes to a channel's subscribers when
	// clients subscribe and leave. It needs Presence.
	JoinLeave bool
	// PresenceTTL is how long a presence entry lives without refresh in a
	// shared store. Default 60s.
	PresenceTTL time.Duration
	// Rules give each channel its namespace's options and permissions. When
	// nil, every channel uses one namespace made of ClientPublish,
	// HistorySize, HistoryTTL, Presence and JoinLeave, open to anyone.
	Rules *auth.Rules
	// Verifier checks connection and subscription tokens; nil when tokens
	// are not configured.
	Verifier *auth.Verifier
	// RequireAuth refuses every command but connect, refresh and ping from
	// clients without a valid connection token, and closes those that have
	// none after ConnectTimeout (4502).
	RequireAuth bool
	// ConnectTimeout: see RequireAuth. Default 10s.
	ConnectTimeout time.Duration
	// CommandRate and CommandBurst set each connection's token bucket, in
	// commands per second; 0 means no limit.
	CommandRate  float64
	CommandBurst int
	// MaxConnections and MaxConnectionsPerIP bound the connections of this
	// node and of one client address; 0 means no limit. Connections over a
	// bound are closed at once with 4007.
	MaxConnections      int
	MaxConnectionsPerIP int
	// SweepInterval is how often expired tokens and connect timeouts are
	// checked. Default 1s.
	SweepInterval time.Duration
	// NodeName and NodeAddress describe this node to the others.
	NodeName    string
	NodeAddress string
	// NodeInfoInterval is how often the node announces itself through a
	// broker that connects nodes. Default 3s.
	NodeInfoInterval time.Duration
	// Logger receives the hub's logs. Default slog.Default().
	Logger *slog.Logger
	// Metrics receives the hub's metrics. Required.
	Metrics *metrics.Metrics
}

func (c *Config) setDefaults() {
	if c.NodeID == "" {
		c.NodeID = randomID(6)
	}
	if c.QueueMaxMessages <= 0 {
		c.QueueMaxMessages = 4096
	}
	if c.QueueMaxBytes <= 0 {
		c.QueueMaxBytes = 1 << 20
	}
	if c.HistoryMaxLimit <= 0 {
		c.HistoryMaxLimit = 1000
	}
	if c.PresenceTTL <= 0 {
		c.PresenceTTL = time.Minute
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = time.Second
	}
	if c.NodeInfoInterval <= 0 {
		c.NodeInfoInterval = 3 * time.Second
	}
	if c.CommandBurst <= 0 {
		c.CommandBurst = int(max(1, c.CommandRate))
	}
	if c.Rules == nil {
		def := auth.Namespace{
			Subscribe:   auth.SubscribeAnyone,
			Publish:     c.ClientPublish,
			HistorySize: c.HistorySize,
			HistoryTTL:  c.HistoryTTL,
			Recovery:    c.HistorySize > 0,
			Presence:    c.Presence,
			JoinLeave:   c.JoinLeave && c.Presence,
		}
		r, err := auth.NewRules(def, nil)
		if err != nil {
			panic(fmt.Sprintf("hub: default namespace: %v", err))
		}
		c.Rules = r
	}
	if c.MaxChannelsPerConnection <= 0 {
		c.MaxChannelsPerConnection = 128
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Hub is the engine of one node. Create it with New, then call Start.
type Hub struct {
	cfg      Config
	broker   broker.Broker
	presence broker.PresenceStore
	log      *slog.Logger
	metrics  *metrics.Metrics
	started  time.Time
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

	cl      cluster
	address atomic.Pointer[string] // the bound address, set by SetNodeAddress

	holdDelay atomic.Int64 // the write delay in force (ns): WriteDelay or 0

	nextID        atomic.Uint64
	subscriptions atomic.Int64
	channels      atomic.Int64
	closing       atomic.Bool
}

// shard is a part of the channel registry.
type shard struct {
	mu       sync.RWMutex
	channels map[string]map[*subscription]struct{}
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
		started:  time.Now(),
		seed:     maphash.MakeSeed(),
		sessions: make(map[string]*Session),
		perIP:    make(map[string]int),
		stop:     make(chan struct{}),
		drained:  make(chan struct{}),
	}
	if cfg.WriteDelayMinRate <= 0 {
		h.holdDelay.Store(int64(cfg.WriteDelay))
	}
	for i := range h.shards {
		h.shards[i].channels = make(map[string]map[*subscription]struct{})
	}
	return h
}

// Start connects the hub to its broker.
func (h *Hub) Start(ctx context.Context) error {
	h.initCluster()
	if err := h.broker.Start(ctx, h); err != nil {
		return fmt.Errorf("hub: start broker: %w", err)
	}
	h.loops.Add(2)
	go h.sweepLoop()
	go h.presenceLoop()
	if h.cfg.WriteDelay > 0 && h.cfg.WriteDelayMinRate > 0 {
		h.loops.Add(1)
		go h.coalesceLoop()
	}
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

// coalesceInterval is how often the node's send rate is checked against
// WriteDelayMinRate.
const coalesceInterval = 100 * time.Millisecond

// coalesceLoop switches WriteDelay on while the node sends at least
// WriteDelayMinRate messages per second and off below half of that.
func (h *Hub) coalesceLoop() {
	defer h.loops.Done()
	t := time.NewTicker(coalesceInterval)
	defer t.Stop()
	sent := metrics.Value(h.metrics.MessagesSent)
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		prev := sent
		sent = metrics.Value(h.metrics.MessagesSent)
		rate := (sent - prev) / coalesceInterval.Seconds()
		switch on := h.holdDelay.Load() != 0; {
		case !on && rate >= float64(h.cfg.WriteDelayMinRate):
			h.holdDelay.Store(int64(h.cfg.WriteDelay))
			h.metrics.WriteDelayActive.Set(1)
		case on && rate < float64(h.cfg.WriteDelayMinRate)/2:
			h.holdDelay.Store(0)
			h.metrics.WriteDelayActive.Set(0)
		}
	}
}

// sweepLoop closes sessions whose token expired and, when authentication is
// required, those that did not authenticate within the connect timeout.
func (h *Hub) sweepLoop() {
	defer h.loops.Done()
	t := time.NewTicker(h.cfg.SweepInterval)
	defer t.Stop()
	var batch []*Session
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		batch = h.appendSessions(batch[:0])
		for _, s := range batch {
			exp := s.expires.Load()
			switch {
			case exp != 0 && now.UnixNano() > exp:
				s.Close(protocol.DisconnectTokenExpired)
			case h.cfg.RequireAuth && !s.authed.Load() && now.Sub(s.created) > h.cfg.ConnectTimeout:
				s.Close(protocol.DisconnectUnauthorized)
			}
		}
		clear(batch)
	}
}

// presenceLoop refreshes the presence entries of every live subscription
// three times per PresenceTTL, so that a shared store keeps the clients of
// live nodes and drops those of dead ones once their entries expire.
func (h *Hub) presenceLoop() {
	defer h.loops.Done()
	t := time.NewTicker(h.cfg.PresenceTTL / 3)
	defer t.Stop()
	var batch []*Session
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		batch = h.appendSessions(batch[:0])
		h.refreshPresence(batch)
		clear(batch)
	}
}

// presenceRefreshers is how many presence refreshes are in flight at once:
// a remote store pipelines concurrent calls on its connections, so one
// round trip carries many entries instead of one.
const presenceRefreshers = 64

// refreshPresence renews the presence entry of every present subscription
// of sessions, presenceRefreshers at a time, within a third of
// PresenceTTL. Failures are logged once per round, not once per entry.
func (h *Hub) refreshPresence(sessions []*Session) {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.PresenceTTL/3)
	defer cancel()
	type entry struct {
		channel string
		info    broker.ClientInfo
	}
	work := make(chan entry, presenceRefreshers)
	var failed atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for range presenceRefreshers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range work {
				if err := h.presence.AddPresence(ctx, e.channel, e.info, h.cfg.PresenceTTL); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, &err)
				}
			}
		}()
	}
	for _, s := range sessions {
		info := s.clientInfo()
		for _, ch := range s.presentChannels() {
			work <- entry{ch, info}
		}
	}
	close(work)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		h.log.Warn("refresh presence failed", "entries", n, "err", *firstErr.Load())
	}
}

// namespace returns the options of channel's namespace, or a client-visible
// error when the namespace is unknown.
func (h *Hub) namespace(channel string) (auth.Namespace, *protocol.Error) {
	if perr := protocol.ValidateChannel(channel); perr != nil {
		return auth.Namespace{}, perr
	}
	ns, err := h.cfg.Rules.Lookup(channel)
	if err != nil {
		return ns, protocol.ErrInvalidChannel.WithMessage("%v", err)
	}
	return ns, nil
}

// Credentials are what a verified connection token says about a client.
type Credentials struct {
	// User is the token's sub; empty for an anonymous token.
	User string
	// Info is the token's info claim, shown in presence.
	Info json.RawMessage
	// Channels are subscribed by the server when the client connects.
	Channels []string
	// Expires is when the token expires; zero for never.
	Expires time.Time
}

// Authenticate verifies a connection token, for transports that take it at
// the transport level (query parameter, Authorization header).
func (h *Hub) Authenticate(token string) (*Credentials, *protocol.Error) {
	if h.cfg.Verifier == nil {
		return nil, protocol.ErrUnauthorized.WithMessage("tokens are not configured on this server")
	}
	c, err := h.cfg.Verifier.Connect(token)
	if err != nil {
		return nil, tokenError(err)
	}
	return &Credentials{User: c.Subject, Info: c.Info, Channels: c.Channels, Expires: auth.Expiry(c.RegisteredClaims)}, nil
}

// tokenError maps a verification error to what the client sees.
func tokenError(err error) *protocol.Error {
	switch {
	case errors.Is(err, auth.ErrTokenExpired):
		return protocol.ErrTokenExpired.WithMessage("token expired: get a new one")
	case errors.Is(err, auth.ErrTokenTooLarge):
		return protocol.ErrUnauthorized.WithMessage("token too large")
	default:
		return protocol.ErrUnauthorized.WithMessage("invalid token")
	}
}

// NodeID returns this node's id.
func (h *Hub) NodeID() string { return h.cfg.NodeID }

func (h *Hub) shardOf(channel string) *shard {
	return &h.shards[maphash.String(h.seed, channel)%numShards]
}

func (h *Hub) stripeOf(channel string) *sync.Mutex {
	return &h.stripes[maphash.String(h.seed, channel)%numStripes]
}

// HandlePublication implements broker.Handler: it encodes the publication
// once and queues the same bytes for every local subscriber of the channel.
func (h *Hub) HandlePublication(channel string, pub broker.Publication, epoch string) {
	now := nanotime()
	m := pubMessage(channel, pub)
	m.At = now
	sh := h.shardOf(channel)
	sh.mu.RLock()
	for sub := range sh.channels[channel] {
		sub.sess.deliver(sub, m, epoch)
	}
	sh.mu.RUnlock()
}

// HandleEvent implements broker.Handler: it queues an ephemeral push (join,
// leave) for every live local subscriber of the channel.
func (h *Hub) HandleEvent(channel string, data []byte) {
	m := Message{Data: data, Channel: channel}
	sh := h.shardOf(channel)
	sh.mu.RLock()
	for sub := range sh.channels[channel] {
		sub.sess.deliver(sub, m, "")
	}
	sh.mu.RUnlock()
}

// pubMessage encodes a publication as the push every subscriber receives.
func pubMessage(channel string, pub broker.Publication) Message {
	data := protocol.AppendPublication(make([]byte, 0, len(channel)+len(pub.Data)+48), channel, pub.Data, pub.Offset)
	return Message{Data: data, Channel: channel, Offset: pub.Offset}
}

// addSubscription registers sub in the channel registry, subscribing the
// node through the broker when sub is the channel's first local subscriber.
func (h *Hub) addSubscription(ctx context.Context, sub *subscription) error {
	stripe := h.stripeOf(sub.channel)
	stripe.Lock()
	defer stripe.Unlock()
	sh := h.shardOf(sub.channel)
	sh.mu.Lock()
	set := sh.channels[sub.channel]
	first := set == nil
	if first {
		set = make(map[*subscription]struct{}, 1)
		sh.channels[sub.channel] = set
	}
	set[sub] = struct{}{}
	sh.mu.Unlock()
	if first {
		if err := h.broker.Subscribe(ctx, sub.channel); err != nil {
			sh.mu.Lock()
			delete(set, sub)
			if len(set) == 0 {
				delete(sh.channels, sub.channel)
			}
			sh.mu.Unlock()
			return fmt.Errorf("hub: broker subscribe %q: %w", sub.channel, err)
		}
		h.metrics.Channels.Set(float64(h.channels.Add(1)))
	}
	h.metrics.Subscriptions.Set(float64(h.subscriptions.Add(1)))
	return nil
}

// removeSubscription undoes addSubscription. After it returns no new
// publication reaches sub.
func (h *Hub) removeSubscription(sub *subscription) {
	stripe := h.stripeOf(sub.channel)
	stripe.Lock()
	defer stripe.Unlock()
	sh := h.shardOf(sub.channel)
	sh.mu.Lock()
	set := sh.channels[sub.channel]
	if _, ok := set[sub]; !ok {
		sh.mu.Unlock()
		return
	}
	delete(set, sub)
	last := len(set) == 0
	if last {
		delete(sh.channels, sub.channel)
	}
	sh.mu.Unlock()
	h.metrics.Subscriptions.Set(float64(h.subscriptions.Add(-1)))
	if last {
		h.metrics.Channels.Set(float64(h.channels.Add(-1)))
		// The context is not the client's: the node must leave the channel
		// even when the client is gone.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.broker.Unsubscribe(ctx, sub.channel); err != nil {
			h.log.Warn("broker unsubscribe failed", "channel", sub.channel, "err", err)
		}
	}
}

// Publish publishes data (a JSON value) to channel through the broker and
// returns the position it was stored at. source labels the metric ("api",
// "client").
func (h *Hub) Publish(ctx context.Context, channel string, data []byte, source string) (broker.Position, error) {
	ns, perr := h.namespace(channel)
	if perr != nil {
		return broker.Position{}, perr
	}
	pos, err := h.broker.Publish(ctx, channel, data, broker.PublishOptions{
		HistorySize: ns.HistorySize,
		HistoryTTL:  ns.HistoryTTL,
	})
	if err != nil {
		return pos, fmt.Errorf("hub: publish to %q: %w", channel, err)
	}
	h.metrics.Publications.WithLabelValues(source).Inc()
	return pos, nil
}

// Position returns a channel's current position.
func (h *Hub) Position(ctx context.Context, channel string) (broker.Position, error) {
	r, err := h.broker.History(ctx, channel, broker.HistoryQuery{})
	if err != nil {
		return broker.Position{}, fmt.Errorf("hub: position of %q: %w", channel, err)
	}
	return r.Position, nil
}

// History reads a channel's history: publications after since (all kept
// ones when nil), at most limit of them, newest first when reverse. It fails
// with protocol errors for an invalid channel, a limit out of range or a
// position of another epoch.
func (h *Hub) History(ctx context.Context, channel string, since *broker.Position, limit int, reverse bool) (broker.HistoryResult, error) {
	if perr := protocol.ValidateChannel(channel); perr != nil {
		return broker.HistoryResult{}, perr
	}
	if limit < 0 || limit > h.cfg.HistoryMaxLimit {
		return broker.HistoryResult{}, protocol.ErrBadRequest.WithMessage(`"limit" must be between 0 and %d`, h.cfg.HistoryMaxLimit)
	}
	r, err := h.broker.History(ctx, channel, broker.HistoryQuery{Since: since, Limit: limit, Reverse: reverse})
	if errors.Is(err, broker.ErrEpochMismatch) {
		return r, protocol.ErrEpochMismatch.WithMessage("position is from epoch %q, the channel is in epoch %q", since.Epoch, r.Position.Epoch)
	}
	if err != nil {
		return r, fmt.Errorf("hub: history of %q: %w", channel, err)
	}
	return r, nil
}

// ClientPublish reports whether clients may publish to channels of the
// default namespace; see CanPublish for a given channel.
func (h *Hub) ClientPublish() bool { return h.cfg.ClientPublish }

// RequireAuth reports whether every client must present a connection token
// (allow_anonymous off). Transports that take no connect command (SSE, long
// polling, HTTP publish) check the token themselves, with Authenticate.
func (h *Hub) RequireAuth() bool { return h.cfg.RequireAuth }

// CanPublish checks whether a client with the given user id may publish to
// channel (the publish command, and the HTTP publish endpoint of SSE and
// polling clients).
func (h *Hub) CanPublish(channel, user string) *protocol.Error {
	ns, perr := h.namespace(channel)
	if perr != nil {
		return perr
	}
	if !ns.Publish {
		return protocol.ErrPermissionDenied.WithMessage("clients may not publish to %q", channel)
	}
	if !auth.UserAllowed(channel, user) {
		return protocol.ErrPermissionDenied.WithMessage("%q is limited to its listed users", channel)
	}
	return nil
}

// HistoryMaxLimit is the most publications one history request may ask for.
func (h *Hub) HistoryMaxLimit() int { return h.cfg.HistoryMaxLimit }

// Presence lists the clients subscribed to a channel, across nodes.
func (h *Hub) Presence(ctx context.Context, channel string) ([]broker.ClientInfo, error) {
	if err := h.presenceAllowed(channel); err != nil {
		return nil, err
	}
	list, err := h.presence.Presence(ctx, channel)
	if err != nil {
		return nil, fmt.Errorf("hub: presence of %q: %w", channel, err)
	}
	return list, nil
}

// PresenceStats counts the clients and users subscribed to a channel.
func (h *Hub) PresenceStats(ctx context.Context, channel string) (broker.PresenceStats, error) {
	if err := h.presenceAllowed(channel); err != nil {
		return broker.PresenceStats{}, err
	}
	st, err := h.presence.PresenceStats(ctx, channel)
	if err != nil {
		return st, fmt.Errorf("hub: presence stats of %q: %w", channel, err)
	}
	return st, nil
}

func (h *Hub) presenceAllowed(channel string) error {
	ns, perr := h.namespace(channel)
	if perr != nil {
		return perr
	}
	if !ns.Presence {
		return protocol.ErrPermissionDenied.WithMessage("presence is off for %q", channel)
	}
	return nil
}

// joined records a new live subscription in presence and tells the
// channel's subscribers.
func (h *Hub) joined(ctx context.Context, channel string, info broker.ClientInfo) {
	ns, _ := h.cfg.Rules.Lookup(channel)
	if !ns.Presence {
		return
	}
	if err := h.presence.AddPresence(ctx, channel, info, h.cfg.PresenceTTL); err != nil {
		h.log.Warn("add presence failed", "channel", channel, "err", err)
	}
	if ns.JoinLeave {
		h.publishEvent(ctx, channel, "join", info)
	}
}

// left undoes joined.
func (h *Hub) left(channel string, info broker.ClientInfo) {
	ns, _ := h.cfg.Rules.Lookup(channel)
	if !ns.Presence {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.presence.RemovePresence(ctx, channel, info.Client); err != nil {
		h.log.Warn("remove presence failed", "channel", channel, "err", err)
	}
	if ns.JoinLeave {
		h.publishEvent(ctx, channel, "leave", info)
	}
}

func (h *Hub) publishEvent(ctx context.Context, channel, kind string, info broker.ClientInfo) {
	data := protocol.AppendPushEvent(nil, channel, kind, mustJSON(info))
	if err := h.broker.PublishEvent(ctx, channel, data); err != nil {
		h.log.Warn("publish "+kind+" failed", "channel", channel, "err", err)
	}
}

// ChannelInfo describes one channel with local subscribers.
type ChannelInfo struct {
	Channel     string `json:"channel"`
	Subscribers int    `json:"subscribers"`
}

// Channels lists the channels that have local subscribers.
func (h *Hub) localChannels() []ChannelInfo {
	var out []ChannelInfo
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for name, set := range sh.channels {
			out = append(out, ChannelInfo{Channel: name, Subscribers: len(set)})
		}
		sh.mu.RUnlock()
	}
	return out
}

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
	h.sessMu.Lock()
	over := h.cfg.MaxConnections > 0 && len(h.sessions) >= h.cfg.MaxConnections ||
		h.cfg.MaxConnectionsPerIP > 0 && h.perIP[s.ip] >= h.cfg.MaxConnectionsPerIP
	h.sessions[s.id] = s
	h.perIP[s.ip]++
	h.sessMu.Unlock()
	h.metrics.Connections.WithLabelValues(s.transport.Name()).Inc()
	h.metrics.ConnectionsTotal.WithLabelValues(s.transport.Name()).Inc()
	return !over
}

// unregister removes s from the registry and all its channels.
func (h *Hub) unregister(s *Session) {
	for _, sub := range s.takeSubscriptions() {
		h.removeSubscription(sub)
		if sub.present {
			h.left(sub.channel, s.clientInfo())
		}
	}
	h.sessMu.Lock()
	delete(h.sessions, s.id)
	if h.perIP[s.ip]--; h.perIP[s.ip] <= 0 {
		delete(h.perIP, s.ip)
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

// nopPresence is the presence store of a hub without one: it keeps nothing.
type nopPresence struct{}

func (nopPresence) AddPresence(context.Context, string, broker.ClientInfo, time.Duration) error {
	return nil
}
func (nopPresence) RemovePresence(context.Context, string, string) error { return nil }
func (nopPresence) Presence(context.Context, string) ([]broker.ClientInfo, error) {
	return nil, nil
}
func (nopPresence) PresenceStats(context.Context, string) (broker.PresenceStats, error) {
	return broker.PresenceStats{}, nil
}
