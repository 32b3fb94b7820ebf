package testenv_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/testenv"
)

// natsRequest sends one request over the plain NATS text protocol and
// returns the reply's payload.
func natsRequest(t *testing.T, addr, subject, body string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	rd := bufio.NewReader(conn)
	if line, err := rd.ReadString('\n'); err != nil || !strings.HasPrefix(line, "INFO ") {
		t.Fatalf("greeting %q: %v", line, err)
	}
	fmt.Fprintf(conn, "CONNECT {\"verbose\":false}\r\nSUB reply 1\r\nPUB %s reply %d\r\n%s\r\n", subject, len(body), body)
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("read reply to %s: %v", subject, err)
		}
		switch f := strings.Fields(line); {
		case len(f) == 1 && f[0] == "PING":
			fmt.Fprint(conn, "PONG\r\n")
		case len(f) == 4 && f[0] == "MSG":
			size, _ := strconv.Atoi(f[3])
			payload := make([]byte, size+2)
			if _, err := io.ReadFull(rd, payload); err != nil {
				t.Fatal(err)
			}
			return string(payload[:size])
		case len(f) > 0 && f[0] == "-ERR":
			t.Fatalf("server error: %s", line)
		}
	}
}

func TestNATSRestart(t *testing.T) {
	tests := []struct {
		name       string
		opts       testenv.NATSOptions
		crash      bool // Kill before Restart
		wantStream bool
	}{
		{"persist kept after kill", testenv.NATSOptions{Persist: true}, true, true},
		{"persist kept after stop", testenv.NATSOptions{Persist: true}, false, true},
		{"no persistence lost", testenv.NATSOptions{}, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := testenv.StartNATS(t, tc.opts)
			if !strings.HasPrefix(n.URL(), "nats://127.0.0.1:") {
				t.Fatalf("URL %q", n.URL())
			}
			addr := n.Addr()
			created := natsRequest(t, addr, "$JS.API.STREAM.CREATE.KEEP", `{"name":"KEEP","subjects":["keep.>"],"storage":"file"}`)
			if !strings.Contains(created, `"created"`) {
				t.Fatalf("create stream: %s", created)
			}
			if tc.crash {
				n.Kill()
				if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
					t.Fatal("server still accepts connections after Kill")
				}
			}
			n.Restart(t)
			if n.Addr() != addr {
				t.Fatalf("restarted on %s, want %s", n.Addr(), addr)
			}
			names := natsRequest(t, addr, "$JS.API.STREAM.NAMES", `{}`)
			if got := strings.Contains(names, `"KEEP"`); got != tc.wantStream {
				t.Fatalf("stream kept = %v, want %v: %s", got, tc.wantStream, names)
			}
		})
	}
}

func TestNATSStop(t *testing.T) {
	n := testenv.StartNATS(t, testenv.NATSOptions{})
	n.Stop()
	n.Stop() // idempotent
	if _, err := net.DialTimeout("tcp", n.Addr(), time.Second); err == nil {
		t.Fatal("server still accepts connections after Stop")
	}
}
