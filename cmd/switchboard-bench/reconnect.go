package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// The reconnect scenario: many clients dropped at once come back and recover.

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
