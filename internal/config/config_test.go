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
		c.PingInterval != 25*time.Second || c.MaxMessageSize != 65536 || !c.Demo {
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

func TestInvalid(t *testing.T) {
	dir := t.TempDir()
	unknown := filepath.Join(dir, "u.yaml")
	_ = os.WriteFile(unknown, []byte("adr: typo\n"), 0o600)
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
