package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/server"
)

// TestDoctorWebRTC runs "doctor webrtc" against a node with calls and TURN
// on loopback: from the server's host (the API) and from here (WebSocket),
// the direct and relayed calls work; the node's loopback-only addresses
// are reported as a warning.
func TestDoctorWebRTC(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.APIKey = []string{"doctor-key"}
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.WebRTCLoopback = true
	cfg.WebRTCUDPPort = port
	cfg.TURNAddr = "127.0.0.1:0"
	cfg.TURNAllowedPeers = []string{"127.0.0.0/8"}
	srv, err := server.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	base := srv.URL() // before Run, which sets up the HTTP server
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	out, err := run(t, "doctor", "webrtc", "--url", base, "--api-key", "doctor-key")
	if err != nil {
		t.Fatalf("doctor webrtc: %v\n%s", err, out)
	}
	for _, want := range []string{"Calls, from the server's host:", "Calls, from this machine:", "calls work through this node"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && (f[1] == "direct" || f[1] == "relay" || f[1] == "turn") && f[0] != "ok" {
			t.Errorf("check not ok: %s", line)
		}
	}
	if !strings.Contains(out, "only loopback") {
		t.Errorf("no warning about loopback addresses:\n%s", out)
	}

	// Nothing listens there: the signaling check fails, and so does the
	// command.
	if _, err := run(t, "doctor", "webrtc", "--url", "http://127.0.0.1:1", "--timeout", "2s"); err == nil {
		t.Error("doctor webrtc against nothing did not fail")
	}
}
