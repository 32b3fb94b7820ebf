package sfu

import (
	"time"

	"github.com/pion/webrtc/v4"
)

// The layer choice: every LayerInterval the room shares each
// subscriber's bandwidth estimate among the video tracks it receives, and
// each downTrack picks the layer that fits (docs/webrtc.md, "The layer
// under a bandwidth cap").

// allocate re-chooses the layer of each video track p receives: the
// estimate is shared evenly among them.
func (p *Participant) allocate() {
	p.mu.Lock()
	downs := make([]*downTrack, 0, len(p.downs))
	for t, d := range p.downs {
		if t.kind == webrtc.RTPCodecTypeVideo {
			downs = append(downs, d)
		}
	}
	p.mu.Unlock()
	if len(downs) == 0 {
		return
	}
	budget, probe := -1, false
	if p.estimator != nil {
		est := p.estimator.GetTargetBitrate()
		budget = est / len(downs)
		sent := p.sentBitrate()
		probe = sent > 0 && float64(est) >= probeRatio*float64(sent)
	}
	now := time.Now()
	for _, d := range downs {
		d.allocateAt(budget, probe, now)
	}
}

// sentBitrate is what p's subscribing connection carries, in bit/s: the
// bitrate of the layer forwarded of each track it receives.
func (p *Participant) sentBitrate() int64 {
	p.mu.Lock()
	downs := make([]*downTrack, 0, len(p.downs))
	for _, d := range p.downs {
		downs = append(downs, d)
	}
	p.mu.Unlock()
	var sum int64
	for _, d := range downs {
		if l := d.up.layer(max(d.wantedLayer(), 0)); l != nil {
			sum += l.bitrate.Load()
		}
	}
	return sum
}

// hysteresis: moving up a layer needs this much more budget than the
// layer's bitrate, so that the choice does not flap.
const hysteresis = 1.15

// Moving up for the budget waits until the higher layer has fitted for
// upHold (the estimate grows in steps, and one step over the line is not
// yet room for a layer); a move up that ends in a move down within
// upFailed doubles the wait for the next one, up to maxUpHold, and a
// move up whose layer was kept for upStable brings it back to upHold (a
// subscriber kept down by a lasting cap keeps the long wait). Moving down
// is at once. Without an estimate (budget -1) nothing waits.
const (
	upHold    = time.Second
	maxUpHold = 32 * time.Second
	upFailed  = 5 * time.Second
	upStable  = 10 * time.Second
)

// Probing by moving up. Without probing padding, GCC's estimate grows
// little past what the connection carries (at most 1.5 times the rate
// received, once it has fallen near that rate), so a subscriber moved
// down by a passing cap could stay down for good. When the estimate is at
// least probeRatio times what the subscriber is sent (it is limited by the
// traffic, not by signs of congestion), the next layer up may be tried if
// it costs at most probeHeadroom times the budget. The try is paced like
// any move up, and one that fails (the estimate falls within upFailed)
// doubles the wait for the next.
//
// A tried layer costs more than the estimate: the estimate needs a few
// seconds of the new traffic to grow. For probeGrace after the try the
// layer is kept while the estimate stays above probeFall of what it was
// at the try (GCC's estimate wobbles by a few percent from one report to
// the next); a fall below (the link is congested) moves down at once, as
// a failed try.
const (
	probeRatio    = 1.3
	probeHeadroom = 2.0
	probeGrace    = 4 * time.Second
	probeFall     = 0.9
)

// allocate chooses the target layer from the budget (bit/s, -1 for no
// estimate), the subscriber's caps and the layers being received.
func (d *downTrack) allocate(budget int) { d.allocateAt(budget, false, time.Now()) }

// allocateAt is allocate at the time now; probe allows a try of the next
// layer up beyond the budget (see probeRatio).
func (d *downTrack) allocateAt(budget int, probe bool, now time.Time) {
	if d.up.kind != webrtc.RTPCodecTypeVideo {
		return
	}
	d.mu.Lock()
	d.lastBudget = budget
	best, tried := -1, false
	floor := 0.0 // a layer costs at least what the one below it does
	for q := 0; q <= 2; q++ {
		l := d.up.layer(q)
		if l == nil || (!d.up.active(q) && best >= 0) {
			continue
		}
		if best >= 0 && q > d.maxLayer {
			break
		}
		need := max(float64(l.bitrate.Load()), floor)
		floor = need
		if best >= 0 {
			if w := int(l.width.Load()); d.maxW > 0 && w > 0 && w > d.maxW {
				break
			}
			if h := int(l.height.Load()); d.maxH > 0 && h > 0 && h > d.maxH {
				break
			}
			if q > d.current {
				need *= hysteresis
			}
			if budget >= 0 && need > float64(budget) {
				if probe && best == d.current && q == d.current+1 && need <= probeHeadroom*float64(budget) {
					best, tried = q, true
				}
				break
			}
		}
		best = q
	}
	if best >= 0 && best < d.target && !d.triedAt.IsZero() && now.Sub(d.triedAt) < probeGrace &&
		float64(budget) >= probeFall*float64(d.triedBudget) && d.allowed(d.target) {
		best = d.target // a try in its grace, the estimate not falling
	}
	from := d.target
	best = d.pace(best, budget, now)
	if best > from && tried {
		d.triedAt, d.triedBudget = now, budget
	} else if best < from {
		d.triedAt = time.Time{}
	}
	changed := best >= 0 && best != d.target
	if changed {
		d.target = best
	}
	d.mu.Unlock()
	if changed {
		d.up.requestKeyframe(best)
	}
}

// allowed reports whether layer q is within the subscriber's preferences
// (max_layer, max_width, max_height). Lock held.
func (d *downTrack) allowed(q int) bool {
	if q > d.maxLayer {
		return false
	}
	l := d.up.layer(q)
	if l == nil {
		return false
	}
	w, h := int(l.width.Load()), int(l.height.Load())
	return !(d.maxW > 0 && w > d.maxW) && !(d.maxH > 0 && h > d.maxH)
}

// pace holds back a move up for the budget (see upHold) and returns the
// layer to target now. Lock held.
func (d *downTrack) pace(best, budget int, now time.Time) int {
	if d.hold == 0 {
		d.hold = upHold
	}
	switch {
	case best < 0 || best == d.target:
		d.upSince = time.Time{}
		if !d.upAt.IsZero() && now.Sub(d.upAt) >= upStable && now.Sub(d.steadyAt) >= upStable {
			d.hold, d.upAt = upHold, time.Time{} // the last move up held
		}
		return best
	case best < d.target:
		d.upSince, d.steadyAt = time.Time{}, now
		if !d.upAt.IsZero() && now.Sub(d.upAt) < upFailed {
			d.hold = min(2*d.hold, maxUpHold)
			d.upAt = time.Time{} // one failure, however many steps down
		}
		return best
	case budget < 0 || d.current < 0:
		d.steadyAt = now
		return best // no estimate, or nothing forwarded yet: no reason to wait
	}
	if d.upSince.IsZero() {
		d.upSince = now
	}
	if now.Sub(d.upSince) < d.hold {
		return d.target
	}
	d.upSince, d.upAt, d.steadyAt = time.Time{}, now, now
	return best
}
