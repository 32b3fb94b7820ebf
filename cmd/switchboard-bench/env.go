package main

import (
	"context"
	"fmt"
	"math"
	"time"
)

// The load environment: splitting connections over workers, measuring the
// server while a step runs, opening and warming connections.

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
