package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/url"
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

// RedisOptions choose how a test Redis keeps its data.
type RedisOptions struct {
	// AOF turns on the append-only file with appendfsync always: every write
	// acknowledged to a client is on disk, so a Restart, even after Kill,
	// finds all of it. Without AOF the server keeps nothing on disk and a
	// Restart comes back empty, as a Redis that lost its data does.
	AOF bool
	// ReplicaOf, when set to the host:port of another test Redis, starts
	// this one as its replica.
	ReplicaOf string
}

// Redis is a redis-server process owned by one test: a Redis, or a Redis
// Sentinel started by StartRedisSentinel. Its methods are safe for
// concurrent use.
type Redis struct {
	bin  string
	opts RedisOptions
	dir  string // data directory and log file, kept across restarts

	// For a Sentinel: the name of the primary it monitors, and where.
	master, primaryAddr string
	// cluster starts the server with cluster mode on (StartRedisCluster).
	cluster bool

	mu      sync.Mutex
	port    int           // chosen at the first start, kept across restarts
	busPort int           // the cluster bus port of a cluster node, chosen likewise
	cmd     *exec.Cmd     // nil while the server is not running
	done    chan struct{} // closed when cmd has exited
}

// redisStartTimeout bounds the wait for a started server to answer PING.
// The machines tests run on are shared, so it is generous.
const redisStartTimeout = 30 * time.Second

// StartRedis starts redis-server on a free loopback port with its data in a
// temporary directory and waits until it answers PING. The server is killed
// when the test ends. Without a redis-server on PATH the test is skipped, or
// failed in CI (see Binary).
func StartRedis(tb testing.TB, opts RedisOptions) *Redis {
	tb.Helper()
	r := &Redis{bin: Binary(tb, "redis-server"), opts: opts, dir: tb.TempDir()}
	return r.startOnFreePorts(tb, "redis-server")
}

// startOnFreePorts starts r on free loopback ports (and a free cluster bus
// port for a cluster node), kills it when the test ends, and fails the test
// when it cannot start. Another process may take a free port before
// redis-server binds it; new ports are then worth another try.
func (r *Redis) startOnFreePorts(tb testing.TB, what string) *Redis {
	tb.Helper()
	tb.Cleanup(r.Kill)
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		r.mu.Lock()
		r.port, err = freePort()
		if err == nil && r.cluster {
			r.busPort, err = freePort()
		}
		if err == nil {
			err = r.startLocked()
		}
		r.mu.Unlock()
		if err == nil {
			return r
		}
	}
	tb.Fatalf("testenv: start %s: %v", what, err)
	return nil
}

// StartRedisSentinel starts a Redis Sentinel (redis-server --sentinel) on a
// free loopback port that monitors primary under the name master, with a
// quorum of one, and waits until it answers PING. Its URL names master, so
// that a client asks it for the primary's address. It is killed when the
// test ends.
func StartRedisSentinel(tb testing.TB, primary *Redis, master string) *Redis {
	tb.Helper()
	r := &Redis{bin: Binary(tb, "redis-server"), dir: tb.TempDir(), master: master, primaryAddr: primary.Addr()}
	return r.startOnFreePorts(tb, "redis sentinel")
}

// Addr returns the server's host:port.
func (r *Redis) Addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
}

// URL returns the server's address as a redis:// URL naming database 0;
// for a Sentinel, with a master_set parameter naming the monitored primary.
func (r *Redis) URL() string {
	if r.master != "" {
		return "redis://" + r.Addr() + "/0?master_set=" + url.QueryEscape(r.master)
	}
	return "redis://" + r.Addr() + "/0"
}

// Kill ends the server with SIGKILL, as a crash would, and waits until it
// has exited. It does nothing when the server is not running.
func (r *Redis) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.signalLocked(syscall.SIGKILL, 0)
}

// Stop shuts the server down with SIGTERM, letting it write what it keeps to
// disk, and waits until it has exited (killing it after 10 seconds). It does
// nothing when the server is not running.
func (r *Redis) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.signalLocked(syscall.SIGTERM, 10*time.Second)
}

// Restart stops the server if it is running and starts it again on the same
// port with the same data directory, waiting until it answers PING. With AOF
// it comes back with its data; without, empty.
func (r *Redis) Restart(tb testing.TB) {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.signalLocked(syscall.SIGTERM, 10*time.Second)
	if err := r.startLocked(); err != nil {
		tb.Fatalf("testenv: restart redis-server: %v", err)
	}
}

// startLocked starts the server on r.port and waits for it to answer. r.mu
// must be held.
func (r *Redis) startLocked() error {
	if r.master != "" {
		return r.startSentinelLocked()
	}
	args := []string{
		"--port", strconv.Itoa(r.port),
		"--bind", "127.0.0.1",
		"--dir", r.dir,
		"--logfile", filepath.Join(r.dir, "redis.log"),
		"--daemonize", "no",
		"--save", "", // no RDB snapshots: AOF or nothing
	}
	if r.cluster {
		// The bus port is given explicitly: the default, port+10000, may be
		// taken or above 65535 for a port from the ephemeral range.
		args = append(args,
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(r.dir, "nodes.conf"),
			"--cluster-port", strconv.Itoa(r.busPort),
			"--cluster-node-timeout", strconv.Itoa(int(clusterNodeTimeout/time.Millisecond)),
		)
	}
	if r.opts.ReplicaOf != "" {
		host, port, err := net.SplitHostPort(r.opts.ReplicaOf)
		if err != nil {
			return fmt.Errorf("primary address: %w", err)
		}
		args = append(args, "--replicaof", host, port)
	}
	if r.opts.AOF {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	return r.runLocked(args)
}

// startSentinelLocked writes the Sentinel's configuration at the first
// start (Sentinel rewrites it as it learns) and starts it. r.mu must be held.
func (r *Redis) startSentinelLocked() error {
	host, port, err := net.SplitHostPort(r.primaryAddr)
	if err != nil {
		return fmt.Errorf("primary address: %w", err)
	}
	conf := strings.Join([]string{
		"port " + strconv.Itoa(r.port),
		"bind 127.0.0.1",
		"dir " + r.dir,
		"logfile " + filepath.Join(r.dir, "redis.log"),
		fmt.Sprintf("sentinel monitor %s %s %s 1", r.master, host, port),
		fmt.Sprintf("sentinel down-after-milliseconds %s 1000", r.master),
		fmt.Sprintf("sentinel failover-timeout %s 5000", r.master),
	}, "\n") + "\n"
	path := filepath.Join(r.dir, "sentinel.conf")
	if _, err := os.Stat(path); err == nil {
		return r.runLocked([]string{path, "--sentinel"}) // a restart: keep what it learned
	}
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("write sentinel configuration: %w", err)
	}
	return r.runLocked([]string{path, "--sentinel"})
}

// runLocked starts redis-server with args and waits until it answers PING
// on r.port. r.mu must be held.
func (r *Redis) runLocked(args []string) error {
	cmd := exec.Command(r.bin, args...)
	cmd.SysProcAttr = serverProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", r.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	r.cmd, r.done = cmd, done
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
	deadline := time.Now().Add(redisStartTimeout)
	for {
		err := ping(addr)
		if err == nil {
			return nil
		}
		select {
		case <-done:
			r.cmd, r.done = nil, nil
			return fmt.Errorf("redis-server exited at start (port %d): %s", r.port, r.logTail())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.signalLocked(syscall.SIGKILL, 0)
			return fmt.Errorf("redis-server not ready after %v: %w: %s", redisStartTimeout, err, r.logTail())
		}
	}
}

// signalLocked sends sig to the running server and waits for it to exit,
// killing it when grace (if not zero) has passed. r.mu must be held.
func (r *Redis) signalLocked(sig syscall.Signal, grace time.Duration) {
	stopProcess(r.cmd, r.done, sig, grace)
	r.cmd, r.done = nil, nil
}

// logTail returns the end of the server's log file, for failure messages.
func (r *Redis) logTail() string { return fileTail(filepath.Join(r.dir, "redis.log")) }

// ping sends PING to a Redis at addr and checks for PONG. A server still
// loading its data answers with a LOADING error, which counts as not ready.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return fmt.Errorf("set deadline: %w", err)
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if line = strings.TrimSpace(line); line != "+PONG" {
		return errors.New("answered " + line)
	}
	return nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
