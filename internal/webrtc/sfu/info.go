package sfu

import (
	"slices"
	"strings"
)

// ParticipantInfo describes a participant to clients and the server API.
type ParticipantInfo struct {
	ID            string             `json:"participant"`
	User          string             `json:"user,omitempty"`
	Tracks        []TrackInfo        `json:"tracks"`
	Subscriptions []SubscriptionInfo `json:"subscriptions,omitempty"`
	// Estimate is the bandwidth estimate of the participant's subscribing
	// connection in bit/s (what the SFU may send it, shared among its
	// video tracks), listed with the subscriptions; 0 when unknown.
	Estimate int `json:"bandwidth_estimate,omitempty"`
}

// SubscriptionInfo describes what one subscriber receives of one track.
type SubscriptionInfo struct {
	Track       string `json:"track"`
	Layer       int    `json:"layer"`
	TargetLayer int    `json:"target_layer"`
	Packets     uint64 `json:"packets"`
	Switches    int    `json:"switches"`
}

func (p *Participant) info(withSubs bool) ParticipantInfo {
	pi := ParticipantInfo{ID: p.id, User: p.user, Tracks: []TrackInfo{}}
	for _, t := range p.publishedTracks() {
		pi.Tracks = append(pi.Tracks, t.info())
	}
	if withSubs {
		p.mu.Lock()
		for _, d := range p.downs {
			pi.Subscriptions = append(pi.Subscriptions, d.info())
		}
		p.mu.Unlock()
		if p.estimator != nil {
			pi.Estimate = p.estimator.GetTargetBitrate()
		}
		slices.SortFunc(pi.Subscriptions, func(a, b SubscriptionInfo) int { return strings.Compare(a.Track, b.Track) })
	}
	return pi
}

// maxRelayed bounds a relayed data channel message, and relayBuffer what
// may wait in one subscriber's channel before messages are dropped.
const (
	maxRelayed  = 64 << 10
	relayBuffer = 1 << 20
)
