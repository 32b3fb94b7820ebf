package server_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/selftest"
)

// selfTest calls GET /api/webrtc/selftest and returns the report.
func selfTest(t *testing.T, ts *testServer) selftest.Report {
	t.Helper()
	code, body := ts.api("GET", "/api/webrtc/selftest", testKey, "")
	if code != 200 {
		t.Fatalf("selftest: %d %v", code, body)
	}
	raw, _ := json.Marshal(body["result"])
	var r selftest.Report
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// status returns the status and message of the check named.
func status(r selftest.Report, name string) (string, string) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c.Status, c.Message
		}
	}
	return "", ""
}

// TestSelfTest runs the calls' self-test through the server API: with
// TURN on and loopback allowed, direct and relayed calls both work; with
// TURN off the relay check is skipped and says why; with the media port
// unreachable the direct call fails and says so; with TURN refusing
// loopback peers the relayed call fails and says what to change.
func TestSelfTest(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*config.Config)
		want   map[string]string // check -> status
		says   map[string]string // check -> words in its message
		ok     bool
	}{
		{"turn on", func(c *config.Config) {
			c.TURNAddr = "127.0.0.1:0"
			c.TURNAllowedPeers = []string{"127.0.0.0/8"}
		}, map[string]string{"signaling": "ok", "direct": "ok", "turn": "ok", "relay": "ok", "public address": "warning"},
			map[string]string{"relay": "relay", "public address": "only loopback"}, true},
		{"turn off", nil,
			map[string]string{"direct": "ok", "turn": "warning", "relay": "skipped"},
			map[string]string{"turn": "TURN is off"}, true},
		// The SFU announces an address where nothing listens (its socket is
		// on 127.0.0.1): as if a firewall dropped the UDP port.
		{"media port unreachable", func(c *config.Config) {
			c.WebRTCPublicIP = []string{"127.0.0.3"}
		}, map[string]string{"signaling": "ok", "direct": "failed"},
			map[string]string{"direct": "UDP port is blocked"}, false},
		{"turn refuses loopback", func(c *config.Config) {
			c.TURNAddr = "127.0.0.1:0"
		}, map[string]string{"direct": "ok", "turn": "ok", "relay": "failed"},
			map[string]string{"relay": "turn_allowed_peers"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // the failing cases wait out the self-test's timeouts
			calls := withCalls(t)
			ts := start(t, func(c *config.Config) {
				calls(c)
				if tc.mutate != nil {
					tc.mutate(c)
				}
			})
			r := selfTest(t, ts)
			for name, want := range tc.want {
				if got, msg := status(r, name); got != want {
					t.Errorf("%s: %s (%s), want %s", name, got, msg, want)
				}
			}
			for name, words := range tc.says {
				if _, msg := status(r, name); !strings.Contains(msg, words) {
					t.Errorf("%s says %q, want it to mention %q", name, msg, words)
				}
			}
			if r.OK != tc.ok {
				t.Errorf("ok = %v, want %v", r.OK, tc.ok)
			}
			if t.Failed() {
				t.Logf("report:\n%s", r)
			}
		})
	}
}

// TestSelfTestCallsOff: without calls the endpoint says so.
func TestSelfTestCallsOff(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.WebRTC = false })
	code, body := ts.api("GET", "/api/webrtc/selftest", testKey, "")
	if code != 503 || !strings.Contains(body["error"].(map[string]any)["message"].(string), "not enabled") {
		t.Fatalf("%d %v", code, body)
	}
}
