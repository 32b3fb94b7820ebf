package server_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/ssetest"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

// dialFrom opens a WebSocket whose handshake carries xff as
// X-Forwarded-For, as nginx would send it.
func (ts *testServer) dialFrom(xff string) *wstest.Client {
	ts.t.Helper()
	c, err := wstest.DialErr(ts.t, ts.wsURL(), map[string]string{"X-Forwarded-For": xff})
	if err != nil {
		ts.t.Fatalf("dial with X-Forwarded-For %q: %v", xff, err)
	}
	return c
}

// TestTrustedProxies runs real connections from 127.0.0.1 with
// max_connections_per_ip 1. When 127.0.0.1 is a trusted proxy, clients
// count by their forwarded address on every transport; when it is not,
// the header is ignored and everyone counts as 127.0.0.1.
func TestTrustedProxies(t *testing.T) {
	ping := func() map[string]any { return map[string]any{"command": "ping"} }

	t.Run("trusted", func(t *testing.T) {
		ts := start(t, func(c *config.Config) {
			c.TrustedProxies = []string{"127.0.0.1"}
			c.MaxConnectionsPerIP = 1
		})
		a := ts.dialFrom("203.0.113.1")
		a.MustCall(ping())
		b := ts.dialFrom("203.0.113.2")
		b.MustCall(ping())
		// The client's own header is kept by nginx left of the address it
		// appends: that address counts, not the claimed one.
		for _, xff := range []string{"203.0.113.1", "198.51.100.50, 203.0.113.1"} {
			if code := ts.dialFrom(xff).ExpectClose(); code != 4007 {
				t.Fatalf("second connection from %q closed with %d, want 4007", xff, code)
			}
		}
		// The SSE transport sees the same address.
		sse := func(xff string) (*ssetest.Stream, error) {
			s, _, err := ssetest.OpenErr(t, nil, "http://"+ts.Addr()+"/sse?channel=p", http.Header{"X-Forwarded-For": {xff}})
			return s, err
		}
		if s, err := sse("203.0.113.2"); err == nil {
			s.Close()
			t.Fatal("an SSE stream from 203.0.113.2 was accepted beside its WebSocket")
		}
		s, err := sse("203.0.113.3")
		if err != nil {
			t.Fatalf("SSE stream from a new address: %v", err)
		}
		s.Next() // the connected event
		s.Close()
		a.MustCall(ping())
		b.MustCall(ping())
	})

	for name, proxies := range map[string][]string{
		"no trusted proxies":  nil,
		"peer is not trusted": {"10.0.0.0/8", "::1"},
	} {
		t.Run(name, func(t *testing.T) {
			ts := start(t, func(c *config.Config) {
				c.TrustedProxies = proxies
				c.MaxConnectionsPerIP = 1
			})
			a := ts.dialFrom("203.0.113.1")
			a.MustCall(ping())
			if code := ts.dialFrom("203.0.113.2").ExpectClose(); code != 4007 {
				t.Fatalf("second connection from 127.0.0.1 closed with %d, want 4007: X-Forwarded-For was believed", code)
			}
			a.MustCall(ping())
		})
	}
}

// eventuallyOK polls cond until it holds, failing the test after a
// generous bound (the machines are shared).
func eventuallyOK(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
