package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"sync"
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

// publisher publishes through the target's HTTP API at a steady rate, from
// o.publishers concurrent keep-alive connections.
type publisher struct {
	ok, failed atomic.Uint64
	httpLat    hist
	lag        hist // µs from a publication's due time to its request start
	mu         sync.Mutex
	firstErr   error
}

// publishHTTP publishes rate publications per second for d; channelOf and
// seqOf give each publication's channel and sequence number from its index.
// Each carries the time it was due, so a backlog in the publisher or the
// server's API counts as latency. Closing stop ends it early: no new
// publication starts, and those in flight complete.
func (e *env) publishHTTP(ctx context.Context, stop <-chan struct{}, rate float64, d time.Duration, channelOf func(i uint64) string, seqOf func(i uint64) uint64) *publisher {
	p := &publisher{}
	total := uint64(math.Round(rate * d.Seconds()))
	// A job is publications [i, i+n): one request, or one batch request
	// when the target takes batches.
	type job struct {
		i, n uint64
		due  time.Time // the first publication's
	}
	batch := uint64(1)
	if e.o.batch > 1 && e.t.Name == kindSwitchboard {
		batch = uint64(e.o.batch)
	}
	jobs := make(chan job, 1<<16)
	pad := e.o.payload - 40
	interval := float64(time.Second) / rate
	var wg sync.WaitGroup
	for k := 0; k < e.o.publishers; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local, lag hist
			var pubs []batchPub
			for j := range jobs {
				t0 := time.Now()
				lag.record(uint64(max(t0.Sub(j.due), 0).Microseconds()))
				pubs = pubs[:0]
				for i := j.i; i < j.i+j.n; i++ {
					due := j.due.Add(time.Duration(float64(i-j.i) * interval))
					pubs = append(pubs, batchPub{channelOf(i), payload(due.UnixNano(), seqOf(i), pad)})
				}
				var failed uint64
				var err error
				if batch > 1 {
					failed, err = e.t.publishBatch(ctx, pubs)
				} else {
					err = e.t.publish(ctx, pubs[0].channel, pubs[0].data)
				}
				if err != nil && ctx.Err() != nil {
					continue // stopped on purpose, not a failure
				}
				if err != nil {
					failed = j.n
				}
				if failed > 0 {
					p.failed.Add(failed)
					p.mu.Lock()
					if p.firstErr == nil {
						p.firstErr = err
						if err == nil {
							p.firstErr = fmt.Errorf("publish batch: %d of %d commands failed", failed, j.n)
						}
					}
					p.mu.Unlock()
				}
				local.record(uint64(time.Since(t0).Microseconds()))
				p.ok.Add(j.n - failed)
			}
			p.mu.Lock()
			p.httpLat.merge(&local)
			p.lag.merge(&lag)
			p.mu.Unlock()
		}()
	}
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
dispatch:
	for i := uint64(0); i < total && ctx.Err() == nil; i += batch {
		n := min(batch, total-i)
		due := start.Add(time.Duration(float64(i) * interval))
		// A batch leaves when its last publication is due.
		last := start.Add(time.Duration(float64(i+n-1) * interval))
		if wait := time.Until(last); wait > time.Millisecond {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-stop:
				break dispatch
			}
		}
		select {
		case jobs <- job{i, n, due}:
		case <-stop:
			break dispatch
		}
	}
	close(jobs)
	wg.Wait()
	return p
}

// figures turns a publisher's counts into a step's publish figures: ok,
// failed, the API's p99 and the publisher's own lag p99 (ms), noting its
// first error.
func (e *env) figures(p *publisher) (ok, failed uint64, httpP99, lagP99 float64) {
	if p.firstErr != nil {
		e.notes = append(e.notes, "publish error: "+p.firstErr.Error())
	}
	return p.ok.Load(), p.failed.Load(), float64(p.httpLat.quantile(0.99)) / 1000, float64(p.lag.quantile(0.99)) / 1000
}

// drainUntil polls the workers until want publications were received, or
// nothing more arrives for a second, or o.drain has passed.
func (e *env) drainUntil(ctx context.Context, want uint64) (pstats, error) {
	deadline := time.Now().Add(e.o.drain)
	var last uint64
	lastChange := time.Now()
	for {
		st, err := e.f.stats(ctx, false)
		if err != nil {
			return st, err
		}
		got := st.Received + st.Recovered
		if got >= want || time.Now().After(deadline) || time.Since(lastChange) > time.Second {
			return st, nil
		}
		if got != last {
			last, lastChange = got, time.Now()
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return st, err
		}
	}
}

// stepOutcome is one publishing step's figures.
type stepOutcome struct {
	m    metrics
	good bool
	why  string
}

// measureStep runs one publishing step with publish (which returns how many
// publications succeeded and failed) and turns the deliveries into figures.
// subsPerPub is how many deliveries each publication should make.
func (e *env) measureStep(ctx context.Context, rate float64, subsPerPub uint64, publish func() (ok, failed uint64, httpP99, lagP99 float64)) (stepOutcome, error) {
	if _, err := e.f.stats(ctx, true); err != nil {
		return stepOutcome{}, err
	}
	before := e.t.scrape(ctx)
	m := e.startMeter()
	t0 := time.Now()
	ok, failed, httpP99, lagP99 := publish()
	pubWall := time.Since(t0).Seconds()
	want := ok * subsPerPub
	st, err := e.drainUntil(ctx, want)
	if err != nil {
		return stepOutcome{}, err
	}
	ms := e.stopMeter(m)
	lost := int64(want) - int64(st.Received)
	var out stepOutcome
	r := &out.m
	r.add("rate", rate, "pub/s", "")
	r.add("published", float64(ok), "count", "")
	r.add("publish_errors", float64(failed), "count", "-")
	r.add("delivered", float64(st.Received), "count", "")
	r.add("delivered_per_s", float64(st.Received)/pubWall, "msg/s", "+")
	r.add("lost", float64(max(lost, 0)), "count", "-")
	r.add("gaps", float64(st.Gaps), "count", "-")
	r.add("p50_ms", float64(st.Lat.quantile(0.50))/1000, "ms", "-")
	r.add("p99_ms", float64(st.Lat.quantile(0.99))/1000, "ms", "-")
	r.add("p999_ms", float64(st.Lat.quantile(0.999))/1000, "ms", "-")
	r.add("max_ms", float64(st.Lat.Max)/1000, "ms", "-")
	r.add("closed", float64(sumCloses(st)), "count", "-")
	r.add("slow_4001", float64(st.Closes[4001]), "count", "-")
	if !math.IsNaN(httpP99) {
		r.add("api_p99_ms", httpP99, "ms", "-")
		// How late the tool started its requests: when this grows, the
		// publisher (not the server) limits the step; raise --publishers.
		r.add("pub_lag_p99_ms", lagP99, "ms", "")
	}
	if before != nil {
		after := e.t.scrape(ctx)
		// The server's own view: publication in to socket write done.
		r.add("server_p99_ms", serverLatencyQuantile(before, after, 0.99), "ms", "-")
		// How well the server coalesces deliveries into socket writes.
		const sent, writes = "switchboard_messages_sent_total", "switchboard_socket_writes_total"
		mpw := math.NaN()
		if dw := after[writes] - before[writes]; dw > 0 {
			mpw = (after[sent] - before[sent]) / dw
		}
		r.add("msgs_per_write", mpw, "count", "")
	}
	ms.addCPU(r)
	r.add("server_sys_share_pct", ms.srvSysPct, "%", "")
	ms.addNet(r)
	e.checkSaturation(ms, fmt.Sprintf("%.0f/s", rate))
	p99 := st.Lat.quantile(0.99)
	switch {
	case lost > 0 || failed > 0 || st.Gaps > 0 || sumCloses(st) > 0:
		out.why = fmt.Sprintf("lost %d, publish errors %d, gaps %d, closed %d", max(lost, 0), failed, st.Gaps, sumCloses(st))
	case time.Duration(p99)*time.Microsecond > e.o.maxP99:
		out.why = fmt.Sprintf("p99 %.1f ms over %s", float64(p99)/1000, e.o.maxP99)
	default:
		out.good = true
	}
	return out, nil
}

// rampRates runs step at o.rate, then, with --find-max, at rates raised by
// o.rateFactor until a step is not good. It returns the steps and the last
// good one (nil if none).
func (e *env) rampRates(ctx context.Context, res *targetResult, runStep func(rate float64) (stepOutcome, error)) (*stepOutcome, error) {
	var best *stepOutcome
	rate := e.o.rate
	if e.o.warmup > 0 {
		// A first step that is not recorded: it lets a JIT compiler, a
		// heap and the connections' buffers reach their working size.
		fmt.Fprintf(os.Stderr, "warm-up: %.0f publications/s for %s (not recorded)\n", rate, e.o.warmup)
		d, kept := e.o.duration, len(e.notes)
		e.o.duration = e.o.warmup
		_, err := runStep(rate)
		e.o.duration = d
		if err != nil {
			return nil, err
		}
		e.notes = e.notes[:kept]
		if err := sleepCtx(ctx, e.o.pause); err != nil {
			return nil, err
		}
	}
	for i := 0; i < e.o.maxSteps; i++ {
		fmt.Fprintf(os.Stderr, "step %d: %.0f publications/s for %s\n", i+1, rate, e.o.duration)
		out, err := runStep(rate)
		if err != nil {
			return best, err
		}
		name := strconv.Itoa(i + 1)
		for r := 0; !out.good && r < e.o.retries; r++ {
			// A neighbour's burst can spoil one step: try the rate again
			// before concluding.
			res.Steps = append(res.Steps, step{Name: name + " (failed)", M: out.m})
			e.notes = append(e.notes, fmt.Sprintf("step %d (%.0f/s) failed the bound (%s); retrying", i+1, rate, out.why))
			if err := sleepCtx(ctx, 2*e.o.pause); err != nil {
				return best, err
			}
			if e.o.waitQuiet > 0 {
				waitQuiet(ctx, e.o.waitQuiet, e.o.quietPct)
			}
			if out, err = runStep(rate); err != nil {
				return best, err
			}
		}
		res.Steps = append(res.Steps, step{Name: name, M: out.m})
		if !out.good {
			e.notes = append(e.notes, fmt.Sprintf("step %d (%.0f/s) failed the bound: %s", i+1, rate, out.why))
			break
		}
		best = &out
		if !e.o.findMax {
			break
		}
		next := math.Round(rate * e.o.rateFactor)
		if next > e.o.maxRate {
			break
		}
		rate = next
		if err := sleepCtx(ctx, e.o.pause); err != nil {
			return best, err
		}
		if !e.t.alive() {
			return best, fmt.Errorf("server exited")
		}
	}
	if !e.o.findMax && best == nil && len(res.Steps) > 0 {
		// A single fixed-rate step: report its last try even when it
		// missed the bound.
		return &stepOutcome{m: res.Steps[len(res.Steps)-1].M}, nil
	}
	return best, nil
}

// summarize copies the figures of the chosen step into the summary.
func summarize(res *targetResult, best *stepOutcome, findMax bool) {
	if best == nil {
		res.Summary.add("max_good_rate", 0, "pub/s", "+")
		return
	}
	for _, m := range best.m {
		if findMax && m.Key == "rate" {
			m.Key, m.Better = "max_good_rate", "+"
		}
		res.Summary = append(res.Summary, m)
	}
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

// runReconnect drops every client at once and measures how long they take
// to be back and subscribed, while a publisher keeps publishing.
func runReconnect(ctx context.Context, e *env) (targetResult, error) {
	var res targetResult
	drop := e.o.drop
	if e.t.Name == kindBaseline && drop == "api" {
		drop = "restart"
		e.notes = append(e.notes, "the baseline has no disconnect API: dropped by restarting it")
	}
	if drop == "restart" && e.t.argvFor == nil {
		return res, fmt.Errorf("--drop restart needs a server the tool starts (not --url)")
	}
	or, err := e.open(ctx, "rc", "", drop == "api")
	if err != nil {
		return res, err
	}
	or.addSetup(&res.Summary)
	if err := e.warm(ctx, e.o.payload-40); err != nil {
		return res, err
	}
	var ids []string
	if drop == "api" {
		ans, err := e.f.all(ctx, workerRequest{Op: "ids"})
		if err != nil {
			return res, err
		}
		for _, a := range ans {
			ids = append(ids, a.IDs...)
		}
	}
	if _, err := e.f.all(ctx, workerRequest{Op: "reconnect", Enable: true, JitterMs: int(e.o.jitter.Milliseconds())}); err != nil {
		return res, err
	}
	if _, err := e.f.stats(ctx, true); err != nil {
		return res, err
	}
	// A publisher keeps going on the channel through the drop, so that
	// offsets show what reconnecting clients missed.
	pubStop := make(chan struct{})
	stopPub := sync.OnceFunc(func() { close(pubStop) })
	var seq atomic.Uint64
	pubDone := make(chan *publisher, 1)
	go func() {
		pubDone <- e.publishHTTP(ctx, pubStop, e.o.rate, e.o.recoverLimit+30*time.Second,
			func(uint64) string { return "rc" }, func(uint64) uint64 { return seq.Add(1) })
	}()
	if err := sleepCtx(ctx, time.Second); err != nil {
		stopPub()
		return res, err
	}
	m := e.startMeter()
	t0 := time.Now()
	var dropWall time.Duration
	switch drop {
	case "api":
		dropWall, err = e.disconnectAll(ctx, ids)
	case "restart":
		err = e.t.restart(ctx)
		dropWall = time.Since(t0)
	}
	if err != nil {
		stopPub()
		<-pubDone
		return res, err
	}
	fmt.Fprintf(os.Stderr, "dropped %d clients (%s) in %.2fs; waiting for them to come back\n", or.opened, drop, dropWall.Seconds())
	var back, total int
	var lastBack int64
	var backHist hist
	deadline := t0.Add(e.o.recoverLimit)
	for {
		ans, err := e.f.all(ctx, workerRequest{Op: "status", Since: t0.UnixNano()})
		if err != nil {
			stopPub()
			<-pubDone
			return res, err
		}
		back, total, lastBack, backHist = 0, 0, 0, hist{}
		for _, a := range ans {
			back += a.Back
			total += a.Total
			lastBack = max(lastBack, a.LastBackNs)
			backHist.merge(a.BackHist.hist())
		}
		if back >= or.opened || time.Now().After(deadline) {
			break
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			stopPub()
			<-pubDone
			return res, err
		}
	}
	ms := e.stopMeter(m)
	// Keep publishing a moment after everyone is back, then stop.
	_ = sleepCtx(ctx, time.Second)
	stopPub()
	p := <-pubDone
	expected := p.ok.Load() * uint64(or.opened)
	st, err := e.drainUntil(ctx, expected)
	if err != nil {
		return res, err
	}
	s := &res.Summary
	s.add("dropped", float64(sumCloses(st)), "count", "")
	s.add("back", float64(back), "count", "+")
	allBack := math.NaN()
	if back >= or.opened && lastBack > 0 {
		allBack = float64(lastBack-t0.UnixNano()) / 1e9
	}
	s.add("all_back_s", allBack, "s", "-")
	s.add("back_p50_s", float64(backHist.quantile(0.5))/1e6, "s", "-")
	s.add("back_p99_s", float64(backHist.quantile(0.99))/1e6, "s", "-")
	s.add("drop_wall_s", dropWall.Seconds(), "s", "")
	s.add("publications", float64(p.ok.Load()), "count", "")
	s.add("publish_errors", float64(p.failed.Load()), "count", "")
	s.add("expected", float64(expected), "count", "")
	s.add("delivered_live", float64(st.Received), "count", "")
	s.add("recovered", float64(st.Recovered), "count", "")
	s.add("lost", float64(max(int64(expected)-int64(st.Received+st.Recovered), 0)), "count", "-")
	s.add("duplicates", float64(st.Reordered), "count", "-")
	s.add("recoveries", float64(st.Recoveries), "count", "")
	s.add("unrecovered", float64(st.Unrecovered), "count", "-")
	s.add("epoch_changed", float64(st.EpochChanged), "count", "")
	lost := math.NaN()
	if e.t.Name == kindSwitchboard && st.EpochChanged == 0 {
		lost = float64(st.ResubGapped + st.Gaps)
	}
	s.add("lost_by_offset", lost, "count", "-")
	ms.addCPU(s)
	ms.addNet(s)
	if p.failed.Load() > 0 {
		e.notes = append(e.notes, "some publish calls failed or timed out; a timed-out one may still have been published, so \"lost\" may be undercounted (lost_by_offset is not affected)")
	}
	switch {
	case e.t.Name == kindBaseline:
		e.notes = append(e.notes, "the baseline has no offsets or recovery: lost is what subscribers missed of the publications it accepted")
	case st.EpochChanged > 0:
		e.notes = append(e.notes, "the restarted server started new stream epochs (the memory broker keeps no history across a restart): nothing can be recovered")
	case !e.o.recover:
		e.notes = append(e.notes, "recovery was off (--recover=false): lost counts what clients missed while away")
	}
	if back < or.opened {
		e.notes = append(e.notes, fmt.Sprintf("only %d of %d clients were back after %s", back, or.opened, e.o.recoverLimit))
	}
	return res, nil
}

// disconnectAll asks the server to disconnect every client id with
// reconnect advice, from o.publishers concurrent requests.
func (e *env) disconnectAll(ctx context.Context, ids []string) (time.Duration, error) {
	start := time.Now()
	ch := make(chan string)
	var failed atomic.Int64
	var wg sync.WaitGroup
	for k := 0; k < max(e.o.publishers, 32); k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ch {
				if err := e.t.api(ctx, "POST", "/api/disconnect", map[string]any{"client": id, "reconnect": true}, nil); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	for _, id := range ids {
		ch <- id
	}
	close(ch)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		e.notes = append(e.notes, fmt.Sprintf("%d disconnect calls failed", n))
	}
	return time.Since(start), nil
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
