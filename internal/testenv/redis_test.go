package testenv_test

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/testenv"
)

// do sends one inline command and returns the reply's first line, or the
// value of a bulk string reply.
func do(t *testing.T, addr, cmd string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte(cmd + "\r\n")); err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(conn)
	line, err := rd.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	line = strings.TrimSpace(line)
	if strings.HasPrefix(line, "$") && line != "$-1" {
		if line, err = rd.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		line = strings.TrimSpace(line)
	}
	return line
}

func TestRedisRestart(t *testing.T) {
	tests := []struct {
		name    string
		opts    testenv.RedisOptions
		crash   bool // Kill before Restart
		wantGet string
	}{
		{"aof kept after kill", testenv.RedisOptions{AOF: true}, true, "v"},
		{"aof kept after stop", testenv.RedisOptions{AOF: true}, false, "v"},
		{"no persistence lost", testenv.RedisOptions{}, true, "$-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := testenv.StartRedis(t, tc.opts)
			if !strings.HasPrefix(r.URL(), "redis://127.0.0.1:") || !strings.HasSuffix(r.URL(), "/0") {
				t.Fatalf("URL %q", r.URL())
			}
			addr := r.Addr()
			if got := do(t, addr, "SET k v"); got != "+OK" {
				t.Fatalf("SET: %s", got)
			}
			if tc.crash {
				r.Kill()
				if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
					t.Fatal("server still accepts connections after Kill")
				}
			}
			r.Restart(t)
			if r.Addr() != addr {
				t.Fatalf("restarted on %s, want %s", r.Addr(), addr)
			}
			if got := do(t, addr, "GET k"); got != tc.wantGet {
				t.Fatalf("GET after restart: %s, want %s", got, tc.wantGet)
			}
		})
	}
}

func TestRedisStop(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	r.Stop()
	r.Stop() // idempotent
	if _, err := net.DialTimeout("tcp", r.Addr(), time.Second); err == nil {
		t.Fatal("server still accepts connections after Stop")
	}
}

func TestRedisSentinel(t *testing.T) {
	primary := testenv.StartRedis(t, testenv.RedisOptions{})
	s := testenv.StartRedisSentinel(t, primary, "main")
	if want := "redis://" + s.Addr() + "/0?master_set=main"; s.URL() != want {
		t.Fatalf("URL %q, want %q", s.URL(), want)
	}
	// The first line of the array reply [host, port].
	if got := do(t, s.Addr(), "SENTINEL get-master-addr-by-name main"); got != "*2" {
		t.Fatalf("sentinel does not know the primary: %s", got)
	}
	s.Restart(t)
	if got := do(t, s.Addr(), "SENTINEL get-master-addr-by-name main"); got != "*2" {
		t.Fatalf("restarted sentinel does not know the primary: %s", got)
	}
}
