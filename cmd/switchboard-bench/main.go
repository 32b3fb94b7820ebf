// Command switchboard-bench is Switchboard's load tool. It starts the server
// under test (Switchboard, or the textbook Node.js baseline in bench/baseline,
// or both one after the other), opens many WebSocket connections from worker
// processes on loopback, runs a scenario, and prints a readable table and
// one JSON line with the figures, the CPU each side used, the server's
// memory, and the kernel's loopback drop and retransmission counters.
//
// Usage:
//
//	switchboard-bench <idle|broadcast|channels|reconnect|sse|sfu|stream> [flags]
//
// Run "switchboard-bench -h" for the flags. docs/performance.md explains the
// scenarios, the targets and how to read the results.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

var scenarios = map[string]func(context.Context, *env) (targetResult, error){
	"idle":      runIdle,
	"broadcast": runBroadcast,
	"channels":  runChannels,
	"reconnect": runReconnect,
	"sse":       runSSE,
	"sfu":       runSFU,
	"stream":    runStream,
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
	if o.scenario == "sfu" && kind == kindBaseline {
		return targetResult{Target: kind, Notes: []string{"skipped: the baseline has no SFU"}}, nil
	}
	if o.scenario == "stream" && kind == kindBaseline {
		return targetResult{Target: kind, Notes: []string{"skipped: the baseline has no live streams"}}, nil
	}
	if o.scenario == "sse" && kind == kindBaseline {
		return targetResult{Target: kind, Notes: []string{"skipped: the baseline has no Server-Sent Events endpoint"}}, nil
	}
	spec := targetSpec{Kind: kind, CPUs: o.serverCPUs, APIKey: o.apiKey, H2C: o.h2c && kind == kindSwitchboard}
	switch {
	case kind == kindSwitchboard && o.url != "":
		spec.URL, spec.PID, spec.CPUs, spec.PublishURL = o.url, o.serverPID, "", o.publishURL
	case kind == kindSwitchboard:
		var sfuArgs []string
		if o.scenario == "sfu" || o.scenario == "stream" {
			var err error
			if sfuArgs, err = sfuServerArgs(); err != nil {
				return targetResult{}, err
			}
		}
		if o.scenario == "stream" && o.rtmp {
			a, addr, err := rtmpServerArgs()
			if err != nil {
				return targetResult{}, err
			}
			sfuArgs, o.rtmpAddr = append(sfuArgs, a...), addr
		}
		bin, err := findServerBin(o.serverBin)
		if err != nil {
			return targetResult{}, err
		}
		spec.ArgvFor = func(addr string) []string {
			if addr == "" {
				addr = "127.0.0.1:0"
			}
			a := []string{bin, "serve", "--addr", addr, "--api-key", o.apiKey, "--demo=false"}
			a = append(a, sfuArgs...)
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
	if o.scenario == "sfu" || o.scenario == "stream" {
		nw = 0 // the participants are pion peers in this process
	}
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
