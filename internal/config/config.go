// Package config defines Switchboard's configuration: every key, its default
// and its meaning, loaded from (lowest to highest precedence) the defaults,
// an optional YAML file, SWITCHBOARD_<KEY> environment variables and
// command-line flags.
package config

import (
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/stream"
)

// EnvPrefix prefixes every environment variable Switchboard reads.
const EnvPrefix = "SWITCHBOARD_"

// Config is the whole configuration of a node. Keys are the koanf tags; the
// environment variable of key k is SWITCHBOARD_ + upper(k) and its flag is
// --k with dashes for underscores.
type Config struct {
	Addr                     string        `koanf:"addr"`
	APIKey                   []string      `koanf:"api_key"`
	Broker                   string        `koanf:"broker"`
	NodeName                 string        `koanf:"node_name"`
	WebSocketReader          string        `koanf:"websocket_reader"`
	WebSocketCompression     bool          `koanf:"websocket_compression"`
	CompressionMinSize       int           `koanf:"websocket_compression_min_size"`
	CompressionLevel         int           `koanf:"websocket_compression_level"`
	Pprof                    bool          `koanf:"pprof"`
	AllowAnonymous           bool          `koanf:"allow_anonymous"`
	ClientPublish            bool          `koanf:"client_publish"`
	AllowedOrigins           []string      `koanf:"allowed_origins"`
	AllowedHosts             []string      `koanf:"allowed_hosts"`
	MaxMessageSize           int           `koanf:"max_message_size"`
	MaxChannelsPerConnection int           `koanf:"max_channels_per_connection"`
	QueueMaxMessages         int           `koanf:"queue_max_messages"`
	QueueMaxBytes            int           `koanf:"queue_max_bytes"`
	WriteDelay               time.Duration `koanf:"write_delay"`
	WriteDelayMinRate        int           `koanf:"write_delay_min_rate"`
	HistorySize              int           `koanf:"history_size"`
	HistoryTTL               time.Duration `koanf:"history_ttl"`
	HistoryMaxLimit          int           `koanf:"history_max_limit"`
	IdempotencyWindow        time.Duration `koanf:"idempotency_window"`
	Presence                 bool          `koanf:"presence"`
	JoinLeave                bool          `koanf:"join_leave"`
	PresenceTTL              time.Duration `koanf:"presence_ttl"`
	PingInterval             time.Duration `koanf:"ping_interval"`
	IdleTimeout              time.Duration `koanf:"idle_timeout"`
	WriteTimeout             time.Duration `koanf:"write_timeout"`
	HandshakeTimeout         time.Duration `koanf:"handshake_timeout"`
	ShutdownTimeout          time.Duration `koanf:"shutdown_timeout"`
	MemoryReleaseInterval    time.Duration `koanf:"memory_release_interval"`
	CommandTimeout           time.Duration `koanf:"command_timeout"`
	LogLevel                 string        `koanf:"log_level"`
	LogFormat                string        `koanf:"log_format"`
	Demo                     bool          `koanf:"demo"`
	TLSCert                  string        `koanf:"tls_cert"`
	HTTP2Cleartext           bool          `koanf:"http2_cleartext"`
	TLSKey                   string        `koanf:"tls_key"`
	JWTSecret                string        `koanf:"jwt_secret"`
	JWTPublicKey             string        `koanf:"jwt_public_key"`
	JWTJWKSURL               string        `koanf:"jwt_jwks_url"`
	JWTAlgorithm             string        `koanf:"jwt_algorithm"`
	JWTIssuer                string        `koanf:"jwt_issuer"`
	JWTAudience              string        `koanf:"jwt_audience"`
	JWTMaxSize               int           `koanf:"jwt_max_size"`
	CommandRate              float64       `koanf:"command_rate"`
	CommandBurst             int           `koanf:"command_burst"`
	MaxConnections           int           `koanf:"max_connections"`
	MaxConnectionsPerIP      int           `koanf:"max_connections_per_ip"`
	PollMaxTimeout           time.Duration `koanf:"poll_max_timeout"`
	TrustedProxies           []string      `koanf:"trusted_proxies"`
	NATSReplicas             int           `koanf:"nats_replicas"`
	NATSStorage              string        `koanf:"nats_storage"`
	NATSPrefix               string        `koanf:"nats_prefix"`
	NATSHistoryMaxAge        time.Duration `koanf:"nats_history_max_age"`
	TURNAddr                 string        `koanf:"turn_addr"`
	TURNTLSAddr              string        `koanf:"turn_tls_addr"`
	TURNCertFile             string        `koanf:"turn_cert_file"`
	TURNKeyFile              string        `koanf:"turn_key_file"`
	TURNSecret               string        `koanf:"turn_secret"`
	TURNTTL                  time.Duration `koanf:"turn_ttl"`
	TURNRealm                string        `koanf:"turn_realm"`
	TURNHost                 string        `koanf:"turn_host"`
	TURNRelayIP              string        `koanf:"turn_relay_ip"`
	TURNRelayPorts           string        `koanf:"turn_relay_ports"`
	TURNAllowedPeers         []string      `koanf:"turn_allowed_peers"`
	TURNUserQuota            int           `koanf:"turn_user_quota"`
	TURNTotalQuota           int           `koanf:"turn_total_quota"`
	WebRTC                   bool          `koanf:"webrtc"`
	WebRTCUDPPort            int           `koanf:"webrtc_udp_port"`
	WebRTCTCPPort            int           `koanf:"webrtc_tcp_port"`
	WebRTCPublicIP           []string      `koanf:"webrtc_public_ip"`
	WebRTCLoopback           bool          `koanf:"webrtc_loopback"`
	WebRTCCodecs             []string      `koanf:"webrtc_codecs"`
	NodeURL                  string        `koanf:"node_url"`
	NodeHTTPURL              string        `koanf:"node_http_url"`
	ProxyConnectEndpoint     string        `koanf:"proxy_connect_endpoint"`
	ProxyRefreshEndpoint     string        `koanf:"proxy_refresh_endpoint"`
	ProxySubscribeEndpoint   string        `koanf:"proxy_subscribe_endpoint"`
	ProxyPublishEndpoint     string        `koanf:"proxy_publish_endpoint"`
	ProxyRPCEndpoint         string        `koanf:"proxy_rpc_endpoint"`
	ProxyTimeout             time.Duration `koanf:"proxy_timeout"`
	ProxyMaxConcurrency      int           `koanf:"proxy_max_concurrency"`
	ProxyPassHeaders         []string      `koanf:"proxy_pass_headers"`
	WebhookEndpoint          string        `koanf:"webhook_endpoint"`
	WebhookSecret            string        `koanf:"webhook_secret"`
	WebhookEvents            []string      `koanf:"webhook_events"`
	WebhookTimeout           time.Duration `koanf:"webhook_timeout"`
	WebhookBatchSize         int           `koanf:"webhook_batch_size"`
	WebhookBackoffMin        time.Duration `koanf:"webhook_backoff_min"`
	WebhookBackoffMax        time.Duration `koanf:"webhook_backoff_max"`
	WebhookLeaseTTL          time.Duration `koanf:"webhook_lease_ttl"`
	WebhookPartitions        int           `koanf:"webhook_partitions"`
	Streams                  bool          `koanf:"streams"`
	RTMPAddr                 string        `koanf:"rtmp_addr"`
	StreamKeySecret          string        `koanf:"stream_key_secret"`
	HLSPartDuration          time.Duration `koanf:"hls_part_duration"`
	HLSSegmentDuration       time.Duration `koanf:"hls_segment_duration"`
	StreamRecordDir          string        `koanf:"stream_record_dir"`
	StreamRecordSegment      time.Duration `koanf:"stream_record_segment_duration"`
	StreamRecordRetention    time.Duration `koanf:"stream_record_retention"`
	PostgresDSN              string        `koanf:"consumer_postgres_dsn"`
	PostgresTable            string        `koanf:"consumer_postgres_table"`
	PostgresPollInterval     time.Duration `koanf:"consumer_postgres_poll_interval"`
	PostgresBatchSize        int           `koanf:"consumer_postgres_batch_size"`
	PostgresPartitions       int           `koanf:"consumer_postgres_partitions"`
	KafkaBrokers             []string      `koanf:"consumer_kafka_brokers"`
	KafkaTopics              []string      `koanf:"consumer_kafka_topics"`
	KafkaGroup               string        `koanf:"consumer_kafka_group"`
	// Namespaces can only be set in the YAML file; see auth.Namespace.
	Namespaces []auth.Namespace `koanf:"namespaces"`
	// StreamNamespaces can only be set in the YAML file; see
	// stream.Namespace. Empty: the one namespace "live", open to readers.
	StreamNamespaces []stream.Namespace `koanf:"stream_namespaces"`
}

// WebhookEventTypes are the webhook event types, the values webhook_events
// accepts; the webhook package defines the same list.
var WebhookEventTypes = []string{"channel.occupied", "channel.vacated", "member.added", "member.removed", "client.connected", "client.disconnected"}

// Key describes one configuration key for flags and documentation.
type Key struct {
	Name    string
	Default any
	Usage   string
}

// Keys lists every key with its default, in the order the help shows them.
var Keys = []Key{
	{"addr", "127.0.0.1:8000", "address to listen on (host:port)"},
	{"api_key", []string{}, "server API key(s), comma-separated; one is generated and printed at startup when empty"},
	{"broker", "memory", `broker: "memory" (single node, no dependency), redis://host:port/db (a Redis, Sentinels with ?master_set=, or a Redis Cluster) or nats://host:port (several nodes)`},
	{"node_name", "", "this node's name in /api/info (default: the host name)"},
	{"pprof", false, "serve Go profiles at /debug/pprof/ (behind the server API key)"},
	{"websocket_reader", "", `how WebSocket connections are read: "epoll" (Linux default: no goroutine per idle connection) or "goroutine"`},
	{"websocket_compression", false, "offer permessage-deflate (RFC 7692, no context takeover) to WebSocket clients that ask for it; each publication is compressed once for all of them"},
	{"websocket_compression_min_size", 256, "messages shorter than this many bytes are sent uncompressed"},
	{"websocket_compression_level", 1, "deflate level for WebSocket compression, 1 (fastest) to 9 (smallest)"},
	{"allow_anonymous", true, "allow clients to connect without credentials"},
	{"client_publish", true, "allow clients to publish with the publish command"},
	{"allowed_origins", []string{}, `browser origins allowed besides the server's own, comma-separated ("*" allows any)`},
	{"allowed_hosts", []string{}, `Host names this server answers to besides localhost and IP addresses, comma-separated: app.example.com, *.example.com (names under it), with an optional :port; "*" allows any (DNS rebinding protection)`},
	{"max_message_size", 65536, "largest message a client may send, in bytes"},
	{"max_channels_per_connection", 128, "most channels one connection may subscribe to"},
	{"queue_max_messages", 4096, "outbound queue bound per connection, in messages"},
	{"queue_max_bytes", 1 << 20, "outbound queue bound per connection, in bytes"},
	{"write_delay", 30 * time.Millisecond, "while the node is busy (write_delay_min_rate), a connection written to within this time waits out the rest before its next write, so more messages share one system call (0: write at once)"},
	{"write_delay_min_rate", 20000, "write_delay applies only while the node sends at least this many messages per second and the writers cannot keep up (most deliveries over 25 ms, or messages piling up); it stops below half the rate at which it started (0: always)"},
	{"history_size", 100, "publications kept per channel for recovery"},
	{"history_ttl", 10 * time.Minute, "how long a publication stays in history"},
	{"history_max_limit", 1000, "most publications one history request may return"},
	{"idempotency_window", 5 * time.Minute, "how long a publish's idempotency key is remembered per channel: a repeat within it gets the original offset and publishes nothing (1s to 24h; namespaces may override it)"},
	{"presence", true, "keep who is subscribed to each channel (presence commands)"},
	{"join_leave", false, "push join and leave events to a channel's subscribers (needs presence)"},
	{"presence_ttl", time.Minute, "with a shared broker: how long a dead node's clients stay in presence"},
	{"ping_interval", 25 * time.Second, "how often the server pings each connection"},
	{"idle_timeout", 60 * time.Second, "close connections silent for this long"},
	{"write_timeout", 10 * time.Second, "close connections that do not take their data within this time"},
	{"handshake_timeout", 10 * time.Second, "time allowed for a client's HTTP request or upgrade"},
	{"shutdown_timeout", 10 * time.Second, "time allowed for a graceful shutdown"},
	{"memory_release_interval", 10 * time.Second, "how often a quiet node checks whether to return the free heap a burst left to the system (0: never; see docs/performance.md)"},
	{"command_timeout", 5 * time.Second, "longest a client command may wait on the broker (then error 503)"},
	{"log_level", "info", "log level: debug, info, warn, error"},
	{"log_format", "text", "log format: text or json"},
	{"demo", true, "serve the demo pages at /"},
	{"jwt_secret", "", "HS256 secret for connection and subscription tokens (at least 16 bytes)"},
	{"jwt_public_key", "", "PEM file with the RSA or EC public key for RS256 or ES256 tokens"},
	{"jwt_jwks_url", "", "JWKS URL to fetch RS256 or ES256 token keys from"},
	{"jwt_algorithm", "", "the only token algorithm accepted: HS256 (default with jwt_secret), RS256 or ES256"},
	{"jwt_issuer", "", "required token issuer (iss), when set"},
	{"jwt_audience", "", "required token audience (aud), when set"},
	{"jwt_max_size", 8192, "longest token accepted, in bytes"},
	{"command_rate", 100.0, "commands per second one connection may send (token bucket; 0: no limit)"},
	{"command_burst", 200, "commands one connection may send at once above command_rate"},
	{"max_connections", 100000, "most connections this node accepts (0: no limit)"},
	{"max_connections_per_ip", 25000, "most connections from one client address (0: no limit)"},
	{"tls_cert", "", "TLS certificate file (PEM); with tls_key, serve HTTPS and HTTP/2"},
	{"http2_cleartext", true, "without TLS, also serve HTTP/2 to clients that speak it from the first byte (h2c with prior knowledge), so a backend can send many server API requests at once over one connection"},
	{"tls_key", "", "TLS private key file (PEM) for tls_cert"},
	{"poll_max_timeout", 60 * time.Second, "longest wait a long poll (GET /poll) may ask for, in whole seconds"},
	{"trusted_proxies", []string{}, "proxies (IP addresses or CIDR prefixes, comma-separated) whose X-Forwarded-For or X-Real-IP gives the client address"},
	{"nats_replicas", 1, "with NATS: how many servers of a NATS cluster keep history and presence (1 to 5)"},
	{"nats_storage", "file", `with NATS: where JetStream keeps history and presence: "file" or "memory" (lost when NATS restarts)`},
	{"nats_prefix", "switchboard", "with NATS: prefix of every subject, stream and bucket name, so several clusters can share one NATS"},
	{"nats_history_max_age", 24 * time.Hour, "with NATS: how long the history stream keeps a message, at least every history_ttl (0: no limit)"},
	{"turn_addr", "", "UDP and TCP address (host:port) of the built-in STUN/TURN server, e.g. 0.0.0.0:3478 (empty: off)"},
	{"turn_tls_addr", "", "TCP address for TURN over TLS (turns:), with turn_cert_file and turn_key_file (empty: no TLS)"},
	{"turn_cert_file", "", "TLS certificate file (PEM) for turn_tls_addr (default: tls_cert)"},
	{"turn_key_file", "", "TLS private key file (PEM) for turn_cert_file (default: tls_key)"},
	{"turn_secret", "", "shared secret signing TURN credentials; set the same one on every node (empty: generated at startup, single node only)"},
	{"turn_ttl", time.Hour, "lifetime of the TURN credentials handed to clients, checked on allocate and refresh (1m to 24h)"},
	{"turn_realm", "switchboard", "TURN realm"},
	{"turn_host", "", "host name or IP clients use in their TURN and STUN URLs (default: the host they reached Switchboard by)"},
	{"turn_relay_ip", "", "IP address advertised for relayed addresses, the public IP behind a 1:1 NAT (default: the turn_addr IP, or the host's first global IPv4 address)"},
	{"turn_relay_ports", "49152-65535", "port range (min-max) of TURN relay sockets"},
	{"turn_allowed_peers", []string{}, "IP addresses or CIDR prefixes TURN may relay to although they are loopback, private, link-local or CGNAT, comma-separated (metadata, multicast and Switchboard's own ports stay refused)"},
	{"turn_user_quota", 32, "most TURN allocations one user may hold at once (0: no limit)"},
	{"turn_total_quota", 0, "most TURN allocations this node holds at once (0: no limit but turn_relay_ports)"},
	{"webrtc", true, "serve calls: the room commands and the SFU"},
	{"webrtc_udp_port", 0, "one UDP port for the media of every peer (0: each connection on its own ephemeral ports)"},
	{"webrtc_tcp_port", 0, "TCP port for ICE-TCP, the fallback when UDP is blocked (0: off)"},
	{"webrtc_public_ip", []string{}, "public addresses announced for the media ports (1:1 NAT), comma-separated"},
	{"webrtc_loopback", false, "offer loopback ICE candidates and gather on lo only (tests, machines without a network)"},
	{"webrtc_codecs", []string{"vp8", "vp9", "h264"}, "video codecs accepted from publishers, most preferred first"},
	{"node_url", "", "this node's public URL (wss://host/ws), given to clients of a room it serves that land on another node"},
	{"node_http_url", "", "this node's public HTTP base URL (https://host), where viewers of a stream it publishes that land on another node are redirected (307); empty: derived from node_url"},
	{"proxy_connect_endpoint", "", "URL of the application backend's connect hook, called when a client connects without a token (docs/backend.md)"},
	{"proxy_refresh_endpoint", "", "URL of the refresh hook, which extends a connection the connect hook admitted when it expires"},
	{"proxy_subscribe_endpoint", "", "URL of the subscribe hook, which allows or refuses subscriptions (namespaces may set their own, or \"off\")"},
	{"proxy_publish_endpoint", "", "URL of the publish hook, which allows, refuses or rewrites client publications (namespaces may set their own, or \"off\")"},
	{"proxy_rpc_endpoint", "", "URL of the rpc hook, which answers the rpc command (namespaces may set their own for methods \"name:...\", or \"off\")"},
	{"proxy_timeout", 3 * time.Second, "longest a proxy hook call may take, from waiting for a free slot to the whole answer (then error 503)"},
	{"proxy_max_concurrency", 256, "most calls in flight per proxy hook; a call over it waits for a slot within proxy_timeout"},
	{"streams", true, "serve live streams: LL-HLS at /hls/, GET /api/streams, and the ingests (docs/streaming.md)"},
	{"rtmp_addr", "", "TCP address (host:port) of the RTMP ingest for encoders such as OBS and ffmpeg, e.g. 127.0.0.1:1935 (empty: off)"},
	{"stream_key_secret", "", "secret signing the stream keys of POST /api/streams/key (at least 16 bytes); set the same one on every node (empty: generated at startup, keys die with the process)"},
	{"hls_part_duration", 200 * time.Millisecond, "shortest LL-HLS part (50ms to 2s)"},
	{"hls_segment_duration", time.Second, "shortest LL-HLS segment; a segment also starts on a keyframe, so it lasts at least one GOP (at least hls_part_duration, at most 30s)"},
	{"stream_record_dir", "", "directory where the streams of namespaces with record: true are written as fMP4 files, DIR/NAMESPACE/NAME/TIME.mp4 (empty: no recording)"},
	{"stream_record_segment_duration", 10 * time.Second, "shortest recorded file; a new one starts at the first keyframe after it (1s to 1h)"},
	{"stream_record_retention", 24 * time.Hour, "recorded files older than this are deleted (0: kept forever)"},
	{"proxy_pass_headers", []string{"Cookie", "Authorization", "Origin", "User-Agent", "Accept-Language"}, "headers of the client's HTTP request passed to the connect hook (in the body and as HTTP headers), comma-separated"},
	{"webhook_endpoint", "", "URL the lifecycle events (channel occupied/vacated, member added/removed, client connected/disconnected) are POSTed to in signed batches (empty: off; docs/backend.md)"},
	{"webhook_secret", "", "secret of the webhook requests' X-Switchboard-Signature (HMAC-SHA256 of the body); set the same on every node"},
	{"webhook_events", WebhookEventTypes, "event types sent, comma-separated (namespaces may choose their own channel and member events)"},
	{"webhook_timeout", 10 * time.Second, "longest one webhook request may take, answer included, before it is retried"},
	{"webhook_batch_size", 100, "most lifecycle reports whose events share one webhook request"},
	{"webhook_backoff_min", 500 * time.Millisecond, "pause before the first webhook retry; it doubles up to webhook_backoff_max, with jitter"},
	{"webhook_backoff_max", 30 * time.Second, "longest pause between webhook retries"},
	{"webhook_lease_ttl", 15 * time.Second, "how long a node's hold on a webhook partition, and its mark as alive, last unrenewed: a dead node's events move to another node, and its clients are removed, within about twice this"},
	{"webhook_partitions", 16, "partitions webhook events are spread over, each sent by one node at a time; the same on every node"},
	{"consumer_postgres_dsn", "", "PostgreSQL connection string (postgres://user:pass@host/db): publish the rows of the outbox table (docs/backend.md; empty: off)"},
	{"consumer_postgres_table", "switchboard_outbox", "the outbox table, optionally schema.table (lower-case letters, digits, _)"},
	{"consumer_postgres_poll_interval", time.Second, "how often the outbox table is read when no NOTIFY came"},
	{"consumer_postgres_batch_size", 100, "most outbox rows published and deleted in one transaction"},
	{"consumer_postgres_partitions", 16, "partitions the outbox's channels are hashed into, each read by one transaction at a time across all nodes; the same on every node (1 to 1024)"},
	{"consumer_kafka_brokers", []string{}, "Kafka seed brokers (host:port, comma-separated): publish the records of consumer_kafka_topics (docs/backend.md; empty: off)"},
	{"consumer_kafka_topics", []string{}, "Kafka topics to publish from, comma-separated"},
	{"consumer_kafka_group", "switchboard", "Kafka consumer group of the nodes; offsets are committed once records are published"},
}

// RegisterFlags adds --config and a flag for every key to fs.
func RegisterFlags(fs *pflag.FlagSet) {
	fs.StringP("config", "c", "", "YAML configuration file (optional)")
	for _, k := range Keys {
		addFlag(fs, k)
	}
}

// RegisterFlagsFor adds --config and the flags of the named keys only, for
// a command that uses a few settings: its help then lists just those. Load
// still gives every other key its value from the file, the environment or
// its default. It panics on a name that is not a key (a bug).
func RegisterFlagsFor(fs *pflag.FlagSet, names ...string) {
	fs.StringP("config", "c", "", "YAML configuration file (optional)")
	for _, name := range names {
		i := slices.IndexFunc(Keys, func(k Key) bool { return k.Name == name })
		if i < 0 {
			panic(fmt.Sprintf("config: no key %q", name))
		}
		addFlag(fs, Keys[i])
	}
}

func addFlag(fs *pflag.FlagSet, k Key) {
	name := strings.ReplaceAll(k.Name, "_", "-")
	usage := fmt.Sprintf("%s (env %s%s)", k.Usage, EnvPrefix, strings.ToUpper(k.Name))
	switch d := k.Default.(type) {
	case string:
		fs.String(name, d, usage)
	case bool:
		fs.Bool(name, d, usage)
	case int:
		fs.Int(name, d, usage)
	case time.Duration:
		fs.Duration(name, d, usage)
	case float64:
		fs.Float64(name, d, usage)
	case []string:
		fs.StringSlice(name, d, usage)
	default:
		panic(fmt.Sprintf("config: key %s has unsupported default type %T", k.Name, d))
	}
}

// Load reads the configuration: the defaults of Keys, changed flags from fs, the YAML
// file named by the "config" flag or SWITCHBOARD_CONFIG, and the environment
// given as KEY=VALUE strings (os.Environ()).
func Load(fs *pflag.FlagSet, environ []string) (Config, error) {
	k := koanf.New(".")
	// Defaults first, from Keys rather than from the flags, since fs may
	// have flags for some keys only (RegisterFlagsFor). Flags left at
	// their defaults then override nothing.
	for _, key := range Keys {
		if err := k.Set(key.Name, key.Default); err != nil {
			return Config{}, fmt.Errorf("config: default of %s: %w", key.Name, err)
		}
	}
	path, _ := fs.GetString("config")
	if path == "" {
		path = lookupEnv(environ, EnvPrefix+"CONFIG")
	}
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
			return Config{}, fmt.Errorf("config: read %s: %w", path, err)
		}
		if err := checkKnown(k.Keys(), path); err != nil {
			return Config{}, err
		}
	}
	envProvider := env.Provider(".", env.Opt{
		Prefix:        EnvPrefix,
		EnvironFunc:   func() []string { return environ },
		TransformFunc: func(key, v string) (string, any) { return strings.ToLower(strings.TrimPrefix(key, EnvPrefix)), v },
	})
	if err := k.Load(envProvider, nil); err != nil {
		return Config{}, fmt.Errorf("config: environment: %w", err)
	}
	flags := posflag.ProviderWithFlag(fs, ".", k, func(f *pflag.Flag) (string, any) {
		if f.Name == "config" {
			return "", nil
		}
		return strings.ReplaceAll(f.Name, "-", "_"), posflag.FlagVal(fs, f)
	})
	if err := k.Load(flags, nil); err != nil {
		return Config{}, fmt.Errorf("config: flags: %w", err)
	}
	var c Config
	err := k.UnmarshalWithConf("", &c, koanf.UnmarshalConf{DecoderConfig: &mapstructure.DecoderConfig{
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			splitCommaHook,
		),
		WeaklyTypedInput: true,
		Result:           &c,
		TagName:          "koanf",
	}})
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return c, c.Validate()
}

// splitCommaHook turns "a,b" (from the environment) into []string{"a","b"}.
func splitCommaHook(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.String || to.Kind() != reflect.Slice || to.Elem().Kind() != reflect.String {
		return data, nil
	}
	s := strings.TrimSpace(data.(string))
	if s == "" {
		return []string{}, nil
	}
	parts := strings.Split(s, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts, nil
}

// fileOnlyKeys are keys only the YAML file can set.
var fileOnlyKeys = []string{"namespaces", "stream_namespaces"}

func checkKnown(keys []string, path string) error {
	known := map[string]bool{}
	for _, k := range fileOnlyKeys {
		known[k] = true
	}
	for _, k := range Keys {
		known[k.Name] = true
	}
	for _, k := range keys {
		top, _, _ := strings.Cut(k, ".")
		if !known[k] && !known[top] {
			return fmt.Errorf("config: %s: unknown key %q", path, k)
		}
	}
	return nil
}

func lookupEnv(environ []string, name string) string {
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// LargestHistory returns the largest history size and the longest history
// TTL of the default namespace and the configured namespaces: what a
// shared broker must be able to keep.
func (c Config) LargestHistory() (size int, ttl time.Duration) {
	size, ttl = c.HistorySize, c.HistoryTTL
	for _, ns := range c.Namespaces {
		size, ttl = max(size, ns.HistorySize), max(ttl, ns.HistoryTTL)
	}
	return size, ttl
}

// LargestIdempotencyWindow returns the longest idempotency window of the
// top level and the namespaces: how long a shared broker must remember a
// key.
func (c Config) LargestIdempotencyWindow() time.Duration {
	w := c.IdempotencyWindow
	for _, ns := range c.Namespaces {
		w = max(w, ns.IdempotencyWindow)
	}
	return w
}

// Default returns the configuration with every key at its default.
func Default() Config {
	fs := pflag.NewFlagSet("defaults", pflag.ContinueOnError)
	RegisterFlags(fs)
	c, err := Load(fs, nil)
	if err != nil {
		panic(fmt.Sprintf("config: defaults are invalid: %v", err)) // a bug in Keys
	}
	return c
}
