package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/consumer/postgres"
	"github.com/switchboardhq/switchboard/internal/origin"
	"github.com/switchboardhq/switchboard/internal/proxy"
	"github.com/switchboardhq/switchboard/internal/realip"
	"github.com/switchboardhq/switchboard/internal/turn"
)

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
	if c.MemoryReleaseInterval < 0 {
		errs = append(errs, fmt.Errorf("memory_release_interval: must not be negative (0 turns it off), got %s", c.MemoryReleaseInterval))
	}
	if c.CommandRate < 0 || c.CommandBurst < 0 || c.MaxConnections < 0 || c.MaxConnectionsPerIP < 0 || c.JWTMaxSize <= 0 {
		errs = append(errs, errors.New("command_rate, command_burst, max_connections, max_connections_per_ip must not be negative, jwt_max_size must be positive"))
	}
	errs = append(errs, c.validateConsumers()...)
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
	errs = append(errs, c.validateProxy()...)
	errs = append(errs, c.validateWebhook()...)
	errs = append(errs, c.validateStreams()...)
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

// validateProxy checks the proxy_* keys and the namespaces' endpoints.
func (c Config) validateProxy() []error {
	var errs []error
	for key, u := range map[string]string{
		"proxy_connect_endpoint": c.ProxyConnectEndpoint, "proxy_refresh_endpoint": c.ProxyRefreshEndpoint,
		"proxy_subscribe_endpoint": c.ProxySubscribeEndpoint, "proxy_publish_endpoint": c.ProxyPublishEndpoint,
		"proxy_rpc_endpoint": c.ProxyRPCEndpoint,
	} {
		if u != "" {
			if err := proxy.CheckEndpoint(u); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", key, err))
			}
		}
	}
	for _, ns := range c.Namespaces {
		for key, u := range map[string]string{
			"proxy_subscribe_endpoint": ns.ProxySubscribe, "proxy_publish_endpoint": ns.ProxyPublish, "proxy_rpc_endpoint": ns.ProxyRPC,
		} {
			if u != "" && u != auth.ProxyOff {
				if err := proxy.CheckEndpoint(u); err != nil {
					errs = append(errs, fmt.Errorf("namespace %q: %s: %w (or \"off\")", ns.Name, key, err))
				}
			}
		}
	}
	if c.ProxyRefreshEndpoint != "" && c.ProxyConnectEndpoint == "" {
		errs = append(errs, errors.New("proxy_refresh_endpoint: needs proxy_connect_endpoint (it extends what the connect hook granted)"))
	}
	if c.ProxyTimeout <= 0 {
		errs = append(errs, fmt.Errorf("proxy_timeout: must be positive, got %s", c.ProxyTimeout))
	}
	if c.ProxyMaxConcurrency <= 0 {
		errs = append(errs, fmt.Errorf("proxy_max_concurrency: must be positive, got %d", c.ProxyMaxConcurrency))
	}
	for _, h := range c.ProxyPassHeaders {
		if err := proxy.CheckPassHeader(h); err != nil {
			errs = append(errs, fmt.Errorf("proxy_pass_headers: %w", err))
		}
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) }) // maps have no order
	return errs
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

// validateWebhook checks the webhook_* keys and the namespaces' event
// lists.
func (c Config) validateWebhook() []error {
	var errs []error
	if c.WebhookEndpoint != "" {
		if u, err := url.Parse(c.WebhookEndpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("webhook_endpoint: %q is not an http:// or https:// URL", c.WebhookEndpoint))
		}
	}
	check := func(key string, events []string) {
		for _, e := range events {
			if !slices.Contains(WebhookEventTypes, e) && e != "none" {
				errs = append(errs, fmt.Errorf("%s: %q is not an event type (%s) or none", key, e, strings.Join(WebhookEventTypes, ", ")))
			}
		}
	}
	check("webhook_events", c.WebhookEvents)
	for _, ns := range c.Namespaces {
		check("namespaces: "+ns.Name+": webhook_events", ns.WebhookEvents)
	}
	for k, v := range map[string]time.Duration{"webhook_timeout": c.WebhookTimeout, "webhook_backoff_min": c.WebhookBackoffMin, "webhook_lease_ttl": c.WebhookLeaseTTL} {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive, got %s", k, v))
		}
	}
	if c.WebhookBackoffMax < c.WebhookBackoffMin {
		errs = append(errs, fmt.Errorf("webhook_backoff_max: must be at least webhook_backoff_min (%s), got %s", c.WebhookBackoffMin, c.WebhookBackoffMax))
	}
	if c.WebhookBatchSize <= 0 || c.WebhookPartitions <= 0 || c.WebhookPartitions > 1024 {
		errs = append(errs, fmt.Errorf("webhook_batch_size: must be positive, webhook_partitions from 1 to 1024; got %d and %d", c.WebhookBatchSize, c.WebhookPartitions))
	}
	return errs
}

// validateConsumers checks the async consumers' keys.
func (c Config) validateConsumers() []error {
	var errs []error
	if c.PostgresDSN != "" {
		if err := postgres.CheckDSN(c.PostgresDSN); err != nil {
			errs = append(errs, fmt.Errorf("consumer_postgres_dsn: %w", err))
		}
		if err := postgres.CheckTable(c.PostgresTable); err != nil {
			errs = append(errs, fmt.Errorf("consumer_postgres_table: %w", err))
		}
		if c.PostgresPollInterval <= 0 || c.PostgresBatchSize <= 0 {
			errs = append(errs, fmt.Errorf("consumer_postgres_poll_interval, consumer_postgres_batch_size: must be positive, got %s and %d", c.PostgresPollInterval, c.PostgresBatchSize))
		}
		if c.PostgresPartitions < 1 || c.PostgresPartitions > 1024 {
			errs = append(errs, fmt.Errorf("consumer_postgres_partitions: must be 1 to 1024, got %d", c.PostgresPartitions))
		}
	}
	if (len(c.KafkaBrokers) == 0) != (len(c.KafkaTopics) == 0) {
		errs = append(errs, errors.New("consumer_kafka_brokers, consumer_kafka_topics: give both or neither"))
	}
	if len(c.KafkaBrokers) > 0 && c.KafkaGroup == "" {
		errs = append(errs, errors.New("consumer_kafka_group: must not be empty"))
	}
	return errs
}
