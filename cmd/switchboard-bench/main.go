// Command switchboard-bench is Switchboard's load tool. It starts the server
// under test (Switchboard, or the textbook Node.js baseline in bench/baseline,
// or both one after the other), opens many WebSocket connections from worker
// processes on loopback, runs a scenario, and prints a readable table and
// one JSON line with the figures, the CPU each side used, the server's
// memory, and the kernel's loopback drop and retransmission counters.
//
// Usage:
//
//	switchboard-bench <idle|broadcast|channels|reconnect|sse> [flags]
//
// Run "switchboard-bench -h" for the flags. docs/performance.md explains the
// scenarios, the targets and how to read the results.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// options are the command-line settings.
type options struct {
	scenario string

	targets     []string
	serverBin   string
	serverArgs  stringList
	baselineDir string
	node        string
	url         string
	publishURL  string
	serverPID   int
	apiKey      string

	conns          int
	connsPerWorker int
	pollers        int
	readDelay      time.Duration
	inflight       int
	sources        []string
	setupTimeout   time.Duration
	serverCPUs     string
	clientCPUs     string
	ownChannels    bool

	hold time.Duration

	rate       float64
	duration   time.Duration
	findMax    bool
	maxP99     time.Duration
	rateFactor float64
	maxRate    float64
	maxSteps   int
	payload    int
	publishers int
	batch      int
	via        string
	drain      time.Duration
	warmup     time.Duration
	retries    int
	pause      time.Duration

	drop         string
	recover      bool
	jitter       time.Duration
	recoverLimit time.Duration

	svg     string
	jsonOut string

	waitQuiet time.Duration
	quietPct  float64
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

var scenarios = map[string]func(context.Context, *env) (targetResult, error){
	"idle":      runIdle,
	"broadcast": runBroadcast,
	"channels":  runChannels,
	"reconnect": runReconnect,
	"sse":       runSSE,
}

func main() {
	if len(os.Args) > 2 && os.Args[1] == "worker" {
		if err := runWorker(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "switchboard-bench worker:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "plot" {
		if err := runPlot(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "switchboard-bench plot:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "switchboard-bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("switchboard-bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: switchboard-bench <scenario> [flags]

Scenarios:
  idle       --conns subscribed connections held for --hold: server memory
             per connection, goroutines per connection, setup rate
  broadcast  --conns subscribers of one channel, one publisher through the
             HTTP API at --rate per second for --duration (--find-max raises
             the rate until p99 > --max-p99 or a message is lost)
  channels   --conns subscribers each on its own channel, --rate publications
             per second spread over them (--via api or ws; --batch N
             publications per API request)
  reconnect  --conns subscribers dropped at once (--drop api or restart);
             time until all are back and resubscribed
  sse        broadcast with Server-Sent Events subscribers (GET /sse);
             Switchboard only

  switchboard-bench plot RESULTS.jsonl OUT.svg draws the plot again from
  the last broadcast JSON line of a file written with --json-out.

Flags:
`)
		fs.PrintDefaults()
	}
	target := fs.String("target", kindSwitchboard, "server(s) to run: switchboard, baseline or both (one after the other, with ratios)")
	fs.StringVar(&o.serverBin, "server-bin", "", "Switchboard binary (default: \"switchboard\" beside this tool, else on PATH)")
	fs.Var(&o.serverArgs, "server-arg", "extra argument for \"switchboard serve\" (repeatable), e.g. --server-arg=--queue-max-messages=8192")
	fs.StringVar(&o.baselineDir, "baseline-dir", "bench/baseline", "directory of the Node.js baseline (server.js and node_modules)")
	fs.StringVar(&o.node, "node", "node", "Node.js executable for the baseline")
	fs.StringVar(&o.publishURL, "publish-url", "", "with --url: post publications to this other node of the same cluster (http://host:port), to measure cross-node delivery")
	fs.StringVar(&o.url, "url", "", "use an already running Switchboard at this http://host:port instead of starting one (needs --server-pid)")
	fs.IntVar(&o.serverPID, "server-pid", 0, "pid of the server given with --url, for its memory and CPU")
	fs.StringVar(&o.apiKey, "api-key", "bench-secret", "server API key (given to the servers the tool starts)")
	fs.IntVar(&o.conns, "conns", 1000, "client connections (subscribers)")
	fs.IntVar(&o.connsPerWorker, "conns-per-worker", 5000, "connections per worker process (the open-file limit is per process)")
	fs.IntVar(&o.pollers, "pollers", 1, "event loops (epoll instances) per worker")
	fs.DurationVar(&o.readDelay, "read-delay", 0, "let a busy client event loop pause this long between polls, so it reads several messages per system call (adds up to this much latency)")
	fs.IntVar(&o.inflight, "inflight", 64, "connection setups in flight per worker")
	sources := fs.String("sources", "", "comma-separated local source addresses for connections, e.g. 127.0.0.1,127.0.0.2 (each gives about 28k ports)")
	fs.DurationVar(&o.setupTimeout, "setup-timeout", 2*time.Minute, "time allowed to open all connections")
	fs.StringVar(&o.serverCPUs, "server-cpus", "", "pin the server to these CPUs with taskset, e.g. 0")
	fs.StringVar(&o.clientCPUs, "client-cpus", "", "pin the tool and its workers to these CPUs, e.g. 1")
	pin := fs.Bool("pin", false, "shorthand for --server-cpus 0 --client-cpus 1")
	fs.BoolVar(&o.ownChannels, "own-channels", false, "idle: each connection on its own channel (default: all on one)")
	fs.DurationVar(&o.hold, "hold", 10*time.Second, "idle: how long connections are held before memory is read")
	fs.Float64Var(&o.rate, "rate", 100, "publications per second: broadcast, to the one channel (default 100); channels, in total (default 1000); reconnect, to the clients' channel (default 1)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each publishing step")
	fs.BoolVar(&o.findMax, "find-max", false, "raise the rate by --rate-factor each step until p99 exceeds --max-p99 or a message is lost")
	fs.DurationVar(&o.maxP99, "max-p99", 100*time.Millisecond, "find-max: p99 latency bound")
	fs.Float64Var(&o.rateFactor, "rate-factor", 1.25, "find-max: rate multiplier between steps")
	fs.Float64Var(&o.maxRate, "max-rate", 1e6, "find-max: stop at this rate")
	fs.IntVar(&o.maxSteps, "max-steps", 20, "find-max: most steps")
	fs.IntVar(&o.payload, "payload", 100, "approximate size of each publication's data, in bytes (at least 40)")
	fs.IntVar(&o.publishers, "publishers", 16, "concurrent HTTP publish requests (keep-alive connections)")
	fs.IntVar(&o.batch, "batch", 1, "publications per HTTP API request (POST /api/batch when over 1; the baseline always gets one per request)")
	fs.StringVar(&o.via, "via", "api", "channels: publish through the HTTP API (api) or client publish commands (ws)")
	fs.DurationVar(&o.drain, "drain", 5*time.Second, "longest wait for deliveries after a step's last publication")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "broadcast, channels: an unrecorded first step at --rate of this length (0: none)")
	fs.IntVar(&o.retries, "retries", 1, "find-max: how many times a failed step is run again before the search stops")
	fs.DurationVar(&o.pause, "pause", time.Second, "pause between steps")
	fs.StringVar(&o.drop, "drop", "api", "reconnect: drop clients with /api/disconnect (api) or by restarting the server (restart); the baseline always restarts")
	fs.BoolVar(&o.recover, "recover", true, "reconnect: Switchboard clients resubscribe with \"since\" their last position and count what is recovered")
	fs.DurationVar(&o.jitter, "jitter", time.Second, "reconnect: clients wait a random delay below this before reconnecting")
	fs.DurationVar(&o.recoverLimit, "recover-timeout", time.Minute, "reconnect: longest wait for all clients to be back")
	fs.StringVar(&o.svg, "svg", "", "broadcast: write a latency-against-rate plot of the steps to this SVG file")
	fs.StringVar(&o.jsonOut, "json-out", "", "also append the JSON line to this file")
	fs.DurationVar(&o.waitQuiet, "wait-quiet", 0, "before each target, wait up to this long for the rest of the machine to use under --quiet-pct of a core")
	fs.Float64Var(&o.quietPct, "quiet-pct", 20, "CPU (% of one core) that other processes may use for the machine to count as quiet")

	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		o.scenario, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.scenario == "" && fs.NArg() > 0 {
		o.scenario = fs.Arg(0)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["rate"] {
		switch o.scenario {
		case "reconnect":
			o.rate = 1 // a fan-out to every client, so keep it light
		case "channels":
			o.rate = 1000
		}
	}
	if _, ok := scenarios[o.scenario]; !ok {
		fs.Usage()
		return nil, fmt.Errorf("unknown or missing scenario %q", o.scenario)
	}
	switch *target {
	case kindSwitchboard, kindBaseline:
		o.targets = []string{*target}
	case "both":
		o.targets = []string{kindSwitchboard, kindBaseline}
	default:
		return nil, fmt.Errorf("--target: want switchboard, baseline or both, not %q", *target)
	}
	if *pin {
		o.serverCPUs, o.clientCPUs = "0", "1"
	}
	for _, s := range strings.Split(*sources, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.sources = append(o.sources, s)
		}
	}
	if o.conns < 1 || o.connsPerWorker < 1 {
		return nil, errors.New("--conns and --conns-per-worker must be positive")
	}
	if o.publishURL != "" && (o.url == "" || *target != kindSwitchboard) {
		return nil, errors.New("--publish-url needs --url (a running node) and --target switchboard")
	}
	if o.via != "api" && o.via != "ws" {
		return nil, fmt.Errorf("--via: want api or ws, not %q", o.via)
	}
	if o.drop != "api" && o.drop != "restart" {
		return nil, fmt.Errorf("--drop: want api or restart, not %q", o.drop)
	}
	if o.rate <= 0 || o.rateFactor <= 1 && o.findMax {
		return nil, errors.New("--rate must be positive and --rate-factor above 1")
	}
	o.payload = max(o.payload, 40)
	return o, nil
}

func run(ctx context.Context, args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if o.clientCPUs != "" {
		cpus, err := parseCPUList(o.clientCPUs)
		if err != nil {
			return err
		}
		if err := pinProcess(os.Getpid(), cpus); err != nil {
			return err
		}
		runtime.GOMAXPROCS(len(cpus))
	}
	rep := &report{
		Scenario: o.scenario,
		Time:     nowString(),
		Params:   o.params(),
	}
	node := ""
	for _, t := range o.targets {
		if t == kindBaseline {
			node = o.node
		}
	}
	rep.Machine = machineInfo(node)
	for i, kind := range o.targets {
		if i > 0 {
			time.Sleep(2 * time.Second) // let TIME_WAIT and memory settle
		}
		fmt.Fprintf(os.Stderr, "--- %s: %s with %d connections\n", o.scenario, kind, o.conns)
		res, err := runOne(ctx, o, kind)
		if err != nil {
			return fmt.Errorf("%s against %s: %w", o.scenario, kind, err)
		}
		rep.Results = append(rep.Results, res)
	}
	rep.computeRatios()
	rep.printTables(os.Stdout)
	line := rep.jsonLine()
	fmt.Println(line)
	if o.jsonOut != "" {
		f, err := os.OpenFile(o.jsonOut, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("json-out: %w", err)
		}
		_, werr := fmt.Fprintln(f, line)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return fmt.Errorf("json-out: %w", werr)
		}
	}
	if o.svg != "" && (o.scenario == "broadcast" || o.scenario == "sse") {
		title := fmt.Sprintf("broadcast to %d subscribers: latency against delivery rate", o.conns)
		if err := writeLatencyPlot(o.svg, title, float64(o.maxP99)/1e6, rep.Results); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "plot written to %s\n", o.svg)
	}
	return nil
}

// params returns the settings recorded with a report.
func (o *options) params() map[string]any {
	p := map[string]any{
		"conns": o.conns, "conns_per_worker": o.connsPerWorker,
		"server_cpus": o.serverCPUs, "client_cpus": o.clientCPUs,
		"sources": o.sources, "server_args": []string(o.serverArgs),
		"read_delay_ms": float64(o.readDelay) / 1e6,
		"server_bin":    filepath.Base(o.serverBin),
	}
	switch o.scenario {
	case "idle":
		p["hold_s"] = o.hold.Seconds()
		p["own_channels"] = o.ownChannels
	case "broadcast", "channels", "sse":
		p["rate"] = o.rate
		p["duration_s"] = o.duration.Seconds()
		p["payload_bytes"] = o.payload
		p["find_max"] = o.findMax
		p["warmup_s"] = o.warmup.Seconds()
		if o.findMax {
			p["max_p99_ms"] = float64(o.maxP99) / 1e6
			p["rate_factor"] = o.rateFactor
		}
		if o.scenario == "channels" {
			p["via"] = o.via
			p["batch"] = o.batch
		}
	case "reconnect":
		p["drop"] = o.drop
		p["recover"] = o.recover
		p["jitter_ms"] = o.jitter.Milliseconds()
		p["rate"] = o.rate
	}
	return p
}

// env is one scenario run against one target: the server and the workers.
type env struct {
	o     *options
	t     *target
	f     fleet
	notes []string
}

// runOne starts the target and the workers, runs the scenario, and stops
// everything it started, whatever happens.
func runOne(ctx context.Context, o *options, kind string) (targetResult, error) {
	if o.scenario == "sse" && kind == kindBaseline {
		return targetResult{Target: kind, Notes: []string{"skipped: the baseline has no Server-Sent Events endpoint"}}, nil
	}
	spec := targetSpec{Kind: kind, CPUs: o.serverCPUs, APIKey: o.apiKey}
	switch {
	case kind == kindSwitchboard && o.url != "":
		spec.URL, spec.PID, spec.CPUs, spec.PublishURL = o.url, o.serverPID, "", o.publishURL
	case kind == kindSwitchboard:
		bin, err := findServerBin(o.serverBin)
		if err != nil {
			return targetResult{}, err
		}
		spec.ArgvFor = func(addr string) []string {
			if addr == "" {
				addr = "127.0.0.1:0"
			}
			a := []string{bin, "serve", "--addr", addr, "--api-key", o.apiKey, "--demo=false"}
			return append(a, o.serverArgs...)
		}
	case kind == kindBaseline:
		script := filepath.Join(o.baselineDir, "server.js")
		if _, err := os.Stat(filepath.Join(o.baselineDir, "node_modules", "ws")); err != nil {
			return targetResult{}, fmt.Errorf("baseline: %s has no node_modules/ws: run \"npm ci\" there first", o.baselineDir)
		}
		spec.ArgvFor = func(addr string) []string {
			host, port := "127.0.0.1", "0"
			if addr != "" {
				host, port, _ = strings.Cut(addr, ":")
			}
			return []string{o.node, script, host, port}
		}
	}
	busy := waitQuiet(ctx, o.waitQuiet, o.quietPct)
	t, err := startTarget(ctx, spec)
	if err != nil {
		return targetResult{}, err
	}
	defer t.stop()
	e := &env{o: o, t: t}
	if busy > o.quietPct {
		e.notes = append(e.notes, fmt.Sprintf("the machine was busy before the run: other processes used %.0f%% of a core; figures are disturbed", busy))
	}
	nw := (o.conns + o.connsPerWorker - 1) / o.connsPerWorker
	cfg := clientConfig{
		Addr: t.Addr, Path: "/ws", Kind: kind, Sources: o.sources, Pollers: o.pollers,
		InFlight: o.inflight, ReadDelay: o.readDelay, Recover: o.recover && kind == kindSwitchboard,
	}
	if o.scenario == "sse" {
		cfg.Path, cfg.SSE = "/sse", true
	}
	for i := 0; i < nw; i++ {
		wp, err := startWorker(cfg, o.clientCPUs)
		if err != nil {
			e.f.stop()
			return targetResult{}, err
		}
		e.f = append(e.f, wp)
	}
	defer e.f.stop()
	res, err := scenarios[o.scenario](ctx, e)
	res.Target = kind
	res.Summary.add("other_cpu_before_pct", busy, "%core", "")
	res.Notes = append(res.Notes, e.notes...)
	if !t.alive() {
		res.Notes = append(res.Notes, "the server exited during the run; its last output:\n"+t.logs.String())
	}
	return res, err
}

// waitQuiet samples the machine's CPU use (other than this process) for a
// second at a time until it is under pct of one core or wait has passed, and
// returns the last sample.
func waitQuiet(ctx context.Context, wait time.Duration, pct float64) float64 {
	deadline := time.Now().Add(wait)
	for {
		b0, s0 := machineBusy(), selfCPU()
		if sleepCtx(ctx, time.Second) != nil {
			return 0
		}
		busy := 100 * (machineBusy() - b0 - (selfCPU() - s0))
		if busy <= pct || time.Now().After(deadline) {
			return busy
		}
		fmt.Fprintf(os.Stderr, "waiting for a quiet machine: others use %.0f%% of a core\n", busy)
	}
}

// findServerBin resolves the Switchboard binary.
func findServerBin(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "switchboard")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath("switchboard"); err == nil {
		return p, nil
	}
	return "", errors.New("no Switchboard binary: build one (go build -o bin/switchboard ./cmd/switchboard) and pass --server-bin")
}

// share returns how many of total connections worker i of n holds, and the
// global index of its first one.
func share(total, n, i int) (first, count int) {
	per := total / n
	extra := total % n
	first = i*per + min(i, extra)
	count = per
	if i < extra {
		count++
	}
	return first, count
}

// meter measures CPU and kernel counters over an interval.
type meter struct {
	start         time.Time
	srv, cli, all float64
	srvSys        float64
	net           netCounters
}

func (e *env) startMeter() meter {
	srv := e.t.cpu()
	_, sys, _ := procCPUSplit(e.t.PID)
	return meter{start: time.Now(), srv: srv, srvSys: sys, cli: e.f.cpu() + selfCPU(), all: machineBusy(), net: readNetCounters()}
}

// measured is what a meter saw.
type measured struct {
	wall           float64 // s
	srvCPU, cliCPU float64 // s
	srvPct, cliPct float64 // % of one core
	srvSysPct      float64 // share of the server's CPU spent in the kernel, %
	// otherPct is the CPU the rest of the machine used (other processes,
	// and softirq work done outside the two sides), % of one core.
	otherPct         float64
	net              netCounters
	serverRSSKiB     float64
	serverRSSAnonKiB float64
}

func (e *env) stopMeter(m meter) measured {
	srv := e.t.cpu()
	r := measured{
		wall:   time.Since(m.start).Seconds(),
		srvCPU: srv - m.srv,
		cliCPU: e.f.cpu() + selfCPU() - m.cli,
		net:    readNetCounters().sub(m.net),
	}
	if r.wall > 0 {
		r.srvPct = 100 * r.srvCPU / r.wall
		r.cliPct = 100 * r.cliCPU / r.wall
		r.otherPct = max(0, 100*(machineBusy()-m.all-r.srvCPU-r.cliCPU)/r.wall)
	}
	r.srvSysPct = math.NaN()
	if _, sys, err := procCPUSplit(e.t.PID); err == nil && r.srvCPU > 0 && sys >= m.srvSys {
		r.srvSysPct = 100 * (sys - m.srvSys) / r.srvCPU
	}
	if ps, err := readProcStatus(e.t.PID); err == nil {
		r.serverRSSKiB, r.serverRSSAnonKiB = float64(ps.RSSKiB), float64(ps.RSSAnonKiB)
	}
	return r
}

// addCPU adds the CPU figures of m to ms.
func (m measured) addCPU(ms *metrics) {
	ms.add("server_cpu_pct", m.srvPct, "%core", "")
	ms.add("client_cpu_pct", m.cliPct, "%core", "")
	ms.add("other_cpu_pct", m.otherPct, "%core", "")
}

// addNet adds the kernel counters of m to ms.
func (m measured) addNet(ms *metrics) {
	ms.add("net_softnet_drops", float64(m.net.SoftnetDrops), "count", "")
	ms.add("net_retrans", float64(m.net.RetransSegs), "count", "")
	ms.add("net_listen_drops", float64(m.net.ListenDrops+m.net.ListenOverflows), "count", "")
}

// openResult sums up the opening of the connections.
type openResult struct {
	opened, failed int
	failures       map[string]int
	wall           time.Duration
	setup          hist
}

// open opens o.conns connections spread over the workers.
func (e *env) open(ctx context.Context, channel, ownPrefix string, connect bool) (openResult, error) {
	start := time.Now()
	ans, err := e.f.each(ctx, func(i int, wp *workerProc) (workerAnswer, error) {
		first, count := share(e.o.conns, len(e.f), i)
		return wp.call(ctx, workerRequest{
			Op: "open", First: first, Count: count, Channel: channel, OwnPrefix: ownPrefix,
			Connect: connect, TimeoutMs: int(e.o.setupTimeout.Milliseconds()),
		})
	})
	r := openResult{wall: time.Since(start), failures: map[string]int{}}
	for _, a := range ans {
		r.opened += a.Opened
		r.failed += a.Failed
		for k, v := range a.Failures {
			r.failures[k] += v
		}
		if a.SetupHist != nil {
			r.setup.merge(a.SetupHist.hist())
		}
	}
	if err != nil {
		return r, err
	}
	if r.failed > 0 {
		e.notes = append(e.notes, fmt.Sprintf("%d of %d connections failed to set up: %v", r.failed, e.o.conns, r.failures))
	}
	if r.opened == 0 {
		return r, fmt.Errorf("no connection could be opened: %v", r.failures)
	}
	return r, nil
}

// addSetup adds the setup figures of r to ms.
func (r openResult) addSetup(ms *metrics) {
	ms.add("conns_opened", float64(r.opened), "count", "")
	ms.add("conns_failed", float64(r.failed), "count", "-")
	rate := math.NaN()
	if r.wall > 0 {
		rate = float64(r.opened) / r.wall.Seconds()
	}
	ms.add("setup_rate", rate, "conn/s", "+")
	ms.add("setup_p99_ms", float64(r.setup.quantile(0.99))/1000, "ms", "-")
}

// unwarmed sends req to every worker and returns how many connections have
// not yet received a warm-up publication.
func (e *env) unwarmed(ctx context.Context, req workerRequest) (int, error) {
	ans, err := e.f.all(ctx, req)
	if err != nil {
		return 0, err
	}
	left := 0
	for _, a := range ans {
		left += a.Unwarmed
	}
	return left, nil
}

// warm makes every connection receive a warm-up publication, so that
// subscriptions are known to be in place before measuring (the baseline does
// not acknowledge subscribe).
func (e *env) warm(ctx context.Context, padBytes int) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		left, err := e.unwarmed(ctx, workerRequest{Op: "warm", PadBytes: padBytes})
		if err != nil {
			return err
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("warm-up: %d connections received nothing in 30s", left)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}
