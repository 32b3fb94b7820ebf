package hub

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/metrics"
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
	// WriteDelayMinRate makes WriteDelay apply only while the writers
	// cannot keep up: the node sends at least this many messages per second
	// and most deliveries take longer than 10 ms, or messages pile up at 1.5
	// or more per write. It stops below half the
	// rate at which it started. So a node that keeps up writes at once and
	// a saturated one batches. 0 applies WriteDelay always.
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
	// IdempotencyWindow is how long a publish's idempotency key is
	// remembered per channel, for namespaces that set none. Default 5m.
	IdempotencyWindow time.Duration
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
	// Backend, when not nil, is the application backend the proxy hooks
	// call: the connect and refresh hooks at ProxyConnectEndpoint and
	// ProxyRefreshEndpoint, the subscribe, publish and rpc hooks at the
	// endpoints of each namespace (auth.Namespace.ProxySubscribe...).
	Backend Backend
	// ProxyConnectEndpoint is called when a client connects without a
	// token; "" calls none.
	ProxyConnectEndpoint string
	// ProxyRefreshEndpoint is called when the credentials the connect hook
	// gave expire, and on a refresh command without a token; "" calls
	// none (such connections then close at expiry, 4005).
	ProxyRefreshEndpoint string
	// PassHeaders names the headers of a client's HTTP request that
	// transports keep for the connect hook (see Hub.PassHeaders).
	PassHeaders []string
	// RequireAuth refuses every command but connect, refresh and ping from
	// clients without a valid connection token (or the connect hook's
	// approval), and closes those that have
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
	// CommandTimeout bounds each client command that waits on the broker
	// (and each subscribe of a transport without commands). Default 5s.
	CommandTimeout time.Duration
	// Lifecycle, when not nil, receives reports of connections and
	// subscriptions starting and ending (webhooks). Subscriptions of every
	// namespace are reported; the Lifecycle picks what it sends.
	Lifecycle Lifecycle
	// Rooms serves the room commands (calls); nil refuses them with 503.
	Rooms Rooms
	// Streams acts on this node's live streams for the server API, which
	// the hub extends to the cluster (streamadmin.go); nil when live
	// streams are off here.
	Streams StreamAdmin
	// Clock tells the hub's time: timers, tickers, the rate limit, token
	// expiry, write_delay. Default the real clock; tests pass a fake one.
	Clock clockwork.Clock
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
	if c.IdempotencyWindow <= 0 {
		c.IdempotencyWindow = 5 * time.Minute
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
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = 5 * time.Second
	}
	if c.Clock == nil {
		c.Clock = clockwork.NewRealClock()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}
