package testenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// NATSOptions choose how a test NATS keeps its JetStream data.
type NATSOptions struct {
	// Persist keeps the JetStream file store across restarts, so a Restart,
	// even after Kill, finds every stream and message the server
	// acknowledged. Where the server supports it (2.10 and later) the store
	// is written with sync_interval: always, so each acknowledged write is on
	// disk; older servers leave writes in the page cache, which a killed
	// process does not lose either. Without Persist the store directory is
	// wiped at each Restart and the server comes back with no streams, as a
	// NATS that lost its data does.
	Persist bool
}

// NATS is a nats-server process with JetStream owned by one test. Its
// methods are safe for concurrent use.
type NATS struct {
	bin  string
	opts NATSOptions
	dir  string // configuration, log and ports file, kept across restarts

	mu   sync.Mutex
	port int           // client port, chosen at the first start, kept after
	cmd  *exec.Cmd     // nil while the server is not running
	done chan struct{} // closed when cmd has exited
}

// natsStartTimeout bounds the wait for a started server to be healthy. The
// machines tests run on are shared, so it is generous.
const natsStartTimeout = 30 * time.Second

// StartNATS starts nats-server with JetStream on a free loopback port, its
// store in a temporary directory, and waits until it reports itself healthy
// (JetStream included). The server is killed when the test ends. Without a
// nats-server on PATH the test is skipped, or failed in CI (see Binary).
func StartNATS(tb testing.TB, opts NATSOptions) *NATS {
	tb.Helper()
	n := &NATS{bin: Binary(tb, "nats-server"), opts: opts, dir: tb.TempDir()}
	tb.Cleanup(n.Kill)
	n.mu.Lock()
	defer n.mu.Unlock()
	// Port -1 lets the server pick a free port itself and report it in its
	// ports file, so no other process can take it between choice and bind.
	if err := n.startLocked(); err != nil {
		tb.Fatalf("testenv: start nats-server: %v", err)
	}
	return n
}

// Addr returns the server's client host:port.
func (n *NATS) Addr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port))
}

// URL returns the server's client address as a nats:// URL.
func (n *NATS) URL() string {
	return "nats://" + n.Addr()
}

// StoreDir returns the JetStream store directory.
func (n *NATS) StoreDir() string {
	return filepath.Join(n.dir, "jetstream")
}

// Kill ends the server with SIGKILL, as a crash would, and waits until it
// has exited. It does nothing when the server is not running.
func (n *NATS) Kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.signalLocked(syscall.SIGKILL, 0)
}

// Stop shuts the server down with SIGTERM and waits until it has exited
// (killing it after 10 seconds). It does nothing when the server is not
// running.
func (n *NATS) Stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.signalLocked(syscall.SIGTERM, 10*time.Second)
}

// Restart stops the server if it is running and starts it again on the same
// port, waiting until it is healthy. With Persist it comes back with its
// JetStream data; without, the store is wiped first and it comes back empty.
func (n *NATS) Restart(tb testing.TB) {
	tb.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	n.signalLocked(syscall.SIGTERM, 10*time.Second)
	if !n.opts.Persist {
		if err := os.RemoveAll(n.StoreDir()); err != nil {
			tb.Fatalf("testenv: wipe nats store: %v", err)
		}
	}
	if err := n.startLocked(); err != nil {
		tb.Fatalf("testenv: restart nats-server: %v", err)
	}
}

// startLocked writes the configuration, starts the server on n.port (a
// port of its choosing when n.port is 0) and waits until it is healthy.
// n.mu must be held.
func (n *NATS) startLocked() error {
	conf := filepath.Join(n.dir, "nats.conf")
	if err := os.WriteFile(conf, []byte(n.configLocked()), 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	cmd := exec.Command(n.bin, "-c", conf)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", n.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	n.cmd, n.done = cmd, done
	portsFile := filepath.Join(n.dir, fmt.Sprintf("%s_%d.ports", filepath.Base(n.bin), cmd.Process.Pid))
	deadline := time.Now().Add(natsStartTimeout)
	for {
		err := n.readyLocked(portsFile)
		if err == nil {
			return nil
		}
		select {
		case <-done:
			n.cmd, n.done = nil, nil
			return fmt.Errorf("nats-server exited at start: %s", n.logTail())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			n.signalLocked(syscall.SIGKILL, 0)
			return fmt.Errorf("nats-server not ready after %v: %w: %s", natsStartTimeout, err, n.logTail())
		}
	}
}

// configLocked renders the server configuration. n.mu must be held.
func (n *NATS) configLocked() string {
	port := n.port
	if port == 0 {
		port = -1
	}
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %q\n", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	fmt.Fprintf(&b, "http: %q\n", "127.0.0.1:-1")
	fmt.Fprintf(&b, "ports_file_dir: %q\n", n.dir)
	fmt.Fprintf(&b, "log_file: %q\n", filepath.Join(n.dir, "nats.log"))
	b.WriteString("jetstream {\n")
	fmt.Fprintf(&b, "  store_dir: %q\n", n.dir) // the server adds "jetstream"
	b.WriteString("  max_memory_store: 256MB\n  max_file_store: 1GB\n")
	if n.opts.Persist && syncIntervalSupported(n.bin, n.dir) {
		b.WriteString("  sync_interval: always\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// readyLocked checks that the server has written its ports file and that
// its health endpoint, which covers JetStream, answers OK. On the first
// start it learns the client port from the ports file. n.mu must be held.
func (n *NATS) readyLocked(portsFile string) error {
	raw, err := os.ReadFile(portsFile)
	if err != nil {
		return fmt.Errorf("ports file: %w", err)
	}
	var ports struct {
		Nats       []string `json:"nats"`
		Monitoring []string `json:"monitoring"`
	}
	if err := json.Unmarshal(raw, &ports); err != nil || len(ports.Nats) == 0 || len(ports.Monitoring) == 0 {
		return fmt.Errorf("ports file incomplete: %q", raw)
	}
	_, portStr, err := net.SplitHostPort(strings.TrimPrefix(ports.Nats[0], "nats://"))
	if err != nil {
		return fmt.Errorf("ports file: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("ports file: %w", err)
	}
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(ports.Monitoring[0] + "/healthz")
	if err != nil {
		return fmt.Errorf("healthz: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New("healthz answered " + resp.Status)
	}
	n.port = port
	return nil
}

// signalLocked sends sig to the running server and waits for it to exit,
// killing it when grace (if not zero) has passed. n.mu must be held.
func (n *NATS) signalLocked(sig syscall.Signal, grace time.Duration) {
	stopProcess(n.cmd, n.done, sig, grace)
	n.cmd, n.done = nil, nil
}

// logTail returns the end of the server's log file, for failure messages.
func (n *NATS) logTail() string { return fileTail(filepath.Join(n.dir, "nats.log")) }

var syncProbe struct {
	sync.Mutex
	known map[string]bool // by binary path
}

// syncIntervalSupported reports whether the nats-server binary accepts the
// sync_interval setting (added in 2.10), by letting it check a
// configuration that uses it. dir is a scratch directory.
func syncIntervalSupported(bin, dir string) bool {
	syncProbe.Lock()
	defer syncProbe.Unlock()
	if ok, seen := syncProbe.known[bin]; seen {
		return ok
	}
	conf := filepath.Join(dir, "probe.conf")
	body := fmt.Sprintf("jetstream {\n  store_dir: %q\n  sync_interval: always\n}\n", filepath.Join(dir, "probe"))
	ok := os.WriteFile(conf, []byte(body), 0o600) == nil && exec.Command(bin, "-c", conf, "-t").Run() == nil
	_ = os.Remove(conf)
	if syncProbe.known == nil {
		syncProbe.known = map[string]bool{}
	}
	syncProbe.known[bin] = ok
	return ok
}
