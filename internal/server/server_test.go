package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/server"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

const testKey = "test-api-key"

// testServer is a node listening on a free loopback port.
type testServer struct {
	*server.Server
	t      *testing.T
	cancel context.CancelFunc
	done   chan error
}

// start runs a node with the default configuration, changed by mutate.
func start(t *testing.T, mutate func(*config.Config)) *testServer {
	t.Helper()
	return startLogged(t, slog.New(slog.NewTextHandler(io.Discard, nil)), mutate)
}

// startLogged is start with the node's logs going to log.
func startLogged(t *testing.T, log *slog.Logger, mutate func(*config.Config)) *testServer {
	t.Helper()
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.APIKey = []string{testKey}
	cfg.ShutdownTimeout = 5 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := server.New(cfg, log, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{Server: srv, t: t, cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- srv.Run(ctx) }()
	t.Cleanup(func() { ts.Stop() })
	return ts
}

// Stop shuts the node down and returns Run's error.
func (ts *testServer) Stop() error {
	ts.cancel()
	select {
	case err := <-ts.done:
		ts.done <- err // keep it for a second Stop
		return err
	case <-time.After(15 * time.Second):
		ts.t.Fatal("server did not stop")
		return nil
	}
}

func (ts *testServer) wsURL() string { return "ws://" + ts.Addr() + "/ws" }

func (ts *testServer) dial() *wstest.Client { return wstest.Dial(ts.t, ts.wsURL()) }

// api calls the server API and returns the status and the decoded body.
func (ts *testServer) api(method, path, key string, body string) (int, map[string]any) {
	ts.t.Helper()
	return ts.apiURL("http://"+ts.Addr(), method, path, key, body)
}

// apiURL calls the server API at base.
func (ts *testServer) apiURL(base, method, path, key string, body string) (int, map[string]any) {
	ts.t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		ts.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "apikey "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			ts.t.Fatalf("API %s %s answered non-JSON %q", method, path, raw)
		}
	}
	return resp.StatusCode, m
}

func (ts *testServer) publish(channel string, data any) float64 {
	ts.t.Helper()
	b, _ := json.Marshal(map[string]any{"channel": channel, "data": data})
	status, m := ts.api("POST", "/api/publish", testKey, string(b))
	if status != 200 {
		ts.t.Fatalf("publish: %d %v", status, m)
	}
	return m["result"].(map[string]any)["offset"].(float64)
}

// errorCode extracts error.code from a reply or API answer.
func errorCode(m map[string]any) int {
	e, _ := m["error"].(map[string]any)
	if e == nil {
		return 0
	}
	c, _ := e["code"].(float64)
	return int(c)
}

// expectPub asserts that m is a publication on channel with the given offset.
func expectPub(t *testing.T, m map[string]any, channel string, offset float64) {
	t.Helper()
	if m["channel"] != channel || m["offset"] != offset {
		t.Fatalf("want publication %s@%v, got %v", channel, offset, m)
	}
}

// metric returns the value of an unlabelled metric from /metrics.
func (ts *testServer) metric(name string) float64 {
	ts.t.Helper()
	resp, err := http.Get("http://" + ts.Addr() + "/metrics")
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				ts.t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	ts.t.Fatalf("metric %s not found", name)
	return 0
}

// newServer builds (without starting) a node from cfg, and shuts it down
// when the test ends.
func newServer(t *testing.T, cfg config.Config) (*server.Server, error) {
	return newServerLogged(t, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// apiAt calls the server API of the node at addr.
func apiAt(t *testing.T, addr, method, path, body string) (int, map[string]any) {
	t.Helper()
	ts := &testServer{t: t}
	return ts.apiURL("http://"+addr, method, path, testKey, body)
}

func osMkdirTemp() (string, error) { return os.MkdirTemp("", "switchboard-test-") }
