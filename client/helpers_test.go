package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/client"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/server"
)

const apiKey = "client-test-key"

// node is a Switchboard node running in the test process on a loopback
// port.
type node struct {
	t      testing.TB
	addr   string
	cancel context.CancelFunc
	done   chan error
}

// startNode runs a node with the default configuration changed by mutate.
// It stops when the test ends.
func startNode(t testing.TB, mutate func(*config.Config)) *node {
	t.Helper()
	n, err := runNode("127.0.0.1:0", mutate)
	if err != nil {
		t.Fatal(err)
	}
	n.t = t
	t.Cleanup(n.stop)
	return n
}

// runNode starts a node listening on addr.
func runNode(addr string, mutate func(*config.Config)) (*node, error) {
	cfg := config.Default()
	cfg.Addr = addr
	cfg.APIKey = []string{apiKey}
	cfg.ShutdownTimeout = 5 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := server.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), "test")
	if err != nil {
		return nil, err
	}
	if err := srv.Listen(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{addr: srv.Addr(), cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- srv.Run(ctx) }()
	return n, nil
}

// stop shuts the node down (clients get 4000) and waits for it.
func (n *node) stop() {
	n.cancel()
	err := <-n.done
	n.done <- err
}

func (n *node) url() string { return "ws://" + n.addr + "/ws" }

// apiClient calls the server API without keeping connections alive, so no
// goroutine outlives a test.
var apiClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}

// api calls the server API of n and decodes the result.
func (n *node) api(t testing.TB, path string, body any) (map[string]any, error) {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", "http://"+n.addr+path, strings.NewReader(string(b)))
	req.Header.Set("Authorization", "apikey "+apiKey)
	resp, err := apiClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s: %d %v", path, resp.StatusCode, m)
	}
	res, _ := m["result"].(map[string]any)
	return res, nil
}

// publish publishes data to channel through n's API and returns the offset.
func (n *node) publish(t testing.TB, channel string, data any) uint64 {
	t.Helper()
	res, err := n.api(t, "/api/publish", map[string]any{"channel": channel, "data": data})
	if err != nil {
		t.Fatal(err)
	}
	return uint64(res["offset"].(float64))
}

// disconnect closes a client's connection through n's API: with 4003
// (reconnect) or 4500.
func (n *node) disconnect(t testing.TB, clientID string, reconnect bool) {
	t.Helper()
	if _, err := n.api(t, "/api/disconnect", map[string]any{"client": clientID, "reconnect": reconnect}); err != nil {
		t.Fatal(err)
	}
}

// recorder collects what a client's callbacks receive.
type recorder struct {
	mu     sync.Mutex
	pubs   []client.Publication
	gaps   []client.Gap
	states []client.StateChange
	outbox []client.OutboxEntry
	wake   chan struct{}
}

func newRecorder() *recorder { return &recorder{wake: make(chan struct{}, 1)} }

func (r *recorder) add(f func()) {
	r.mu.Lock()
	f()
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *recorder) onPublication(p client.Publication) { r.add(func() { r.pubs = append(r.pubs, p) }) }
func (r *recorder) onGap(g client.Gap)                 { r.add(func() { r.gaps = append(r.gaps, g) }) }
func (r *recorder) onState(s client.StateChange)       { r.add(func() { r.states = append(r.states, s) }) }
func (r *recorder) onOutbox(e client.OutboxEntry)      { r.add(func() { r.outbox = append(r.outbox, e) }) }

// wait blocks until cond (called under the recorder's lock) holds, failing
// the test after a generous bound: these are waits for progress, not
// timing assertions.
func (r *recorder) wait(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.wake:
		case <-deadline.C:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("timed out waiting for %s (%d publications, %d gaps, %d states)", what, len(r.pubs), len(r.gaps), len(r.states))
		}
	}
}

// connections counts the times the client reached "connected".
func (r *recorder) connections() int {
	n := 0
	for _, s := range r.states {
		if s.State == client.StateConnected {
			n++
		}
	}
	return n
}

// checkSequence reports lost and duplicated offsets in pubs, which should
// run from first to last without a hole or a repeat.
func checkSequence(pubs []client.Publication, first, last uint64) (lost, dup int, outOfOrder bool) {
	seen := map[uint64]int{}
	var prev uint64
	for i, p := range pubs {
		seen[p.Offset]++
		if i > 0 && p.Offset <= prev {
			outOfOrder = true
		}
		prev = p.Offset
	}
	for off := first; off <= last; off++ {
		switch c := seen[off]; {
		case c == 0:
			lost++
		case c > 1:
			dup += c - 1
		}
	}
	return lost, dup, outOfOrder
}

// gate holds the client's dials after the first until opened.
type gate struct {
	mu   sync.Mutex
	open chan struct{}
}

func newGate() *gate { return &gate{open: make(chan struct{})} }

func (g *gate) close() {
	g.mu.Lock()
	g.open = make(chan struct{})
	g.mu.Unlock()
}

func (g *gate) release() {
	g.mu.Lock()
	close(g.open)
	g.mu.Unlock()
}

func (g *gate) wait(ctx context.Context) error {
	g.mu.Lock()
	ch := g.open
	g.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// proxy forwards TCP connections to a node; with drop set, it throws away
// what the node sends (the client sees silence), and cut closes every
// connection open through it.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	drop   bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func startProxy(t testing.TB, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() { ln.Close(); p.cut(); p.wg.Wait() })
	return p
}

func (p *proxy) url() string { return "ws://" + p.ln.Addr().String() + "/ws" }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); _, _ = io.Copy(s, c); s.Close() }()
		go func() {
			defer p.wg.Done()
			defer c.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := s.Read(buf)
				p.mu.Lock()
				drop := p.drop
				p.mu.Unlock()
				if n > 0 && !drop {
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

func (p *proxy) setDrop(v bool) {
	p.mu.Lock()
	p.drop = v
	p.mu.Unlock()
}

func (p *proxy) cut() {
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
}

// heldEndpoint returns an Endpoint that gives url at once for the first
// connection and, for every reconnect, only once g opens.
func heldEndpoint(g *gate, url string) func(ctx context.Context, attempt int) (string, error) {
	return func(ctx context.Context, attempt int) (string, error) {
		if attempt > 0 {
			if err := g.wait(ctx); err != nil {
				return "", err
			}
		}
		return url, nil
	}
}
