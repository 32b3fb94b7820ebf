package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Steps of a load: publishing at a rate, draining, measuring, and ramping
// the rate to find the most the server sustains.

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
