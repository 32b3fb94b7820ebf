package server_test

import (
	"bufio"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/wstest"
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

			c := wstest.Dial(t, "ws://"+victim.addr+"/ws")
			res := c.Subscribe("k")
			epoch := res["epoch"]
			last := res["offset"].(float64)
			for i := 0; i < 20; i++ {
				apiAt(t, survivor.addr, "POST", "/api/publish", `{"channel":"k","data":1}`)
			}
			for i := 0; i < 20; i++ {
				m := c.Next()
				last = m["offset"].(float64)
			}
			waitFor(t, "the victim's client in presence", func() bool {
				_, m := api("POST", "/api/presence_stats", `{"channel":"k"}`)
				return m["result"].(map[string]any)["num_clients"] == 1.0
			})
			if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			// Publications go on while the client is away.
			for i := 0; i < 10; i++ {
				apiAt(t, survivor.addr, "POST", "/api/publish", `{"channel":"k","data":2}`)
			}
			if _, err := c.NextErr(5 * time.Second); err == nil {
				t.Fatal("the client of a killed node still receives")
			}
			d := wstest.Dial(t, "ws://"+survivor.addr+"/ws")
			r := d.MustCall(map[string]any{"command": "subscribe", "channel": "k", "since": map[string]any{"offset": last, "epoch": epoch}})
			pubs := anySlice(r["publications"])
			if r["recovered"] != true || len(pubs) != 10 || pubs[0].(map[string]any)["offset"] != last+1 {
				t.Fatalf("recovery on the survivor: %v", r)
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
