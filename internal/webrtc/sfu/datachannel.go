package sfu

import (
	"slices"

	"github.com/pion/webrtc/v4"
)

// onDataChannel relays what the participant sends on a data channel of
// its publishing connection to every other participant, on a channel of
// their subscribing connection labelled with the sender's id.
func (p *Participant) onDataChannel(dc *webrtc.DataChannel) {
	label := dc.Label()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.channels = append(p.channels, label)
	p.mu.Unlock()
	for _, q := range p.room.others(p) {
		q.relayFor(p.id, label)
	}
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		if len(m.Data) > maxRelayed {
			return
		}
		for _, q := range p.room.others(p) {
			q.relay(p.id, label, m)
		}
	})
}

// relayKey names the relay of one sender's channel.
func relayKey(from, label string) string { return from + "\x00" + label }

// relayFor returns p's relay channel for a sender's channel, creating it
// (and renegotiating) the first time. The relay's label is the sender's
// participant id, its protocol the sender's label.
func (p *Participant) relayFor(from, label string) *webrtc.DataChannel {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.sub == nil {
		return nil
	}
	if dc := p.relays[relayKey(from, label)]; dc != nil {
		return dc
	}
	proto := label
	dc, err := p.sub.CreateDataChannel(from, &webrtc.DataChannelInit{Protocol: &proto})
	if err != nil {
		p.room.sfu.log.Warn("data channel relay failed", "room", p.room.name, "participant", p.id, "err", err)
		return nil
	}
	p.relays[relayKey(from, label)] = dc
	p.kick()
	return dc
}

// relay sends one message to p, dropping it while the relay is not open
// or too much waits in it.
func (p *Participant) relay(from, label string, m webrtc.DataChannelMessage) {
	dc := p.relayFor(from, label)
	if dc == nil || dc.ReadyState() != webrtc.DataChannelStateOpen || dc.BufferedAmount() > relayBuffer {
		return
	}
	if m.IsString {
		_ = dc.SendText(string(m.Data))
	} else {
		_ = dc.Send(m.Data)
	}
}

// dataChannels returns the labels of the participant's data channels.
func (p *Participant) dataChannels() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.channels)
}
