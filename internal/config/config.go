// Package config defines Switchboard's configuration: every key, its default
// and its meaning, loaded from (lowest to highest precedence) the defaults,
// an optional YAML file, SWITCHBOARD_<KEY> environment variables and
// command-line flags.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
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
	"github.com/switchboardhq/switchboard/internal/origin"
	"github.com/switchboardhq/switchboard/internal/realip"
	"github.com/switchboardhq/switchboard/internal/turn"
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
	WebRTC                   bool          `koanf:"webrtc"`
	WebRTCUDPPort            int           `koanf:"webrtc_udp_port"`
	WebRTCTCPPort            int           `koanf:"webrtc_tcp_port"`
	WebRTCPublicIP           []string      `koanf:"webrtc_public_ip"`
	WebRTCLoopback           bool          `koanf:"webrtc_loopback"`
	WebRTCCodecs             []string      `koanf:"webrtc_codecs"`
	NodeURL                  string        `koanf:"node_url"`
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
	// Namespaces can only be set in the YAML file; see auth.Namespace.
	Namespaces []auth.Namespace `koanf:"namespaces"`
}

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
	{"write_delay_min_rate", 20000, "write_delay applies only while the node sends at least this many messages per second and most deliveries take over 10 ms; it stops below half the rate at which it started (0: always)"},
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
	{"webrtc", true, "serve calls: the room commands and the SFU"},
	{"webrtc_udp_port", 0, "one UDP port for the media of every peer (0: each connection on its own ephemeral ports)"},
	{"webrtc_tcp_port", 0, "TCP port for ICE-TCP, the fallback when UDP is blocked (0: off)"},
	{"webrtc_public_ip", []string{}, "public addresses announced for the media ports (1:1 NAT), comma-separated"},
	{"webrtc_loopback", false, "offer loopback ICE candidates and gather on lo only (tests, machines without a network)"},
	{"webrtc_codecs", []string{"vp8", "vp9", "h264"}, "video codecs accepted from publishers, most preferred first"},
	{"node_url", "", "this node's public URL (wss://host/ws), given to clients of a room it serves that land on another node"},
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
	{"turn_user_quota", 10, "most TURN allocations one user may hold at once (0: no limit)"},
	{"turn_total_quota", 0, "most TURN allocations this node holds at once (0: no limit but turn_relay_ports)"},
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
var fileOnlyKeys = []string{"namespaces"}

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

// Validate reports the first invalid value, naming its key.
func (c Config) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("addr: must not be empty"))
	}
	if c.Broker != "memory" && !strings.HasPrefix(c.Broker, "redis://") && !strings.HasPrefix(c.Broker, "rediss://") && !strings.HasPrefix(c.Broker, "nats://") {
		errs = append(errs, fmt.Errorf(`broker: %q is not "memory", a redis:// or rediss:// URL, or a nats:// URL`, c.Broker))
	}
	positive := map[string]int{
		"max_message_size": c.MaxMessageSize, "max_channels_per_connection": c.MaxChannelsPerConnection,
		"queue_max_messages": c.QueueMaxMessages, "queue_max_bytes": c.QueueMaxBytes,
		"history_max_limit": c.HistoryMaxLimit,
	}
	for _, k := range Keys { // fixed order for stable messages
		if v, ok := positive[k.Name]; ok && v <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive, got %d", k.Name, v))
		}
	}
	if c.WriteDelay < 0 || c.WriteDelayMinRate < 0 {
		errs = append(errs, fmt.Errorf("write_delay, write_delay_min_rate: must not be negative, got %s and %d", c.WriteDelay, c.WriteDelayMinRate))
	}
	if c.CompressionLevel < 1 || c.CompressionLevel > 9 {
		errs = append(errs, fmt.Errorf("websocket_compression_level: must be 1 to 9, got %d", c.CompressionLevel))
	}
	if c.CompressionMinSize < 0 {
		errs = append(errs, fmt.Errorf("websocket_compression_min_size: must not be negative, got %d", c.CompressionMinSize))
	}
	if c.HistorySize < 0 {
		errs = append(errs, fmt.Errorf("history_size: must not be negative, got %d", c.HistorySize))
	}
	for k, v := range map[string]int{"webrtc_udp_port": c.WebRTCUDPPort, "webrtc_tcp_port": c.WebRTCTCPPort} {
		if v < 0 || v > 65535 {
			errs = append(errs, fmt.Errorf("%s: must be a port from 0 to 65535, got %d", k, v))
		}
	}
	for _, codec := range c.WebRTCCodecs {
		if codec != "vp8" && codec != "vp9" && codec != "h264" {
			errs = append(errs, fmt.Errorf("webrtc_codecs: %q is not vp8, vp9 or h264", codec))
		}
	}
	durations := map[string]time.Duration{
		"ping_interval": c.PingInterval, "idle_timeout": c.IdleTimeout, "write_timeout": c.WriteTimeout,
		"handshake_timeout": c.HandshakeTimeout, "shutdown_timeout": c.ShutdownTimeout,
		"command_timeout": c.CommandTimeout,
		"presence_ttl":    c.PresenceTTL,
	}
	for _, k := range Keys {
		if v, ok := durations[k.Name]; ok && v <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive, got %s", k.Name, v))
		}
	}
	if c.CommandRate < 0 || c.CommandBurst < 0 || c.MaxConnections < 0 || c.MaxConnectionsPerIP < 0 || c.JWTMaxSize <= 0 {
		errs = append(errs, errors.New("command_rate, command_burst, max_connections, max_connections_per_ip must not be negative, jwt_max_size must be positive"))
	}
	if c.JoinLeave && !c.Presence {
		errs = append(errs, errors.New("join_leave: needs presence"))
	}
	if c.IdleTimeout > 0 && c.IdleTimeout <= c.PingInterval {
		errs = append(errs, fmt.Errorf("idle_timeout: must be longer than ping_interval (%s)", c.PingInterval))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level: %q is not one of debug, info, warn, error", c.LogLevel))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log_format: %q is not one of text, json", c.LogFormat))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("tls_cert, tls_key: set both or neither"))
	}
	if c.IdempotencyWindow < time.Second || c.IdempotencyWindow > auth.MaxIdempotencyWindow {
		errs = append(errs, fmt.Errorf("idempotency_window: must be from 1s to %s, got %s", auth.MaxIdempotencyWindow, c.IdempotencyWindow))
	}
	if c.PollMaxTimeout < time.Second || c.PollMaxTimeout > time.Hour {
		errs = append(errs, fmt.Errorf("poll_max_timeout: must be from 1s to 1h, got %s", c.PollMaxTimeout))
	}
	if _, err := origin.ParseHosts(c.AllowedHosts); err != nil {
		errs = append(errs, fmt.Errorf("allowed_hosts: %w", err))
	}
	if _, err := realip.ParseTrusted(c.TrustedProxies); err != nil {
		errs = append(errs, fmt.Errorf("trusted_proxies: %w", err))
	}
	errs = append(errs, c.validateNATS()...)
	errs = append(errs, c.validateTURN()...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// validateNATS checks the nats_* keys. Their values matter only with a
// NATS broker, but a bad value is refused with any broker so that a typo
// does not wait for the switch to NATS to show.
func (c Config) validateNATS() []error {
	var errs []error
	if c.NATSReplicas < 1 || c.NATSReplicas > 5 {
		errs = append(errs, fmt.Errorf("nats_replicas: must be from 1 to 5, got %d", c.NATSReplicas))
	}
	switch c.NATSStorage {
	case "file", "memory":
	default:
		errs = append(errs, fmt.Errorf(`nats_storage: %q is not "file" or "memory"`, c.NATSStorage))
	}
	if !validNATSPrefix(c.NATSPrefix) {
		errs = append(errs, fmt.Errorf("nats_prefix: %q is not tokens of ASCII letters, digits, '-' and '_' separated by dots", c.NATSPrefix))
	}
	if c.NATSHistoryMaxAge < 0 {
		errs = append(errs, fmt.Errorf("nats_history_max_age: must not be negative, got %s", c.NATSHistoryMaxAge))
	}
	// Only with NATS: the default age would otherwise refuse a long
	// history_ttl on brokers it does not apply to.
	if _, ttl := c.LargestHistory(); strings.HasPrefix(c.Broker, "nats://") && c.NATSHistoryMaxAge > 0 && ttl > c.NATSHistoryMaxAge {
		errs = append(errs, fmt.Errorf("nats_history_max_age: %s is shorter than the longest history_ttl (%s)", c.NATSHistoryMaxAge, ttl))
	}
	return errs
}

// validateTURN checks the turn_* keys, whether TURN is on or not, so that
// a typo shows before TURN is switched on.
func (c Config) validateTURN() []error {
	var errs []error
	for _, a := range []struct{ key, v string }{{"turn_addr", c.TURNAddr}, {"turn_tls_addr", c.TURNTLSAddr}} {
		if a.v == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(a.v); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("%s: %q is not host:port", a.key, a.v))
		}
	}
	if c.TURNTLSAddr != "" && c.TURNAddr == "" {
		errs = append(errs, errors.New("turn_tls_addr: needs turn_addr"))
	}
	certFile, keyFile := c.TURNTLSFiles()
	if c.TURNTLSAddr != "" && (certFile == "" || keyFile == "") {
		errs = append(errs, errors.New("turn_tls_addr: needs turn_cert_file and turn_key_file (or tls_cert and tls_key)"))
	}
	if (c.TURNCertFile == "") != (c.TURNKeyFile == "") {
		errs = append(errs, errors.New("turn_cert_file, turn_key_file: set both or neither"))
	}
	if c.TURNSecret != "" && len(c.TURNSecret) < 16 {
		errs = append(errs, errors.New("turn_secret: must be at least 16 bytes"))
	}
	if c.TURNTTL < time.Minute || c.TURNTTL > 24*time.Hour {
		errs = append(errs, fmt.Errorf("turn_ttl: must be from 1m to 24h, got %s", c.TURNTTL))
	}
	if c.TURNRealm == "" {
		errs = append(errs, errors.New("turn_realm: must not be empty"))
	}
	if c.TURNRelayIP != "" {
		if ip, err := netip.ParseAddr(c.TURNRelayIP); err != nil || ip.IsUnspecified() || ip.Zone() != "" {
			errs = append(errs, fmt.Errorf("turn_relay_ip: %q is not an IP address", c.TURNRelayIP))
		}
	}
	if _, _, err := turn.ParsePortRange(c.TURNRelayPorts); err != nil {
		errs = append(errs, fmt.Errorf("turn_relay_ports: %w", err))
	}
	if _, err := turn.ParseAllowedPeers(c.TURNAllowedPeers); err != nil {
		errs = append(errs, fmt.Errorf("turn_allowed_peers: %w", err))
	}
	if c.TURNUserQuota < 0 || c.TURNTotalQuota < 0 {
		errs = append(errs, errors.New("turn_user_quota, turn_total_quota: must not be negative"))
	}
	return errs
}

// TURNTLSFiles returns the certificate and key files of TURN over TLS:
// turn_cert_file and turn_key_file, else tls_cert and tls_key.
func (c Config) TURNTLSFiles() (certFile, keyFile string) {
	if c.TURNCertFile != "" {
		return c.TURNCertFile, c.TURNKeyFile
	}
	return c.TLSCert, c.TLSKey
}

// validNATSPrefix reports whether p can start NATS subject, stream and
// bucket names: the rule of the NATS broker's Options.Prefix.
func validNATSPrefix(p string) bool {
	if p == "" {
		return false
	}
	for _, tok := range strings.Split(p, ".") {
		if tok == "" {
			return false
		}
		for _, r := range tok {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
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
