package main

import (
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// Command-line flags and the parameters they put in the results.

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

	rate         float64
	duration     time.Duration
	findMax      bool
	maxP99       time.Duration
	rateFactor   float64
	maxRate      float64
	maxSteps     int
	payload      int
	publishers   int
	batch        int
	h2c          bool
	via          string
	streams      int
	streamNotify bool
	drain        time.Duration
	warmup       time.Duration
	retries      int
	pause        time.Duration
	// sfu: video publishers (the subscribers are --conns).
	sfuPublishers int
	// stream: LL-HLS readers of an RTMP stream published by ffmpeg.
	hlsReaders int
	rtmp       bool
	ffmpeg     string
	rtmpAddr   string // set by runOne: the RTMP ingest of the server it starts

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
  sfu        --sfu-publishers pion peers publish a synthetic VP8 track each
             into one room, --conns pion peers (default 10) receive them all
             for --duration: forwarded streams and packets, server CPU per
             packet, streams per core, loss, time to first packet;
             Switchboard only (calls are turned on in the server it starts)
  stream     one pion peer publishes a synthetic ~2 Mbit/s VP8 stream over
             WHIP, --conns pion peers (default 20) watch it over WHEP for
             --duration (default 20s): packets, loss, send-to-viewer latency,
             server CPU per viewer, viewers per core, time to first frame;
             then, with --hls-readers M, M LL-HLS readers of an H.264 stream
             ffmpeg publishes over RTMP: parts, bytes, part delay;
             Switchboard only (calls are turned on in the server it starts)

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
	fs.BoolVar(&o.h2c, "h2c", false, "publish to Switchboard's server API over HTTP/2 without TLS (h2c), many requests in flight per connection; the baseline stays on HTTP/1.1")
	fs.IntVar(&o.sfuPublishers, "sfu-publishers", 1, "sfu: participants publishing one video track each (the subscribers are --conns)")
	fs.IntVar(&o.hlsReaders, "hls-readers", 0, "stream: after the WHEP viewers, this many LL-HLS readers follow an H.264 stream that ffmpeg publishes over RTMP (implies --rtmp)")
	fs.BoolVar(&o.rtmp, "rtmp", false, "stream: turn on the RTMP ingest (rtmp_addr) of the server the tool starts")
	fs.StringVar(&o.ffmpeg, "ffmpeg", "ffmpeg", "stream: ffmpeg executable for the RTMP publisher of --hls-readers")
	fs.IntVar(&o.batch, "batch", 1, "publications per HTTP API request (POST /api/batch when over 1; the baseline always gets one per request)")
	fs.StringVar(&o.via, "via", "api", "channels: publish through the HTTP API (api), the API stream (stream: --streams WebSockets to /api/stream carrying every publisher's calls; the baseline gets HTTP) or client publish commands (ws)")
	fs.IntVar(&o.streams, "streams", 4, "with --via stream: API streams the publishers share")
	fs.BoolVar(&o.streamNotify, "stream-notify", false, "with --via stream: send publications without ids (the server answers only failures; lost ones show as lost)")
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
	if !set["conns"] && o.scenario == "sfu" {
		o.conns = 10 // pion peers in this process: tens, not thousands
	}
	if o.scenario == "stream" {
		if !set["conns"] {
			o.conns = 20 // pion peers in this process too
		}
		if !set["duration"] {
			o.duration = 20 * time.Second
		}
		if o.hlsReaders > 0 {
			o.rtmp = true
		}
	}
	if o.hlsReaders < 0 {
		return nil, errors.New("--hls-readers must not be negative")
	}
	if o.hlsReaders > 0 && o.url != "" {
		return nil, errors.New("--hls-readers needs a server the tool starts (not --url): it turns the RTMP ingest on")
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
	if o.via != "api" && o.via != "ws" && o.via != "stream" {
		return nil, fmt.Errorf("--via: want api, stream or ws, not %q", o.via)
	}
	if o.streams < 1 {
		return nil, errors.New("--streams must be positive")
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
			p["h2c"] = o.h2c
		}
	case "sfu":
		p["sfu_publishers"] = o.sfuPublishers
		p["duration_s"] = o.duration.Seconds()
		p["warmup_s"] = o.warmup.Seconds()
	case "stream":
		p["duration_s"] = o.duration.Seconds()
		p["warmup_s"] = o.warmup.Seconds()
		p["hls_readers"] = o.hlsReaders
	case "reconnect":
		p["drop"] = o.drop
		p["recover"] = o.recover
		p["jitter_ms"] = o.jitter.Milliseconds()
		p["rate"] = o.rate
	}
	return p
}
