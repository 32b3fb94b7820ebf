package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Client connections live in worker processes: the tool runs itself again
// with the hidden "worker" command, one process per few thousand
// connections, because the open-file limit is per process. The coordinator
// talks to each worker with one JSON request per line on the worker's stdin
// and reads one JSON answer per line from its stdout. A worker exits when
// its stdin closes, so it never outlives the coordinator.

// workerRequest is one command to a worker. Fields not used by Op are empty.
type workerRequest struct {
	Op string `json:"op"` // open, snapshot, warm, unwarmed, publish, reconnect, ids, status

	// open
	First     int    `json:"first,omitempty"`
	Count     int    `json:"count,omitempty"`
	Channel   string `json:"channel,omitempty"`    // one channel for all
	OwnPrefix string `json:"own_prefix,omitempty"` // else: prefix + index
	Connect   bool   `json:"connect,omitempty"`
	TimeoutMs int    `json:"timeout_ms,omitempty"`

	// snapshot
	Reset bool `json:"reset,omitempty"`

	// publish: client publications from this worker's connections, each
	// to its own channel, at Rate per second for DurationMs.
	Rate       float64 `json:"rate,omitempty"`
	DurationMs int     `json:"duration_ms,omitempty"`
	PadBytes   int     `json:"pad_bytes,omitempty"`

	// reconnect
	Enable   bool  `json:"enable,omitempty"`
	JitterMs int   `json:"jitter_ms,omitempty"`
	Since    int64 `json:"since,omitempty"` // status: unix ns
}

// workerAnswer is a worker's answer; Error is set on failure.
type workerAnswer struct {
	Error string `json:"error,omitempty"`

	// open
	Opened    int            `json:"opened,omitempty"`
	Failed    int            `json:"failed,omitempty"`
	Failures  map[string]int `json:"failures,omitempty"`
	SetupHist *sparseHist    `json:"setup_hist,omitempty"`

	// snapshot
	Stats *wireStats `json:"stats,omitempty"`

	// warm
	Unwarmed int `json:"unwarmed,omitempty"`

	// publish
	Published uint64 `json:"published,omitempty"`
	PubErrors uint64 `json:"pub_errors,omitempty"`

	// ids
	IDs []string `json:"ids,omitempty"`

	// status
	Back        int        `json:"back,omitempty"`
	Total       int        `json:"total,omitempty"`
	LastBackNs  int64      `json:"last_back_ns,omitempty"`
	BackHist    sparseHist `json:"back_hist,omitempty"`
	Reconnected int64      `json:"reconnected,omitempty"`
}

// wireStats is pstats on the wire.
type wireStats struct {
	Received     uint64            `json:"received"`
	Warm         uint64            `json:"warm"`
	Bytes        uint64            `json:"bytes"`
	Gaps         uint64            `json:"gaps"`
	Reordered    uint64            `json:"reordered"`
	Errors       uint64            `json:"errors"`
	Lat          sparseHist        `json:"lat"`
	Closes       map[string]uint64 `json:"closes,omitempty"`
	ResubGapped  uint64            `json:"resub_gapped"`
	EpochChanged uint64            `json:"epoch_changed"`
	Recovered    uint64            `json:"recovered"`
	Recoveries   uint64            `json:"recoveries"`
	Unrecovered  uint64            `json:"unrecovered"`
	FirstRecv    int64             `json:"first_recv"`
	LastRecv     int64             `json:"last_recv"`
}

func toWire(s pstats) *wireStats {
	ws := &wireStats{
		Received: s.Received, Warm: s.Warm, Bytes: s.Bytes, Gaps: s.Gaps,
		Reordered: s.Reordered, Errors: s.Errors, Lat: s.Lat.sparse(),
		ResubGapped: s.ResubGapped, EpochChanged: s.EpochChanged,
		Recovered: s.Recovered, Recoveries: s.Recoveries, Unrecovered: s.Unrecovered,
		FirstRecv: s.FirstRecv, LastRecv: s.LastRecv,
	}
	for k, v := range s.Closes {
		if ws.Closes == nil {
			ws.Closes = map[string]uint64{}
		}
		ws.Closes[strconv.Itoa(k)] = v
	}
	return ws
}

func fromWire(ws *wireStats) pstats {
	s := pstats{
		Received: ws.Received, Warm: ws.Warm, Bytes: ws.Bytes, Gaps: ws.Gaps,
		Reordered: ws.Reordered, Errors: ws.Errors, Lat: *ws.Lat.hist(),
		ResubGapped: ws.ResubGapped, EpochChanged: ws.EpochChanged,
		Recovered: ws.Recovered, Recoveries: ws.Recoveries, Unrecovered: ws.Unrecovered,
		FirstRecv: ws.FirstRecv, LastRecv: ws.LastRecv,
	}
	for k, v := range ws.Closes {
		code, _ := strconv.Atoi(k)
		if s.Closes == nil {
			s.Closes = map[int]uint64{}
		}
		s.Closes[code] = v
	}
	return s
}

// runWorker is the worker process's main loop. cfgJSON is its clientConfig.
func runWorker(cfgJSON string) error {
	var cfg clientConfig
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		return fmt.Errorf("worker config: %w", err)
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("worker: getrlimit: %w", err)
	}
	// Go raises the soft limit to the hard one at startup.
	maxFD := int(min(rl.Cur, 1<<20))
	cl, err := newClient(cfg, maxFD)
	if err != nil {
		return err
	}
	defer cl.close()
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var req workerRequest
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			return fmt.Errorf("worker: bad request: %w", err)
		}
		ans := serveWorker(cl, req)
		if err := out.Encode(ans); err != nil {
			return fmt.Errorf("worker: answer: %w", err)
		}
	}
	return in.Err()
}

func serveWorker(cl *client, req workerRequest) workerAnswer {
	switch req.Op {
	case "open":
		channelOf := func(i int) string { return req.Channel }
		if req.Channel == "" {
			channelOf = func(i int) string { return req.OwnPrefix + strconv.Itoa(i) }
		}
		cl.open(req.First, req.Count, channelOf, req.Connect, time.Duration(req.TimeoutMs)*time.Millisecond)
		cl.setupMu.Lock()
		defer cl.setupMu.Unlock()
		sh := cl.setupHist.sparse()
		return workerAnswer{Opened: cl.opened, Failed: cl.failed, Failures: cl.failures, SetupHist: &sh}
	case "snapshot":
		return workerAnswer{Stats: toWire(cl.snapshot(req.Reset))}
	case "warm":
		return workerAnswer{Unwarmed: cl.warm(req.PadBytes)}
	case "unwarmed":
		n := 0
		for _, c := range cl.allConns() {
			if !c.warmed.Load() {
				n++
			}
		}
		return workerAnswer{Unwarmed: n}
	case "publish":
		n, errs := cl.publish(req.Rate, time.Duration(req.DurationMs)*time.Millisecond, req.PadBytes)
		return workerAnswer{Published: n, PubErrors: errs}
	case "reconnect":
		cl.jitter.Store(int64(time.Duration(req.JitterMs) * time.Millisecond))
		cl.reconnect.Store(req.Enable)
		return workerAnswer{}
	case "ids":
		var ids []string
		for _, c := range cl.allConns() {
			if p := c.clientID.Load(); p != nil {
				ids = append(ids, *p)
			}
		}
		return workerAnswer{IDs: ids}
	case "status":
		var a workerAnswer
		var h hist
		for _, c := range cl.allConns() {
			a.Total++
			at := c.subscribedAt.Load()
			if at > req.Since && c.droppedAt.Load() > req.Since {
				a.Back++
				a.LastBackNs = max(a.LastBackNs, at)
				h.record(uint64(at-req.Since) / 1000)
			}
		}
		a.BackHist = h.sparse()
		a.Reconnected = cl.reconnected.Load()
		return a
	default:
		return workerAnswer{Error: "unknown op " + req.Op}
	}
}

// payload returns the data of a publication: {"t":unix ns,"s":seq,"p":pad}.
// Sequence 0 marks a warm-up publication, which receivers do not count.
func payload(t int64, seq uint64, pad int) []byte {
	b := make([]byte, 0, 48+pad)
	b = append(b, `{"t":`...)
	b = strconv.AppendInt(b, t, 10)
	b = append(b, `,"s":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"p":"`...)
	for i := 0; i < pad; i++ {
		b = append(b, 'x')
	}
	return append(b, `"}`...)
}

// clientPublish returns the frame of a publish command without an id (so
// that Switchboard answers only failures); the baseline takes the same.
func clientPublish(channel string, data []byte) []byte {
	b := make([]byte, 0, len(channel)+len(data)+48)
	b = append(b, `{"command":"publish","channel":"`...)
	b = append(b, channel...)
	b = append(b, `","data":`...)
	b = append(b, data...)
	b = append(b, '}')
	return frame(0x1, b)
}

// warm sends one warm-up publication to the channel of every open
// connection that has not received one yet (one per shared channel), and
// returns how many connections have not.
func (w *client) warm(pad int) int {
	sent := map[string]bool{}
	unwarmed := 0
	for _, c := range w.allConns() {
		if c.warmed.Load() {
			continue
		}
		unwarmed++
		if sent[c.channel] {
			continue
		}
		if c.write(clientPublish(c.channel, payload(time.Now().UnixNano(), 0, pad))) {
			sent[c.channel] = true
		}
	}
	return unwarmed
}

// publish sends client publications at rate per second for d, spread over
// the open connections in turn, each to its own channel. The timestamp in
// each is the time it was due, so a publisher that falls behind shows up as
// latency rather than hiding it.
func (w *client) publish(rate float64, d time.Duration, pad int) (sent, failed uint64) {
	conns := w.allConns()
	if len(conns) == 0 || rate <= 0 {
		return 0, 0
	}
	start := time.Now()
	total := uint64(math.Round(rate * d.Seconds()))
	interval := float64(time.Second) / rate
	next := 0
	for i := uint64(0); i < total; i++ {
		due := start.Add(time.Duration(float64(i) * interval))
		if wait := time.Until(due); wait > time.Millisecond {
			time.Sleep(wait)
		}
		c := conns[next%len(conns)]
		next++
		c.pubSeq++
		if c.write(clientPublish(c.channel, payload(due.UnixNano(), c.pubSeq, pad))) {
			sent++
		} else {
			failed++
		}
	}
	return sent, failed
}

// workerProc is the coordinator's handle on one worker process.
type workerProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
	mu    sync.Mutex
}

// startWorker starts a worker process running this executable.
func startWorker(cfg clientConfig, cpus string) (*workerProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	cj, _ := json.Marshal(cfg)
	args := []string{self, "worker", string(cj)}
	if cpus != "" {
		tp, err := exec.LookPath("taskset")
		if err != nil {
			return nil, fmt.Errorf("start worker: pinning needs taskset: %w", err)
		}
		args = append([]string{tp, "-c", cpus}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	return &workerProc{cmd: cmd, stdin: stdin, out: sc}, nil
}

// call sends req and waits for the answer, or kills the worker when ctx
// ends first.
func (wp *workerProc) call(ctx context.Context, req workerRequest) (workerAnswer, error) {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	b, _ := json.Marshal(req)
	if _, err := wp.stdin.Write(append(b, '\n')); err != nil {
		return workerAnswer{}, fmt.Errorf("worker %d: %s: %w", wp.cmd.Process.Pid, req.Op, err)
	}
	type res struct {
		a   workerAnswer
		err error
	}
	ch := make(chan res, 1)
	go func() {
		if !wp.out.Scan() {
			err := wp.out.Err()
			if err == nil {
				err = io.EOF
			}
			ch <- res{err: err}
			return
		}
		var a workerAnswer
		err := json.Unmarshal(wp.out.Bytes(), &a)
		if err == nil && a.Error != "" {
			err = errors.New(a.Error)
		}
		ch <- res{a, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return r.a, fmt.Errorf("worker %d: %s: %w", wp.cmd.Process.Pid, req.Op, r.err)
		}
		return r.a, nil
	case <-ctx.Done():
		wp.kill()
		return workerAnswer{}, fmt.Errorf("worker %d: %s: %w", wp.cmd.Process.Pid, req.Op, ctx.Err())
	}
}

// pid returns the worker's process id (the tool's own when run under
// taskset, which execs it in place).
func (wp *workerProc) pid() int { return wp.cmd.Process.Pid }

// stop closes the worker's stdin so it exits, killing it after a grace
// period.
func (wp *workerProc) stop() {
	_ = wp.stdin.Close()
	done := make(chan struct{})
	go func() { _ = wp.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		wp.kill()
		<-done
	}
}

func (wp *workerProc) kill() { _ = wp.cmd.Process.Kill() }

// fleet is the set of workers of one run.
type fleet []*workerProc

// each calls fn for every worker in parallel and returns the answers in
// worker order, or the first error.
func (f fleet) each(ctx context.Context, fn func(i int, wp *workerProc) (workerAnswer, error)) ([]workerAnswer, error) {
	out := make([]workerAnswer, len(f))
	errs := make([]error, len(f))
	var wg sync.WaitGroup
	for i, wp := range f {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = fn(i, wp)
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// all sends the same request to every worker.
func (f fleet) all(ctx context.Context, req workerRequest) ([]workerAnswer, error) {
	return f.each(ctx, func(_ int, wp *workerProc) (workerAnswer, error) { return wp.call(ctx, req) })
}

// stats returns the merged counters of all workers.
func (f fleet) stats(ctx context.Context, reset bool) (pstats, error) {
	ans, err := f.all(ctx, workerRequest{Op: "snapshot", Reset: reset})
	var s pstats
	for _, a := range ans {
		if a.Stats != nil {
			st := fromWire(a.Stats)
			s.merge(&st)
		}
	}
	return s, err
}

// cpu returns the CPU seconds used so far by the workers.
func (f fleet) cpu() float64 {
	var t float64
	for _, wp := range f {
		if c, err := procCPU(wp.pid()); err == nil {
			t += c
		}
	}
	return t
}

// stop ends every worker.
func (f fleet) stop() {
	var wg sync.WaitGroup
	for _, wp := range f {
		wg.Add(1)
		go func() { defer wg.Done(); wp.stop() }()
	}
	wg.Wait()
}
