package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// target is the server under test: Switchboard or the Node.js baseline,
// started by the tool (so it knows the pid and can restart it) or already
// running (--url with --server-pid).
type target struct {
	Name string // kindSwitchboard or kindBaseline
	Addr string // host:port
	// PublishAddr, when set, is where publications are posted (host:port):
	// another node of the same cluster, for cross-node runs.
	PublishAddr string
	PID         int
	APIKey      string

	argvFor func(addr string) []string // how to start it; nil when external
	cpus    string                     // CPU list it is pinned to, or ""
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process exits
	logs    *tailBuffer

	http *http.Client
	// streams, when set, carry publish calls instead of HTTP requests
	// (--via stream).
	streams *apiStreams

	mu        sync.Mutex
	exitedCPU float64 // s, used by earlier processes (before a restart)
}

// cpu returns the CPU seconds the server has used so far, including the
// processes it had before restarts.
func (t *target) cpu() float64 {
	c, _ := procCPU(t.PID)
	t.mu.Lock()
	defer t.mu.Unlock()
	return c + t.exitedCPU
}

// targetSpec says how to get a target.
type targetSpec struct {
	Kind string
	// ArgvFor returns the command that starts the server listening on addr
	// ("" for any free port on 127.0.0.1). Nil with URL set: use a running
	// server.
	ArgvFor func(addr string) []string
	// URL of a running server (http://host:port), with PID.
	URL string
	PID int
	// PublishURL, when set, takes the publications instead of URL (another
	// node of the same cluster).
	PublishURL string
	// CPUs to pin the started server to ("" for none).
	CPUs   string
	APIKey string
	// H2C publishes to the server API over HTTP/2 without TLS.
	H2C bool
}

var listenLine = regexp.MustCompile(`listening.*?http://([0-9.]+:[0-9]+)`)

// startTarget starts (or attaches to) the server described by spec and
// waits until it accepts connections.
func startTarget(ctx context.Context, spec targetSpec) (*target, error) {
	t := &target{Name: spec.Kind, APIKey: spec.APIKey, cpus: spec.CPUs, logs: &tailBuffer{max: 40}}
	t.http = &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			MaxConnsPerHost:     256,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
	}
	if spec.H2C {
		p := new(http.Protocols)
		p.SetUnencryptedHTTP2(true)
		t.http.Transport.(*http.Transport).Protocols = p
	}
	if spec.ArgvFor == nil {
		if spec.URL == "" {
			return nil, errors.New("target: neither a command nor a URL")
		}
		t.Addr = strings.TrimPrefix(strings.TrimPrefix(spec.URL, "http://"), "ws://")
		t.Addr = strings.TrimSuffix(t.Addr, "/")
		t.PID = spec.PID
		if spec.PublishURL != "" {
			t.PublishAddr = strings.TrimSuffix(strings.TrimPrefix(spec.PublishURL, "http://"), "/")
		}
		if t.PID == 0 {
			return nil, errors.New("target: --server-pid is required with --url (memory and CPU are read from /proc/<pid>)")
		}
		return t, nil
	}
	t.argvFor = spec.ArgvFor
	if err := t.start(ctx, ""); err != nil {
		return nil, err
	}
	return t, nil
}

// start runs the server command, listening on addr ("" for a free port).
func (t *target) start(ctx context.Context, addr string) error {
	argv := t.argvFor(addr)
	if t.cpus != "" {
		tp, err := exec.LookPath("taskset")
		if err != nil {
			return fmt.Errorf("start %s: pinning needs taskset: %w", t.Name, err)
		}
		argv = append([]string{tp, "-c", t.cpus}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", t.Name, err)
	}
	t.cmd, t.PID = cmd, cmd.Process.Pid
	t.done = make(chan struct{})
	done := t.done
	go func() {
		_ = cmd.Wait()
		if ps := cmd.ProcessState; ps != nil {
			t.mu.Lock()
			t.exitedCPU += (ps.UserTime() + ps.SystemTime()).Seconds()
			t.mu.Unlock()
		}
		_ = pw.Close()
		close(done)
	}()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			t.logs.add(line)
			if m := listenLine.FindStringSubmatch(line); m != nil && !sent {
				found <- m[1]
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	timer := time.NewTimer(20 * time.Second)
	defer timer.Stop()
	select {
	case a := <-found:
		t.Addr = a
	case <-t.done:
		return fmt.Errorf("start %s: exited early; its last output:\n%s", t.Name, t.logs.String())
	case <-timer.C:
		t.stop()
		return fmt.Errorf("start %s: no \"listening\" line within 20s; its last output:\n%s", t.Name, t.logs.String())
	case <-ctx.Done():
		t.stop()
		return ctx.Err()
	}
	// Wait until it accepts TCP connections.
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", t.Addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if i > 100 {
			t.stop()
			return fmt.Errorf("start %s: %s does not accept: %w", t.Name, t.Addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// stop ends a server the tool started: SIGTERM, then SIGKILL after 15s.
func (t *target) stop() {
	if t.cmd == nil {
		return
	}
	_ = t.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-t.done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-t.cmd.Process.Pid, syscall.SIGKILL)
		_ = t.cmd.Process.Kill()
		<-t.done
	}
	t.cmd = nil
}

// restart stops the server and starts it again on the same address.
func (t *target) restart(ctx context.Context) error {
	if t.argvFor == nil {
		return errors.New("restart: the tool did not start this server")
	}
	t.stop()
	return t.start(ctx, t.Addr)
}

// alive reports whether a server the tool started still runs.
func (t *target) alive() bool {
	if t.cmd == nil {
		return t.argvFor == nil // external: assume so
	}
	select {
	case <-t.done:
		return false
	default:
		return true
	}
}

// publish publishes data to channel through the server's HTTP API (the
// keep-alive connections of t.http).
func (t *target) publish(ctx context.Context, channel string, data []byte) error {
	if t.streams != nil {
		return t.streams.publish(ctx, channel, data)
	}
	body := make([]byte, 0, len(data)+len(channel)+32)
	body = append(body, `{"channel":"`...)
	body = append(body, channel...)
	body = append(body, `","data":`...)
	body = append(body, data...)
	body = append(body, '}')
	path := "/publish"
	if t.Name == kindSwitchboard {
		path = "/api/publish"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+t.pubAddr()+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if t.Name == kindSwitchboard {
		req.Header.Set("Authorization", "apikey "+t.APIKey)
	}
	resp, err := t.http.Do(req)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("publish: HTTP %d", resp.StatusCode)
	}
	return nil
}

// batchPub is one publication of a batch.
type batchPub struct {
	channel string
	data    []byte
}

// publishBatch publishes pubs with one POST /api/batch (Switchboard only)
// and returns how many of them the server refused.
func (t *target) publishBatch(ctx context.Context, pubs []batchPub) (failed uint64, err error) {
	body := make([]byte, 0, len(pubs)*(len(pubs[0].data)+80)+16)
	body = append(body, `{"commands":[`...)
	for i, p := range pubs {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, `{"method":"publish","params":{"channel":"`...)
		body = append(body, p.channel...)
		body = append(body, `","data":`...)
		body = append(body, p.data...)
		body = append(body, `}}`...)
	}
	body = append(body, `]}`...)
	var out struct {
		Replies []struct {
			Error *struct {
				Code int `json:"code"`
			} `json:"error"`
		} `json:"replies"`
	}
	if err := t.apiAt(ctx, t.pubAddr(), http.MethodPost, "/api/batch", json.RawMessage(body), &out); err != nil {
		return uint64(len(pubs)), err
	}
	if len(out.Replies) != len(pubs) {
		return uint64(len(pubs)), fmt.Errorf("publish batch: %d replies to %d commands", len(out.Replies), len(pubs))
	}
	for _, r := range out.Replies {
		if r.Error != nil {
			failed++
		}
	}
	return failed, nil
}

// pubAddr is the address publications are posted to.
func (t *target) pubAddr() string {
	if t.PublishAddr != "" {
		return t.PublishAddr
	}
	return t.Addr
}

// api calls a Switchboard server API method and decodes the result into out.
func (t *target) api(ctx context.Context, method, path string, in, out any) error {
	return t.apiAt(ctx, t.Addr, method, path, in, out)
}

// apiAt is api on the node at addr.
func (t *target) apiAt(ctx context.Context, addr, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+t.Addr+path, body)
	if err != nil {
		return fmt.Errorf("api %s: %w", path, err)
	}
	req.Header.Set("Authorization", "apikey "+t.APIKey)
	resp, err := t.http.Do(req)
	if err != nil {
		return fmt.Errorf("api %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("api %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("api %s: HTTP %d: %.200s", path, resp.StatusCode, b)
	}
	if out == nil {
		return nil
	}
	var env struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return fmt.Errorf("api %s: %w", path, err)
	}
	if err := json.Unmarshal(env.Result, out); err != nil {
		return fmt.Errorf("api %s: %w", path, err)
	}
	return nil
}

// goroutines reads go_goroutines from a Switchboard server's /metrics, or
// returns -1.
func (t *target) goroutines(ctx context.Context) int {
	v, ok := t.scrape(ctx)["go_goroutines"]
	if !ok {
		return -1
	}
	return int(v)
}

// scrape reads a Switchboard server's /metrics into a map from the sample
// (name with labels) to its value; nil for the baseline or on failure.
func (t *target) scrape(ctx context.Context) map[string]float64 {
	if t.Name != kindSwitchboard {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.Addr+"/metrics", nil)
	if err != nil {
		return nil
	}
	resp, err := t.http.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// serverLatencyQuantile estimates the q-quantile, in ms, of the server's
// own delivery latency histogram (publication received by the node to
// socket write done) between two scrapes, by linear interpolation inside
// the bucket. It returns NaN when there is nothing to estimate.
func serverLatencyQuantile(before, after map[string]float64, q float64) float64 {
	const name = "switchboard_delivery_latency_seconds_bucket{le=\""
	type bucket struct{ le, n float64 }
	var bs []bucket
	for k, v := range after {
		if !strings.HasPrefix(k, name) {
			continue
		}
		les := strings.TrimSuffix(strings.TrimPrefix(k, name), "\"}")
		le, err := strconv.ParseFloat(les, 64)
		if les == "+Inf" {
			le, err = math.Inf(1), nil
		}
		if err != nil {
			continue
		}
		bs = append(bs, bucket{le, v - before[k]})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if len(bs) == 0 || bs[len(bs)-1].n <= 0 {
		return math.NaN()
	}
	rank := q * bs[len(bs)-1].n
	prevLe, prevN := 0.0, 0.0
	for _, b := range bs {
		if b.n >= rank {
			if math.IsInf(b.le, 1) {
				return prevLe * 1000
			}
			frac := 0.0
			if b.n > prevN {
				frac = (rank - prevN) / (b.n - prevN)
			}
			return (prevLe + frac*(b.le-prevLe)) * 1000
		}
		prevLe, prevN = b.le, b.n
	}
	return math.NaN()
}

// tailBuffer keeps the last lines of a process's output.
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func (b *tailBuffer) add(l string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, l)
	if len(b.lines) > b.max {
		b.lines = b.lines[len(b.lines)-b.max:]
	}
}

// String returns the kept lines.
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

// selfCPU returns the CPU seconds used so far by this process.
func selfCPU() float64 {
	c, _ := procCPU(os.Getpid())
	return c
}
