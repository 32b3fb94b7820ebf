package server_test

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/client"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// switchboardBinary builds the server binary once per test run.
func switchboardBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := osMkdirTemp()
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "switchboard")
		out, err := exec.Command("go", "build", "-o", binPath, "../../cmd/switchboard").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// process is a node running as its own process.
type process struct {
	cmd  *exec.Cmd
	addr string
}

var addrRe = regexp.MustCompile(`"addr":"http://([^"]+)"`)

func startProcess(t *testing.T, args ...string) *process {
	t.Helper()
	cmd := exec.Command(switchboardBinary(t), append([]string{"serve", "--addr", "127.0.0.1:0", "--api-key", testKey, "--log-format", "json"}, args...)...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := addrRe.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case a := <-addr:
		return &process{cmd: cmd, addr: a}
	case <-time.After(20 * time.Second):
		t.Fatal("node did not start")
		return nil
	}
}

// TestNodeKilled: a node dies with SIGKILL; its clients reconnect to
// another node and recover with nothing lost, and its presence entries
// expire.
func TestNodeKilled(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			url, _ := be.fresh(t, true)
			args := []string{"--broker", url, "--presence-ttl", "2s", "--history-size", "10000", "--history-ttl", "1h"}
			victim := startProcess(t, args...)
			survivor := startProcess(t, args...)
			api := func(method, path, body string) (int, map[string]any) {
				return apiAt(t, survivor.addr, method, path, body)
			}

			// The client SDK dials the victim first, then the survivor.
			var mu sync.Mutex
			var got []client.Publication
			var gaps []client.Gap
			c := client.New("", client.Options{
				Backoff: client.Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond},
				Endpoint: func(_ context.Context, attempt int) (string, error) {
					if attempt == 0 {
						return "ws://" + victim.addr + "/ws", nil
					}
					return "ws://" + survivor.addr + "/ws", nil
				},
			})
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := c.Connect(ctx); err != nil {
				t.Fatal(err)
			}
			_, err := c.Subscribe(ctx, "k", client.SubscribeOptions{
				OnPublication: func(p client.Publication) { mu.Lock(); got = append(got, p); mu.Unlock() },
				OnGap:         func(g client.Gap) { mu.Lock(); gaps = append(gaps, g); mu.Unlock() },
			})
			if err != nil {
				t.Fatal(err)
			}
			received := func(n int) func() bool {
				return func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= n }
			}
			for i := 0; i < 20; i++ {
				apiAt(t, survivor.addr, "POST", "/api/publish", `{"channel":"k","data":1}`)
			}
			waitFor(t, "20 publications on the victim", received(20))
			waitFor(t, "the victim's client in presence", func() bool {
				_, m := api("POST", "/api/presence_stats", `{"channel":"k"}`)
				return m["result"].(map[string]any)["num_clients"] == 1.0
			})
			if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			// Publications go on while the client moves to the survivor.
			for i := 0; i < 10; i++ {
				apiAt(t, survivor.addr, "POST", "/api/publish", `{"channel":"k","data":2}`)
			}
			waitFor(t, "the 10 publications made while the client moved", received(30))
			mu.Lock()
			for i, p := range got {
				if p.Offset != got[0].Offset+uint64(i) || i >= 20 && string(p.Data) != "2" {
					t.Fatalf("publication %d: %+v", i, p)
				}
			}
			if len(got) != 30 || len(gaps) != 0 {
				t.Fatalf("%d publications, gaps %v", len(got), gaps)
			}
			mu.Unlock()
			if u := c.Info().URL; u != "ws://"+survivor.addr+"/ws" {
				t.Fatalf("client on %s, not on the survivor", u)
			}
			// The dead node's presence entry expires; the survivor's stays.
			waitFor(t, "the dead node's presence to expire", func() bool {
				_, m := api("POST", "/api/presence", `{"channel":"k"}`)
				res := m["result"].(map[string]any)
				return res["num_clients"] == 1.0 && res["clients"].([]any)[0].(map[string]any)["client"] != nil
			})
			time.Sleep(3 * time.Second) // longer than the ttl: live entries are refreshed
			_, m := api("POST", "/api/presence_stats", `{"channel":"k"}`)
			if m["result"].(map[string]any)["num_clients"] != 1.0 {
				t.Fatalf("live client dropped from presence: %v", m)
			}
		})
	}
}
