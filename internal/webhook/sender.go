package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
)

// leaseLoop marks the node alive and takes or renews every partition's
// lease, three times per LeaseTTL, starting a sender for each partition
// won and stopping the sender of each one lost.
func (d *Dispatcher) leaseLoop() {
	defer d.wg.Done()
	t := d.clock.NewTicker(d.opts.LeaseTTL / 3)
	defer t.Stop()
	for {
		d.leaseRound()
		select {
		case <-d.life.Done():
			d.mu.Lock()
			for p, s := range d.senders {
				s.cancel()
				delete(d.senders, p)
			}
			d.mu.Unlock()
			return
		case <-t.Chan():
		}
	}
}

func (d *Dispatcher) leaseRound() {
	ctx, cancel := context.WithTimeout(d.life, d.opts.LeaseTTL/3)
	defer cancel()
	had, err := d.q.Beat(ctx, d.opts.NodeID, d.opts.LeaseTTL)
	switch {
	case err != nil && ctx.Err() == nil:
		d.log.Warn("webhook: mark node alive failed", "err", err)
	case err == nil && !had && d.opts.Rejoin != nil && d.rejoining.CompareAndSwap(false, true):
		// The mark had expired: other nodes may have removed this node's
		// clients as gone. They are reported again on a goroutine of
		// their own, so that the leases are renewed meanwhile.
		d.log.Warn("webhook: this node's liveness mark had expired; reporting its subscriptions again")
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer d.rejoining.Store(false)
			rctx, cancel := context.WithTimeout(d.life, time.Minute)
			defer cancel()
			d.opts.Rejoin(rctx)
		}()
	}
	var backlog int64
	for p := range d.opts.Partitions {
		ok, err := d.q.Lease(ctx, p, d.owner, d.opts.LeaseTTL)
		now := d.clock.Now()
		d.mu.Lock()
		s := d.senders[p]
		switch {
		case s == nil && ok:
			s = &sender{wake: make(chan struct{}, 1), renewed: now}
			var sctx context.Context
			sctx, s.cancel = context.WithCancel(d.life)
			d.senders[p] = s
			d.wg.Add(1)
			go d.send(sctx, p, s)
		case s != nil && ok:
			s.renewed = now
		case s != nil && (err == nil || now.Sub(s.renewed) >= d.opts.LeaseTTL/2):
			// Lost, or not renewed for half its TTL: the next round may
			// come after another node took it, so stop now.
			s.cancel()
			delete(d.senders, p)
		}
		if s := d.senders[p]; s != nil {
			backlog += s.backlog
		}
		d.mu.Unlock()
		if err != nil && d.life.Err() == nil {
			d.log.Warn("webhook: lease failed", "partition", p, "err", err)
		}
	}
	d.m.WebhookBacklog.Set(float64(backlog))
}

// send is a partition's sender: it reads facts, turns them into events
// against the partition's state, delivers them and only then saves the
// state and acknowledges the facts. It returns when ctx ends (the lease
// was lost, or Stop); what it had not acknowledged is read again by the
// next holder.
func (d *Dispatcher) send(ctx context.Context, p int, s *sender) {
	defer d.wg.Done()
	var st *partState
	for st == nil {
		stored, err := d.q.LoadState(ctx, p)
		if err != nil {
			if !d.pause(ctx, d.opts.PollInterval, nil) {
				return
			}
			continue
		}
		var bad []string
		st, bad = loadPartState(stored)
		if len(bad) > 0 {
			d.log.Error("webhook: unreadable channel state dropped", "partition", p, "channels", bad)
		}
	}
	sweepAt := d.clock.Now()
	bl, _ := d.q.(Backlogger)
	var events []Event
	for ctx.Err() == nil {
		entries, err := d.q.Read(ctx, p, d.owner, d.opts.BatchSize)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("webhook: read failed", "partition", p, "err", err)
			}
			d.pause(ctx, d.opts.PollInterval, nil)
			continue
		}
		events = d.derive(st, p, entries, events[:0])
		if now := d.clock.Now(); !now.Before(sweepAt) {
			sweepAt = now.Add(d.opts.LeaseTTL / 3)
			events = d.sweep(ctx, st, now, events)
		}
		if len(events) > 0 && !d.deliver(ctx, events) {
			return
		}
		if !d.commit(ctx, p, st, entries) {
			return
		}
		if bl != nil {
			if n, err := bl.Backlog(ctx, p); err == nil {
				d.mu.Lock()
				s.backlog = n
				d.mu.Unlock()
			}
		}
		if len(entries) == 0 {
			d.pause(ctx, d.opts.PollInterval, s.wake)
		}
	}
}

// derive applies entries to st and appends the selected events to out.
// An entry that is not a fact is logged and dropped.
func (d *Dispatcher) derive(st *partState, p int, entries []broker.QueueEntry, out []Event) []Event {
	for _, e := range entries {
		f, err := decodeFact(e.Data)
		if err != nil {
			d.log.Error("webhook: dropped an unreadable queue entry", "partition", p, "id", e.ID, "err", err)
			continue
		}
		n := len(out)
		out = st.apply(f, out)
		out = d.filter(out, n)
	}
	return out
}

// filter drops the events from out[from:] that are not selected.
func (d *Dispatcher) filter(out []Event, from int) []Event {
	keep := out[:from]
	for _, e := range out[from:] {
		if d.opts.Selected(e.Channel, e.Type) {
			keep = append(keep, e)
		}
	}
	return keep
}

// sweep removes the clients of nodes that are no longer alive from st.
func (d *Dispatcher) sweep(ctx context.Context, st *partState, now time.Time, out []Event) []Event {
	nodes := st.liveNodes()
	if len(nodes) == 0 {
		return out
	}
	alive, err := d.q.Alive(ctx, nodes)
	if err != nil {
		return out // try again at the next sweep
	}
	for _, n := range nodes {
		// This node is alive whatever its mark says (a late beat, under
		// load): it never removes its own clients.
		if !alive[n] && n != d.opts.NodeID {
			d.log.Info("webhook: node gone, removing its clients", "node", n)
			from := len(out)
			out = st.dropNode(n, now, out)
			out = d.filter(out, from)
		}
	}
	return out
}

// commit saves the state changed by a delivered batch, then acknowledges
// its facts, retrying each until it succeeds or ctx ends.
func (d *Dispatcher) commit(ctx context.Context, p int, st *partState, entries []broker.QueueEntry) bool {
	set, del := st.changes()
	for len(set)+len(del) > 0 {
		err := d.q.SaveState(ctx, p, set, del)
		if err == nil {
			break
		}
		d.log.Warn("webhook: save state failed", "partition", p, "err", err)
		if !d.pause(ctx, d.opts.PollInterval, nil) {
			return false
		}
	}
	if len(entries) == 0 {
		return true
	}
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.ID
	}
	for {
		err := d.q.Ack(ctx, p, ids)
		if err == nil {
			return true
		}
		d.log.Warn("webhook: ack failed", "partition", p, "err", err)
		if !d.pause(ctx, d.opts.PollInterval, nil) {
			return false
		}
	}
}

// deliver POSTs events until the endpoint answers 2xx, pausing between
// attempts. It reports false when ctx ended first.
func (d *Dispatcher) deliver(ctx context.Context, events []Event) bool {
	body, err := json.Marshal(Batch{Events: events})
	if err != nil {
		panic(err) // plain structs always encode
	}
	start := d.clock.Now()
	for attempt := 0; ; attempt++ {
		reason, err := d.post(ctx, body)
		if err == nil {
			d.m.WebhookBatchDuration.Observe(d.clock.Since(start).Seconds())
			for _, e := range events {
				d.m.WebhookDelivered.WithLabelValues(e.Type).Inc()
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		d.m.WebhookFailures.WithLabelValues(reason).Inc()
		d.log.Warn("webhook: delivery failed, will retry", "events", len(events), "attempt", attempt+1, "reason", reason, "err", err)
		if !d.pause(ctx, d.backoff(attempt), nil) {
			return false
		}
		d.m.WebhookRetries.Inc()
	}
}

// Failure reasons of one attempt, the label of the failures metric.
const (
	failStatus   = "status"   // an answer outside 2xx (3xx included)
	failTimeout  = "timeout"  // no whole answer within Timeout
	failNetwork  = "network"  // the connection failed
	failInternal = "internal" // the request could not be built
)

// post sends one request and reads at most 64 KiB of the answer.
func (d *Dispatcher) post(ctx context.Context, body []byte) (reason string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.opts.Endpoint, bytes.NewReader(body))
	if err != nil {
		return failInternal, fmt.Errorf("webhook: request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Switchboard-Webhook")
	req.Header.Set(NodeHeader, d.opts.NodeID)
	if len(d.opts.Secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(d.opts.Secret, body))
	}
	resp, err := d.opts.Client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) && uerr.Timeout() {
			return failTimeout, fmt.Errorf("webhook: post: %w", err)
		}
		return failNetwork, fmt.Errorf("webhook: post: %w", err)
	}
	// The answer's body means nothing; a little is read so that the
	// connection may be reused, and a huge or endless one is cut.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return failStatus, fmt.Errorf("webhook: post: status %d", resp.StatusCode)
	}
	return "", nil
}

// backoff returns the pause before retry attempt+1: BackoffMin doubled
// attempt times, at most BackoffMax, of which a random half is taken off.
func (d *Dispatcher) backoff(attempt int) time.Duration {
	b := d.opts.BackoffMin
	for range min(attempt, 32) {
		if b >= d.opts.BackoffMax/2 {
			b = d.opts.BackoffMax
			break
		}
		b *= 2
	}
	b = min(b, d.opts.BackoffMax)
	return b/2 + rand.N(b/2+1)
}

// pause waits for wait, a signal on wake (which may be nil) or the end of
// ctx; it reports false for the last.
func (d *Dispatcher) pause(ctx context.Context, wait time.Duration, wake <-chan struct{}) bool {
	t := d.clock.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-wake:
	case <-t.Chan():
	}
	return true
}
