package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/switchboardhq/switchboard/internal/config"
)

func load(t *testing.T, args []string, env []string) (config.Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	config.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return config.Load(fs, env)
}

func TestDefaults(t *testing.T) {
	c := config.Default()
	if c.Addr != "127.0.0.1:8000" || c.Broker != "memory" || !c.AllowAnonymous || len(c.APIKey) != 0 ||
		c.PingInterval != 25*time.Second || c.MaxMessageSize != 65536 || !c.Demo || c.IdempotencyWindow != 5*time.Minute {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sb.yaml")
	yaml := "addr: 0.0.0.0:9000\nmax_message_size: 100\nhistory_ttl: 1m\napi_key: [a, b]\nlog_level: warn\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		env   []string
		check func(c config.Config) bool
	}{
		{"file", []string{"--config", file}, nil, func(c config.Config) bool {
			return c.Addr == "0.0.0.0:9000" && c.MaxMessageSize == 100 && c.HistoryTTL == time.Minute &&
				strings.Join(c.APIKey, ",") == "a,b" && c.LogLevel == "warn" && c.PingInterval == 25*time.Second
		}},
		{"file from env", nil, []string{"SWITCHBOARD_CONFIG=" + file}, func(c config.Config) bool { return c.Addr == "0.0.0.0:9000" }},
		{"env over file", []string{"--config", file}, []string{"SWITCHBOARD_ADDR=1.2.3.4:1", "SWITCHBOARD_API_KEY=x, y", "SWITCHBOARD_HISTORY_TTL=2h", "OTHER_ADDR=no"},
			func(c config.Config) bool {
				return c.Addr == "1.2.3.4:1" && strings.Join(c.APIKey, ",") == "x,y" && c.HistoryTTL == 2*time.Hour && c.MaxMessageSize == 100
			}},
		{"flag over env", []string{"--config", file, "--addr", "5.6.7.8:2", "--allow-anonymous=false"}, []string{"SWITCHBOARD_ADDR=1.2.3.4:1", "SWITCHBOARD_ALLOW_ANONYMOUS=true"},
			func(c config.Config) bool { return c.Addr == "5.6.7.8:2" && !c.AllowAnonymous }},
		{"env bool and int", nil, []string{"SWITCHBOARD_CLIENT_PUBLISH=false", "SWITCHBOARD_QUEUE_MAX_MESSAGES=7"},
			func(c config.Config) bool { return !c.ClientPublish && c.QueueMaxMessages == 7 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := load(t, tc.args, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Fatalf("unexpected config %+v", c)
			}
		})
	}
}

// TestNATSAndProxyKeys: the nats_* and trusted_proxies keys come from
// flags, the environment and the file like every other key.
func TestNATSAndProxyKeys(t *testing.T) {
	file := filepath.Join(t.TempDir(), "sb.yaml")
	yaml := "broker: nats://10.0.0.20:4222\nnats_replicas: 3\nnats_storage: memory\nnats_prefix: app.eu-1\n" +
		"nats_history_max_age: 48h\ntrusted_proxies: [10.0.0.0/8, \"::1\"]\n" +
		"namespaces:\n  - name: chat\n    history_size: 500\n    history_ttl: 36h\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	proxyFile := filepath.Join(t.TempDir(), "proxy.yaml")
	proxyYAML := "proxy_connect_endpoint: http://127.0.0.1:3000/connect\nproxy_timeout: 500ms\n" +
		"namespaces:\n  - name: chat\n    proxy_subscribe_endpoint: \"off\"\n    proxy_rpc_endpoint: http://127.0.0.1:3000/chat-rpc\n"
	if err := os.WriteFile(proxyFile, []byte(proxyYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		args  []string
		env   []string
		check func(c config.Config) bool
	}{
		{"defaults", nil, nil, func(c config.Config) bool {
			return c.NATSReplicas == 1 && c.NATSStorage == "file" && c.NATSPrefix == "switchboard" &&
				c.NATSHistoryMaxAge == 24*time.Hour && len(c.TrustedProxies) == 0
		}},
		{"file", []string{"--config", file}, nil, func(c config.Config) bool {
			size, ttl := c.LargestHistory()
			return c.NATSReplicas == 3 && c.NATSStorage == "memory" && c.NATSPrefix == "app.eu-1" &&
				c.NATSHistoryMaxAge == 48*time.Hour && strings.Join(c.TrustedProxies, " ") == "10.0.0.0/8 ::1" &&
				size == 500 && ttl == 36*time.Hour
		}},
		{"env", nil, []string{"SWITCHBOARD_NATS_REPLICAS=5", "SWITCHBOARD_NATS_STORAGE=memory", "SWITCHBOARD_NATS_HISTORY_MAX_AGE=0",
			"SWITCHBOARD_TRUSTED_PROXIES=127.0.0.1, 192.168.0.0/16"}, func(c config.Config) bool {
			return c.NATSReplicas == 5 && c.NATSStorage == "memory" && c.NATSHistoryMaxAge == 0 &&
				strings.Join(c.TrustedProxies, " ") == "127.0.0.1 192.168.0.0/16"
		}},
		{"flags", []string{"--nats-replicas", "3", "--nats-prefix", "x_y", "--trusted-proxies", "10.1.2.3", "--trusted-proxies", "fd00::/8"}, nil,
			func(c config.Config) bool {
				return c.NATSReplicas == 3 && c.NATSPrefix == "x_y" && strings.Join(c.TrustedProxies, " ") == "10.1.2.3 fd00::/8"
			}},
		// The age check applies only to NATS: the default age does not
		// refuse a long history_ttl with another broker.
		{"long ttl without nats", []string{"--history-ttl", "72h"}, nil, func(c config.Config) bool { return c.HistoryTTL == 72*time.Hour }},
		{"proxy keys", []string{"--config", proxyFile}, []string{"SWITCHBOARD_PROXY_PASS_HEADERS=Cookie, X-Tenant"}, func(c config.Config) bool {
			return c.ProxyConnectEndpoint == "http://127.0.0.1:3000/connect" && c.ProxyTimeout == 500*time.Millisecond &&
				strings.Join(c.ProxyPassHeaders, " ") == "Cookie X-Tenant" && len(c.Namespaces) == 1 &&
				c.Namespaces[0].ProxySubscribe == "off" && c.Namespaces[0].ProxyRPC == "http://127.0.0.1:3000/chat-rpc"
		}},
		{"proxy defaults", nil, nil, func(c config.Config) bool {
			return c.ProxyConnectEndpoint == "" && c.ProxyTimeout == 3*time.Second && c.ProxyMaxConcurrency == 256 &&
				strings.Join(c.ProxyPassHeaders, " ") == "Cookie Authorization Origin User-Agent Accept-Language"
		}},
		{"no age limit with nats", []string{"--broker", "nats://n:4222", "--history-ttl", "72h", "--nats-history-max-age", "0"}, nil,
			func(c config.Config) bool { return c.NATSHistoryMaxAge == 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := load(t, tc.args, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Fatalf("unexpected config %+v", c)
			}
		})
	}
}

func TestInvalid(t *testing.T) {
	dir := t.TempDir()
	unknown := filepath.Join(dir, "u.yaml")
	_ = os.WriteFile(unknown, []byte("adr: typo\n"), 0o600)
	nsHooks := filepath.Join(dir, "nshooks.yaml")
	_ = os.WriteFile(nsHooks, []byte("namespaces:\n  - name: chat\n    webhook_events: [member.joined]\n"), 0o600)
	nsBad := filepath.Join(dir, "ns.yaml")
	_ = os.WriteFile(nsBad, []byte("namespaces:\n  - name: chat\n    proxy_publish_endpoint: nope\n"), 0o600)
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"unknown broker", []string{"--broker", "kafka"}, nil, "broker"},
		{"negative size", nil, []string{"SWITCHBOARD_MAX_MESSAGE_SIZE=-1"}, "max_message_size"},
		{"not a number", nil, []string{"SWITCHBOARD_MAX_MESSAGE_SIZE=lots"}, "max_message_size"},
		{"bad duration", nil, []string{"SWITCHBOARD_PING_INTERVAL=soon"}, "ping_interval"},
		{"idle below ping", []string{"--idle-timeout", "10s", "--ping-interval", "20s"}, nil, "idle_timeout"},
		{"log level", []string{"--log-level", "loud"}, nil, "log_level"},
		{"missing file", []string{"--config", filepath.Join(dir, "none.yaml")}, nil, "none.yaml"},
		{"unknown file key", []string{"--config", unknown}, nil, `unknown key "adr"`},
		{"tls cert without key", []string{"--tls-cert", "cert.pem"}, nil, "tls_cert, tls_key"},
		{"tls key without cert", nil, []string{"SWITCHBOARD_TLS_KEY=key.pem"}, "tls_cert, tls_key"},
		{"trusted proxy host name", []string{"--trusted-proxies", "10.0.0.1,nginx.local"}, nil, `trusted_proxies: realip: "nginx.local"`},
		{"trusted proxy bad prefix", nil, []string{"SWITCHBOARD_TRUSTED_PROXIES=10.0.0.0/40"}, "trusted_proxies"},
		{"trusted proxy empty entry", nil, []string{"SWITCHBOARD_TRUSTED_PROXIES=10.0.0.1,"}, "trusted_proxies"},
		{"nats replicas zero", []string{"--nats-replicas", "0"}, nil, "nats_replicas: must be from 1 to 5"},
		{"nats replicas six", nil, []string{"SWITCHBOARD_NATS_REPLICAS=6"}, "nats_replicas"},
		{"nats storage", []string{"--nats-storage", "disk"}, nil, `nats_storage: "disk"`},
		{"nats prefix wildcard", []string{"--nats-prefix", "sb.*"}, nil, "nats_prefix"},
		{"nats prefix empty token", []string{"--nats-prefix", "a..b"}, nil, "nats_prefix"},
		{"idempotency window zero", []string{"--idempotency-window", "0s"}, nil, "idempotency_window: must be from 1s to 24h0m0s"},
		{"idempotency window over a day", nil, []string{"SWITCHBOARD_IDEMPOTENCY_WINDOW=25h"}, "idempotency_window"},
		{"nats max age negative", []string{"--nats-history-max-age", "-1h"}, nil, "nats_history_max_age: must not be negative"},
		{"turn addr without port", []string{"--turn-addr", "0.0.0.0"}, nil, `turn_addr: "0.0.0.0" is not host:port`},
		{"turn tls without files", []string{"--turn-addr", ":3478", "--turn-tls-addr", ":5349"}, nil, "turn_tls_addr: needs turn_cert_file"},
		{"turn tls without turn", []string{"--turn-tls-addr", ":5349", "--tls-cert", "c", "--tls-key", "k"}, nil, "turn_tls_addr: needs turn_addr"},
		{"turn short secret", nil, []string{"SWITCHBOARD_TURN_SECRET=short"}, "turn_secret: must be at least 16 bytes"},
		{"turn ttl too long", []string{"--turn-ttl", "48h"}, nil, "turn_ttl: must be from 1m to 24h"},
		{"turn relay ip", []string{"--turn-relay-ip", "relay.example.com"}, nil, "turn_relay_ip"},
		{"turn relay ports", []string{"--turn-relay-ports", "60000-50000"}, nil, "turn_relay_ports"},
		{"turn allowed peers", nil, []string{"SWITCHBOARD_TURN_ALLOWED_PEERS=127.0.0.0/8,localhost"}, `turn_allowed_peers: turn: allowed peers: "localhost"`},
		{"turn quota", []string{"--turn-user-quota", "-1"}, nil, "turn_user_quota"},
		{"nats max age below ttl", []string{"--broker", "nats://127.0.0.1:4222", "--history-ttl", "2h", "--nats-history-max-age", "1h"}, nil,
			"nats_history_max_age: 1h0m0s is shorter than the longest history_ttl (2h0m0s)"},
		{"proxy endpoint not a URL", []string{"--proxy-rpc-endpoint", "backend:3000/rpc"}, nil, "proxy_rpc_endpoint"},
		{"proxy endpoint relative", nil, []string{"SWITCHBOARD_PROXY_CONNECT_ENDPOINT=/connect"}, "proxy_connect_endpoint"},
		{"proxy refresh without connect", []string{"--proxy-refresh-endpoint", "http://127.0.0.1:3000/r"}, nil, "proxy_refresh_endpoint: needs proxy_connect_endpoint"},
		{"proxy timeout zero", []string{"--proxy-timeout", "0s"}, nil, "proxy_timeout"},
		{"proxy concurrency zero", nil, []string{"SWITCHBOARD_PROXY_MAX_CONCURRENCY=0"}, "proxy_max_concurrency"},
		{"proxy pass Host", nil, []string{"SWITCHBOARD_PROXY_PASS_HEADERS=Cookie,Host"}, `proxy_pass_headers: proxy: header "Host"`},
		{"namespace proxy endpoint", []string{"--config", nsBad}, nil, `namespace "chat": proxy_publish_endpoint`},
		{"webhook endpoint not a URL", []string{"--webhook-endpoint", "backend:3000/events"}, nil, "webhook_endpoint"},
		{"webhook unknown event", nil, []string{"SWITCHBOARD_WEBHOOK_EVENTS=channel.occupied,channel.emptied"}, `webhook_events: "channel.emptied"`},
		{"namespace webhook event", []string{"--config", nsHooks}, nil, `namespaces: chat: webhook_events: "member.joined"`},
		{"webhook timeout zero", []string{"--webhook-timeout", "0s"}, nil, "webhook_timeout: must be positive"},
		{"webhook lease ttl negative", nil, []string{"SWITCHBOARD_WEBHOOK_LEASE_TTL=-1s"}, "webhook_lease_ttl"},
		{"webhook backoff max below min", []string{"--webhook-backoff-min", "2s", "--webhook-backoff-max", "1s"}, nil, "webhook_backoff_max"},
		{"webhook partitions", []string{"--webhook-partitions", "0"}, nil, "webhook_partitions"},
		{"webhook batch size", nil, []string{"SWITCHBOARD_WEBHOOK_BATCH_SIZE=-5"}, "webhook_batch_size"},
		{"outbox table quoted", []string{"--consumer-postgres-dsn", "postgres://db/app", "--consumer-postgres-table", `"Outbox"`}, nil, "consumer_postgres_table"},
		{"outbox partitions zero", nil, []string{"SWITCHBOARD_CONSUMER_POSTGRES_DSN=postgres://db/app", "SWITCHBOARD_CONSUMER_POSTGRES_PARTITIONS=0"}, "consumer_postgres_partitions: must be 1 to 1024"},
		{"outbox batch zero", []string{"--consumer-postgres-dsn", "postgres://db/app", "--consumer-postgres-batch-size", "0"}, nil, "consumer_postgres_batch_size"},
		{"kafka brokers without topics", []string{"--consumer-kafka-brokers", "kafka:9092"}, nil, "consumer_kafka_brokers, consumer_kafka_topics: give both or neither"},
		{"kafka topics without brokers", nil, []string{"SWITCHBOARD_CONSUMER_KAFKA_TOPICS=events"}, "consumer_kafka_brokers, consumer_kafka_topics"},
		{"node http url scheme", []string{"--node-http-url", "ws://a.example"}, nil, "node_http_url"},
		{"node http url query", nil, []string{"SWITCHBOARD_NODE_HTTP_URL=https://a.example/?x=1"}, "node_http_url"},
		{"node http url no host", nil, []string{"SWITCHBOARD_NODE_HTTP_URL=https:///x"}, "node_http_url"},
		{"kafka group empty", []string{"--consumer-kafka-brokers", "kafka:9092", "--consumer-kafka-topics", "events", "--consumer-kafka-group", ""}, nil, "consumer_kafka_group"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.args, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want mention of %q", err, tc.want)
			}
		})
	}
}

// TestConsumerKeys: the consumers are off by default, and their keys come
// from the environment with lists split at commas.
func TestConsumerKeys(t *testing.T) {
	c := config.Default()
	if c.PostgresDSN != "" || len(c.KafkaBrokers) != 0 || c.PostgresTable != "switchboard_outbox" || c.KafkaGroup != "switchboard" {
		t.Fatalf("defaults: %+v", c)
	}
	c, err := load(t, nil, []string{
		"SWITCHBOARD_CONSUMER_POSTGRES_DSN=postgres://app@db/app",
		"SWITCHBOARD_CONSUMER_POSTGRES_TABLE=app.outbox",
		"SWITCHBOARD_CONSUMER_KAFKA_BROKERS=k1:9092, k2:9092",
		"SWITCHBOARD_CONSUMER_KAFKA_TOPICS=events",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.PostgresDSN != "postgres://app@db/app" || c.PostgresTable != "app.outbox" || len(c.KafkaBrokers) != 2 || c.KafkaBrokers[1] != "k2:9092" || c.KafkaTopics[0] != "events" {
		t.Fatalf("loaded: %+v", c)
	}
}

// TestTURNKeys: TURN is off by default and its keys come from every
// source.
func TestTURNKeys(t *testing.T) {
	c, err := load(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.TURNAddr != "" || c.TURNTTL != time.Hour || c.TURNRealm != "switchboard" || c.TURNUserQuota != 32 ||
		c.TURNRelayPorts != "49152-65535" || len(c.TURNAllowedPeers) != 0 {
		t.Fatalf("defaults %+v", c)
	}
	c, err = load(t, []string{"--turn-addr", "127.0.0.1:3478", "--turn-user-quota", "3"},
		[]string{"SWITCHBOARD_TURN_ALLOWED_PEERS=127.0.0.0/8, 10.0.0.0/8", "SWITCHBOARD_TURN_SECRET=0123456789abcdef",
			"SWITCHBOARD_TLS_CERT=c.pem", "SWITCHBOARD_TLS_KEY=k.pem", "SWITCHBOARD_TURN_TLS_ADDR=:5349"})
	if err != nil {
		t.Fatal(err)
	}
	cert, key := c.TURNTLSFiles()
	if c.TURNAddr != "127.0.0.1:3478" || c.TURNUserQuota != 3 || strings.Join(c.TURNAllowedPeers, " ") != "127.0.0.0/8 10.0.0.0/8" ||
		cert != "c.pem" || key != "k.pem" {
		t.Fatalf("config %+v", c)
	}
}

// TestRegisterFlagsFor: a command with the flags of a few keys only still
// loads every key: its flags, then the environment, then the defaults.
func TestRegisterFlagsFor(t *testing.T) {
	fs := pflag.NewFlagSet("token", pflag.ContinueOnError)
	config.RegisterFlagsFor(fs, "jwt_secret", "allowed_hosts")
	if fs.Lookup("addr") != nil || fs.Lookup("jwt-secret") == nil || fs.Lookup("config") == nil {
		t.Fatal("wrong flags registered")
	}
	if err := fs.Parse([]string{"--jwt-secret", "s3cret-s3cret-s3cret", "--allowed-hosts", "a.example,*.b.example"}); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(fs, []string{"SWITCHBOARD_MAX_MESSAGE_SIZE=100", "SWITCHBOARD_JWT_SECRET=from-env-from-env"})
	if err != nil {
		t.Fatal(err)
	}
	if c.JWTSecret != "s3cret-s3cret-s3cret" || c.MaxMessageSize != 100 || c.Addr != "127.0.0.1:8000" ||
		c.PingInterval != 25*time.Second || strings.Join(c.AllowedHosts, " ") != "a.example *.b.example" {
		t.Fatalf("unexpected config %+v", c)
	}
}

// TestAllowedHostsKey: allowed_hosts comes from every source, and a
// malformed entry is refused, naming the key.
func TestAllowedHostsKey(t *testing.T) {
	c, err := load(t, nil, []string{"SWITCHBOARD_ALLOWED_HOSTS=realtime.example.com, *.example.org:8443"})
	if err != nil || strings.Join(c.AllowedHosts, " ") != "realtime.example.com *.example.org:8443" {
		t.Fatalf("env: %v %v", c.AllowedHosts, err)
	}
	if len(config.Default().AllowedHosts) != 0 {
		t.Fatal("allowed_hosts is not empty by default")
	}
	for _, bad := range []string{"https://realtime.example.com", "*example.com", "a b"} {
		_, err := load(t, []string{"--allowed-hosts", bad}, nil)
		if err == nil || !strings.Contains(err.Error(), "allowed_hosts") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestWebhookKeys: webhooks are off by default, send every event type,
// and take their keys from the file (namespaces included), the
// environment and flags.
func TestWebhookKeys(t *testing.T) {
	file := filepath.Join(t.TempDir(), "hooks.yaml")
	yaml := "webhook_endpoint: https://app.example.com/events\nwebhook_secret: s3cret\nwebhook_lease_ttl: 5s\n" +
		"namespaces:\n  - name: chat\n    webhook_events: [member.added, member.removed]\n  - name: quiet\n    webhook_events: [none]\n  - name: other\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := load(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.WebhookEndpoint != "" || len(c.WebhookEvents) != 6 || c.WebhookPartitions != 16 || c.WebhookTimeout != 10*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
	c, err = load(t, []string{"--config", file, "--webhook-batch-size", "7"}, []string{"SWITCHBOARD_WEBHOOK_EVENTS=channel.occupied,channel.vacated"})
	if err != nil {
		t.Fatal(err)
	}
	ns := map[string][]string{}
	for _, n := range c.Namespaces {
		ns[n.Name] = n.WebhookEvents
	}
	if c.WebhookEndpoint != "https://app.example.com/events" || c.WebhookSecret != "s3cret" || c.WebhookLeaseTTL != 5*time.Second ||
		c.WebhookBatchSize != 7 || strings.Join(c.WebhookEvents, ",") != "channel.occupied,channel.vacated" ||
		strings.Join(ns["chat"], ",") != "member.added,member.removed" || strings.Join(ns["quiet"], ",") != "none" || ns["other"] != nil {
		t.Fatalf("loaded: %+v, namespaces %v", c, ns)
	}
}

// TestStreamBaseURL: node_http_url wins; else node_url's host, with its
// WebSocket scheme turned into HTTP's; else none.
func TestStreamBaseURL(t *testing.T) {
	for name, c := range map[string]struct{ httpURL, wsURL, want string }{
		"node_http_url":            {"https://a.example/", "wss://b.example/ws", "https://a.example"},
		"node_http_url with path":  {"https://a.example/sb", "", "https://a.example/sb"},
		"derived from wss":         {"", "wss://b.example:8443/ws", "https://b.example:8443"},
		"derived from ws":          {"", "ws://127.0.0.1:8080/ws", "http://127.0.0.1:8080"},
		"node_url of other scheme": {"", "tcp://b.example", ""},
		"none":                     {"", "", ""},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := config.Default()
			cfg.NodeHTTPURL, cfg.NodeURL = c.httpURL, c.wsURL
			if got := cfg.StreamBaseURL(); got != c.want {
				t.Fatalf("StreamBaseURL() = %q, want %q", got, c.want)
			}
		})
	}
}
