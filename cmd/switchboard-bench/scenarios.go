package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"
)

// runIdle holds o.conns subscribed connections for o.hold and reports the
// server's resident memory and goroutines per connection.
func runIdle(ctx context.Context, e *env) (targetResult, error) {
	var res targetResult
	if err := sleepCtx(ctx, time.Second); err != nil { // let the server settle
		return res, err
	}
	ps0, err := readProcStatus(e.t.PID)
	if err != nil {
		return res, err
	}
	g0 := e.t.goroutines(ctx)
	channel, prefix := "idle", ""
	if e.o.ownChannels {
		channel, prefix = "", "idle."
	}
	m := e.startMeter()
	or, err := e.open(ctx, channel, prefix, false)
	if err != nil {
		return res, err
	}
	setupCPU := e.stopMeter(m)
	fmt.Fprintf(os.Stderr, "opened %d connections in %.1fs; holding for %s\n", or.opened, or.wall.Seconds(), e.o.hold)
	hold := e.startMeter()
	peak := ps0.RSSKiB
	for end := time.Now().Add(e.o.hold); time.Now().Before(end); {
		if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
			return res, err
		}
		if ps, err := readProcStatus(e.t.PID); err == nil {
			peak = max(peak, ps.RSSKiB)
		}
	}
	held := e.stopMeter(hold)
	ps1, err := readProcStatus(e.t.PID)
	if err != nil {
		return res, err
	}
	g1 := e.t.goroutines(ctx)
	st, err := e.f.stats(ctx, false)
	if err != nil {
		return res, err
	}
	n := float64(or.opened)
	s := &res.Summary
	or.addSetup(s)
	s.add("server_rss_before_kib", float64(ps0.RSSKiB), "KiB", "")
	s.add("server_rss_kib", float64(ps1.RSSKiB), "KiB", "-")
	s.add("server_rss_peak_kib", float64(peak), "KiB", "-")
	s.add("rss_per_conn_kib", float64(ps1.RSSKiB-ps0.RSSKiB)/n, "KiB", "-")
	s.add("anon_per_conn_kib", float64(ps1.RSSAnonKiB-ps0.RSSAnonKiB)/n, "KiB", "-")
	gpc := math.NaN()
	if g0 >= 0 && g1 >= 0 {
		gpc = float64(g1-g0) / n
	}
	s.add("goroutines_per_conn", gpc, "count", "-")
	s.add("server_threads", float64(ps1.Threads), "count", "")
	s.add("server_fds", float64(ps1.FDs), "count", "")
	s.add("setup_server_cpu_s", setupCPU.srvCPU, "s", "-")
	s.add("setup_client_cpu_s", setupCPU.cliCPU, "s", "")
	s.add("hold_server_cpu_pct", held.srvPct, "%core", "-")
	s.add("hold_client_cpu_pct", held.cliPct, "%core", "")
	s.add("closed_during_hold", float64(sumCloses(st)), "count", "-")
	setupCPU.addNet(s)
	return res, nil
}

// runBroadcast: o.conns subscribers on one channel, one publisher.
func runBroadcast(ctx context.Context, e *env) (targetResult, error) {
	return e.broadcast(ctx, func() error { return e.warm(ctx, e.o.payload-40) })
}

// runSSE is the broadcast scenario with Server-Sent Events subscribers,
// which cannot publish: the warm-up goes through the HTTP API.
func runSSE(ctx context.Context, e *env) (targetResult, error) {
	return e.broadcast(ctx, func() error { return e.warmAPI(ctx, "bcast") })
}

func (e *env) broadcast(ctx context.Context, warm func() error) (targetResult, error) {
	var res targetResult
	or, err := e.open(ctx, "bcast", "", false)
	if err != nil {
		return res, err
	}
	or.addSetup(&res.Summary)
	if err := warm(); err != nil {
		return res, err
	}
	var seq atomic.Uint64
	best, err := e.rampRates(ctx, &res, func(rate float64) (stepOutcome, error) {
		return e.measureStep(ctx, rate, uint64(or.opened), func() (uint64, uint64, float64, float64) {
			p := e.publishHTTP(ctx, nil, rate, e.o.duration,
				func(uint64) string { return "bcast" },
				func(uint64) uint64 { return seq.Add(1) })
			return e.figures(p)
		})
	})
	summarize(&res, best, e.o.findMax)
	return res, err
}

// warmAPI publishes warm-up publications to channel through the HTTP API
// until every connection has received one.
func (e *env) warmAPI(ctx context.Context, channel string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := e.t.publish(ctx, channel, payload(time.Now().UnixNano(), 0, e.o.payload-40)); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		if err := sleepCtx(ctx, 300*time.Millisecond); err != nil {
			return err
		}
		left, err := e.unwarmed(ctx, workerRequest{Op: "unwarmed"})
		if err != nil {
			return err
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("warm-up: %d connections received nothing in 30s", left)
		}
	}
}

// runChannels: o.conns subscribers each on its own channel; publications
// spread over the channels through the API or client publish commands.
func runChannels(ctx context.Context, e *env) (targetResult, error) {
	var res targetResult
	const prefix = "ch."
	or, err := e.open(ctx, "", prefix, false)
	if err != nil {
		return res, err
	}
	or.addSetup(&res.Summary)
	if err := e.warm(ctx, e.o.payload-40); err != nil {
		return res, err
	}
	if e.o.via == "stream" && e.t.Name == kindSwitchboard {
		st, err := dialAPIStreams(ctx, e.t.pubAddr(), e.t.APIKey, e.o.streams, e.o.streamNotify)
		if err != nil {
			return res, err
		}
		e.t.streams = st
		defer func() { st.close(); e.t.streams = nil }()
	}
	n := uint64(e.o.conns)
	var round atomic.Uint64 // HTTP: sequence numbers continue across steps
	best, err := e.rampRates(ctx, &res, func(rate float64) (stepOutcome, error) {
		return e.measureStep(ctx, rate, 1, func() (uint64, uint64, float64, float64) {
			if e.o.via == "ws" {
				return e.publishWS(ctx, rate)
			}
			base := round.Load()
			total := uint64(math.Round(rate * e.o.duration.Seconds()))
			round.Add((total + n - 1) / n)
			p := e.publishHTTP(ctx, nil, rate, e.o.duration,
				func(i uint64) string { return prefix + strconv.FormatUint(i%n, 10) },
				func(i uint64) uint64 { return base + i/n + 1 })
			return e.figures(p)
		})
	})
	summarize(&res, best, e.o.findMax)
	return res, err
}

// publishWS has every worker publish its share of rate from its own
// connections, each to its own channel.
func (e *env) publishWS(ctx context.Context, rate float64) (ok, failed uint64, httpP99, lagP99 float64) {
	ans, err := e.f.each(ctx, func(i int, wp *workerProc) (workerAnswer, error) {
		_, count := share(e.o.conns, len(e.f), i)
		return wp.call(ctx, workerRequest{
			Op: "publish", Rate: rate * float64(count) / float64(e.o.conns),
			DurationMs: int(e.o.duration.Milliseconds()), PadBytes: e.o.payload - 40,
		})
	})
	if err != nil {
		e.notes = append(e.notes, "publish: "+err.Error())
	}
	for _, a := range ans {
		ok += a.Published
		failed += a.PubErrors
	}
	return ok, failed, math.NaN(), math.NaN()
}

// checkSaturation notes when the client side or the whole machine had no CPU
// to spare during a step, since its figures then measure the tool or the
// neighbours as much as the server.
func (e *env) checkSaturation(m measured, what string) {
	clientCores := float64(runtime.NumCPU())
	if e.o.clientCPUs != "" {
		if cpus, err := parseCPUList(e.o.clientCPUs); err == nil {
			clientCores = float64(len(cpus))
		}
	}
	switch {
	case m.cliPct > 85*clientCores:
		e.notes = append(e.notes, fmt.Sprintf("%s: the client used %.0f%% of its %.0f core(s): it may be the bottleneck", what, m.cliPct, clientCores))
	case m.srvPct+m.cliPct+m.otherPct > 90*float64(runtime.NumCPU()):
		e.notes = append(e.notes, fmt.Sprintf("%s: the machine was saturated (server %.0f%%, client %.0f%%, others %.0f%% of a core)", what, m.srvPct, m.cliPct, m.otherPct))
	case m.otherPct > e.o.quietPct:
		e.notes = append(e.notes, fmt.Sprintf("%s: other processes used %.0f%% of a core: figures are disturbed", what, m.otherPct))
	}
}

func sumCloses(st pstats) uint64 {
	var n uint64
	for _, v := range st.Closes {
		n += v
	}
	return n
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
