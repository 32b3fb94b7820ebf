package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clusterNodeTimeout is the cluster-node-timeout of test cluster nodes: how
// long a node may be unreachable before the others mark it failed. Shorter
// values made a replica take over from a live master on a loaded machine.
const clusterNodeTimeout = 5 * time.Second

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// RedisClusterOptions shape a test Redis Cluster.
type RedisClusterOptions struct {
	// Masters is the number of primaries; the hash slots are split among
	// them in equal ranges, in order. Default 3, the smallest cluster
	// redis-cli would create.
	Masters int
	// AOF is RedisOptions.AOF for every node: with it a restarted node comes
	// back with its data, without it empty (it keeps its slots either way,
	// which it records in its nodes.conf).
	AOF bool
	// Replicas is the number of replicas of each master. A replica takes
	// over its master's slots when the master has been unreachable for
	// about five seconds (cluster-node-timeout).
	Replicas int
}

// RedisCluster is a Redis Cluster of redis-server processes owned by one
// test, with no replicas. Its methods are safe for concurrent use.
type RedisCluster struct {
	// Masters are the primaries, in the order of the slot ranges they were
	// given: Masters[i] serves the i-th range. Kill, Stop and Restart one
	// to make its slots unavailable; WaitHealthy waits for the cluster to
	// recover. After a failover the list is not updated.
	Masters []*Redis
	// Replicas holds the replicas of Masters[i] at Replicas[i].
	Replicas [][]*Redis
}

// StartRedisCluster starts a Redis Cluster (redis-server 7.0 or newer,
// with --cluster-enabled) of opts.Masters primaries, each on free loopback
// ports in its own temporary directory, gives each an equal range of the
// hash slots, introduces them to each other and waits until every node
// reports cluster_state:ok. The nodes are killed when the test ends.
// Without a redis-server on PATH the test is skipped, or failed in CI (see
// Binary).
func StartRedisCluster(tb testing.TB, opts RedisClusterOptions) *RedisCluster {
	tb.Helper()
	n := opts.Masters
	if n <= 0 {
		n = 3
	}
	bin := Binary(tb, "redis-server")
	c := &RedisCluster{Replicas: make([][]*Redis, n)}
	for i := 0; i < n; i++ {
		c.Masters = append(c.Masters, startClusterNode(tb, bin, opts.AOF))
		for j := 0; j < opts.Replicas; j++ {
			c.Replicas[i] = append(c.Replicas[i], startClusterNode(tb, bin, opts.AOF))
		}
	}
	if err := c.form(); err != nil {
		tb.Fatalf("testenv: form the redis cluster: %v", err)
	}
	c.WaitHealthy(tb)
	return c
}

// startClusterNode starts one cluster-enabled redis-server.
func startClusterNode(tb testing.TB, bin string, aof bool) *Redis {
	tb.Helper()
	r := &Redis{bin: bin, opts: RedisOptions{AOF: aof}, dir: tb.TempDir(), cluster: true}
	return r.startOnFreePorts(tb, "a redis cluster node")
}

// nodes returns every node, masters first.
func (c *RedisCluster) nodes() []*Redis {
	all := slices.Clone(c.Masters)
	for _, rs := range c.Replicas {
		all = append(all, rs...)
	}
	return all
}

// running reports whether the server is running.
func (r *Redis) running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cmd != nil
}

// form assigns the slot ranges and makes the nodes meet.
func (c *RedisCluster) form() error {
	n := len(c.Masters)
	for i, r := range c.Masters {
		lo, hi := i*clusterSlots/n, (i+1)*clusterSlots/n-1
		// Distinct config epochs, as redis-cli gives them, so that the
		// nodes need not resolve a collision first.
		if _, err := command(r.Addr(), "CLUSTER", "SET-CONFIG-EPOCH", strconv.Itoa(i+1)); err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
		if _, err := command(r.Addr(), "CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi)); err != nil {
			return fmt.Errorf("node %d: %w (sharded Pub/Sub and ADDSLOTSRANGE need redis-server 7.0 or newer)", i, err)
		}
	}
	first := c.Masters[0].Addr()
	for _, r := range c.nodes()[1:] {
		r.mu.Lock()
		port, bus := r.port, r.busPort
		r.mu.Unlock()
		if _, err := command(first, "CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(port), strconv.Itoa(bus)); err != nil {
			return fmt.Errorf("meet %d: %w", port, err)
		}
	}
	for i, rs := range c.Replicas {
		id, err := command(c.Masters[i].Addr(), "CLUSTER", "MYID")
		if err != nil {
			return fmt.Errorf("master %d: %w", i, err)
		}
		for _, r := range rs {
			// The replica must have heard of its master through the
			// cluster bus first.
			deadline := time.Now().Add(redisStartTimeout)
			for {
				_, err := command(r.Addr(), "CLUSTER", "REPLICATE", id.(string))
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("replicate master %d: %w", i, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	return nil
}

// WaitHealthy waits until every running node reports cluster_state:ok,
// knows every node and sees every slot served by as many masters as the
// cluster was started with, as after a restarted node has rejoined or a
// replica has taken over. It fails the test after redisStartTimeout.
func (c *RedisCluster) WaitHealthy(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(redisStartTimeout)
	for {
		err := c.healthy()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("testenv: redis cluster not healthy after %v: %v", redisStartTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// healthy returns why the cluster is not healthy, or nil.
func (c *RedisCluster) healthy() error {
	want := map[string]string{
		"cluster_state":          "ok",
		"cluster_slots_ok":       strconv.Itoa(clusterSlots),
		"cluster_known_nodes":    strconv.Itoa(len(c.nodes())),
		"cluster_size":           strconv.Itoa(len(c.Masters)),
		"cluster_slots_assigned": strconv.Itoa(clusterSlots),
	}
	for i, r := range c.nodes() {
		if !r.running() {
			continue
		}
		reply, err := command(r.Addr(), "CLUSTER", "INFO")
		if err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
		info, _ := reply.(string)
		for k, v := range want {
			if !strings.Contains(info, k+":"+v+"\r\n") {
				return fmt.Errorf("node %d: not %s:%s in %q", i, k, v, info)
			}
		}
		reply, err = command(r.Addr(), "INFO", "replication")
		if err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
		if info, _ := reply.(string); strings.Contains(info, "role:slave\r\n") && !strings.Contains(info, "master_link_status:up\r\n") {
			return fmt.Errorf("node %d: a replica not in sync: %q", i, info)
		}
	}
	return nil
}

// WaitReplicated waits until every running replica has applied everything
// its running master had written when the call began, so that a failover
// then loses nothing. It reads the offsets each side reports itself:
// WAIT, which counts the acknowledgements a master received, was seen to
// count a replica that had just finished its first sync without the
// write. It fails the test after redisStartTimeout.
func (c *RedisCluster) WaitReplicated(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(redisStartTimeout)
	for i, m := range c.Masters {
		if !m.running() {
			continue
		}
		want, err := replOffset(m.Addr(), "master_repl_offset")
		if err != nil {
			tb.Fatalf("testenv: master %d: %v", i, err)
		}
		for _, r := range c.Replicas[i] {
			for r.running() {
				got, err := replOffset(r.Addr(), "slave_repl_offset")
				if err == nil && got >= want {
					break
				}
				if time.Now().After(deadline) {
					tb.Fatalf("testenv: replica of master %d at offset %d (%v), master at %d", i, got, err, want)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
}

// replOffset reads a replication offset field of INFO replication.
func replOffset(addr, field string) (int64, error) {
	reply, err := command(addr, "INFO", "replication")
	if err != nil {
		return 0, err
	}
	info, _ := reply.(string)
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in INFO replication", field)
}

// Addrs returns the host:port of every master.
func (c *RedisCluster) Addrs() []string {
	addrs := make([]string, len(c.Masters))
	for i, r := range c.Masters {
		addrs[i] = r.Addr()
	}
	return addrs
}

// URL returns a redis:// URL naming the first master as host and the
// others as addr parameters, the seeds a client discovers the cluster from.
func (c *RedisCluster) URL() string {
	addrs := c.Addrs()
	q := url.Values{"addr": addrs[1:]}
	return "redis://" + addrs[0] + "/0?" + q.Encode()
}

// SlotOf returns the hash slot of key, as the cluster computes it.
func (c *RedisCluster) SlotOf(tb testing.TB, key string) int {
	tb.Helper()
	for _, r := range c.Masters {
		reply, err := command(r.Addr(), "CLUSTER", "KEYSLOT", key)
		if err == nil {
			return int(reply.(int64))
		}
	}
	tb.Fatalf("testenv: no cluster node answers CLUSTER KEYSLOT")
	return 0
}

// Owner returns the index in Masters of the master that serves slot,
// according to the first node that answers. It fails the test when a
// replica serves the slot now (after a failover).
func (c *RedisCluster) Owner(tb testing.TB, slot int) int {
	tb.Helper()
	r := c.Server(tb, slot)
	if i := slices.Index(c.Masters, r); i >= 0 {
		return i
	}
	tb.Fatalf("testenv: slot %d is served by a replica at %s", slot, r.Addr())
	return -1
}

// Server returns the node, master or promoted replica, that serves slot,
// according to the first running node that answers.
func (c *RedisCluster) Server(tb testing.TB, slot int) *Redis {
	tb.Helper()
	for _, r := range c.nodes() {
		if !r.running() {
			continue
		}
		reply, err := command(r.Addr(), "CLUSTER", "SLOTS")
		if err != nil {
			continue
		}
		ranges, _ := reply.([]any)
		for _, rg := range ranges {
			rg, _ := rg.([]any)
			if len(rg) < 3 {
				continue
			}
			lo, _ := rg[0].(int64)
			hi, _ := rg[1].(int64)
			node, _ := rg[2].([]any)
			if int64(slot) < lo || int64(slot) > hi || len(node) < 2 {
				continue
			}
			port, _ := node[1].(int64)
			addr := net.JoinHostPort("127.0.0.1", strconv.FormatInt(port, 10))
			for _, n := range c.nodes() {
				if n.Addr() == addr {
					return n
				}
			}
		}
	}
	tb.Fatalf("testenv: no cluster node knows the server of slot %d", slot)
	return nil
}

// MoveSlot migrates slot, with its keys, from master from to master to,
// the way redis-cli --cluster reshard does: the slot is marked importing
// and migrating, its keys are moved with MIGRATE, then both nodes (and the
// others) are told its new owner. Sharded Pub/Sub subscribers of the slot
// on from are unsubscribed by the server at the end.
func (c *RedisCluster) MoveSlot(tb testing.TB, slot, from, to int) {
	tb.Helper()
	src, dst := c.Masters[from], c.Masters[to]
	dstID, err := command(dst.Addr(), "CLUSTER", "MYID")
	if err != nil {
		tb.Fatalf("testenv: move slot: %v", err)
	}
	srcID, err := command(src.Addr(), "CLUSTER", "MYID")
	if err != nil {
		tb.Fatalf("testenv: move slot: %v", err)
	}
	s := strconv.Itoa(slot)
	steps := [][]string{
		{dst.Addr(), "CLUSTER", "SETSLOT", s, "IMPORTING", srcID.(string)},
		{src.Addr(), "CLUSTER", "SETSLOT", s, "MIGRATING", dstID.(string)},
	}
	for _, st := range steps {
		if _, err := command(st[0], st[1:]...); err != nil {
			tb.Fatalf("testenv: move slot %d: %v", slot, err)
		}
	}
	dst.mu.Lock()
	dstPort := dst.port
	dst.mu.Unlock()
	for {
		reply, err := command(src.Addr(), "CLUSTER", "GETKEYSINSLOT", s, "100")
		if err != nil {
			tb.Fatalf("testenv: move slot %d: %v", slot, err)
		}
		keys, _ := reply.([]any)
		if len(keys) == 0 {
			break
		}
		args := []string{"MIGRATE", "127.0.0.1", strconv.Itoa(dstPort), "", "0", "10000", "KEYS"}
		for _, k := range keys {
			args = append(args, k.(string))
		}
		if _, err := command(src.Addr(), args...); err != nil {
			tb.Fatalf("testenv: move slot %d: %v", slot, err)
		}
	}
	// The destination first, so that clients redirected by the source
	// find the slot served.
	for _, r := range append([]*Redis{dst, src}, c.Masters...) {
		if _, err := command(r.Addr(), "CLUSTER", "SETSLOT", s, "NODE", dstID.(string)); err != nil {
			tb.Fatalf("testenv: move slot %d: %v", slot, err)
		}
	}
}

// command sends one command to the Redis at addr over a new connection and
// returns its reply: a string (simple or bulk; nil for a null bulk), an
// int64, or a []any of those. An error reply is returned as an error.
func command(addr string, args ...string) (any, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(15 * time.Second)); err != nil {
		return nil, fmt.Errorf("set deadline: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	reply, err := readReply(bufio.NewReader(conn))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", strings.Join(args, " "), err)
	}
	return reply, nil
}

// readReply reads one RESP2 reply.
func readReply(rd *bufio.Reader) (any, error) {
	line, err := rd.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty reply line")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return nil, errors.New(line[1:])
	case ':':
		return strconv.ParseInt(line[1:], 10, 64)
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readReply(rd); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unexpected reply %q", line)
}
