package hub

import (
	"context"
	"fmt"
	"hash/maphash"
	"runtime"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// shard is a part of the channel registry.
type shard struct {
	mu sync.RWMutex
	// channels holds each channel's local subscriptions in no particular
	// order; each subscription's slot is its index. A slice rather than a
	// set: a channel with one subscriber (the common case of a channel per
	// user) costs one pointer, and the fan-out walks contiguous memory.
	channels map[string][]*subscription
	// deltas holds the last publication of each channel that has had a
	// delta subscriber (delta.go); nil until the first.
	deltas map[string]*channelDelta
}

func (h *Hub) shardOf(channel string) *shard {
	return &h.shards[maphash.String(h.seed, channel)%numShards]
}

func (h *Hub) stripeOf(channel string) *sync.Mutex {
	return &h.stripes[maphash.String(h.seed, channel)%numStripes]
}

// HandlePublication implements broker.Handler: it encodes the publication
// once and queues the same bytes for every local subscriber of the channel.
func (h *Hub) HandlePublication(channel string, pub broker.Publication, epoch string) {
	now := h.nanotime()
	m := pubMessage(channel, pub)
	m.At = now
	sh := h.shardOf(channel)
	sh.mu.RLock()
	if cd := sh.deltas[channel]; cd != nil {
		m.dp = newDeltaPub(cd, channel, pub, epoch, now)
	}
	fanOut(sh.channels[channel], m, epoch)
	sh.mu.RUnlock()
}

// fanOutSplit is the number of subscribers from which a publication's
// fan-out is shared among goroutines, one per processor: past it, the
// deliveries (each a socket write when the subscriber is idle) cost far
// more than starting the goroutines.
const fanOutSplit = 512

// fanOut delivers m to every subscription of subs. A long list is cut in
// parts delivered at once on up to GOMAXPROCS goroutines, so one
// publication to many subscribers uses every core; fanOut returns when all
// are done, so that publications of a channel still reach each subscriber
// in order. Called with the channel's shard read-locked.
func fanOut(subs []*subscription, m Message, epoch string) {
	parts := min(runtime.GOMAXPROCS(0), len(subs)/(fanOutSplit/2))
	if parts < 2 {
		for _, sub := range subs {
			sub.deliver(m, epoch)
		}
		return
	}
	size := (len(subs) + parts - 1) / parts
	var wg sync.WaitGroup
	for i := size; i < len(subs); i += size {
		part := subs[i:min(i+size, len(subs))]
		wg.Go(func() {
			for _, sub := range part {
				sub.deliver(m, epoch)
			}
		})
	}
	for _, sub := range subs[:size] {
		sub.deliver(m, epoch)
	}
	wg.Wait()
}

// HandleEvent implements broker.Handler: it queues an ephemeral push (join,
// leave) for every live local subscriber of the channel.
func (h *Hub) HandleEvent(channel string, data []byte) {
	m := Message{Data: data, Channel: channel}
	sh := h.shardOf(channel)
	sh.mu.RLock()
	for _, sub := range sh.channels[channel] {
		sub.deliver(m, "")
	}
	sh.mu.RUnlock()
}

// pubMessage encodes a publication as the push every subscriber receives.
func pubMessage(channel string, pub broker.Publication) Message {
	data := protocol.AppendPublication(make([]byte, 0, len(channel)+len(pub.Data)+48), channel, pub.Data, pub.Offset)
	return Message{Data: data, Channel: channel, Offset: pub.Offset}
}

// add puts sub in its channel's list and reports whether it is the
// channel's first. Called with sh.mu held.
func (sh *shard) add(sub *subscription) (first bool) {
	list := sh.channels[sub.channel]
	sub.slot = int32(len(list))
	sh.channels[sub.channel] = append(list, sub)
	sh.addDeltaLocked(sub)
	return len(list) == 0
}

// remove takes sub out of its channel's list, if it is there, moving the
// last subscription into its slot; last reports that the channel has no
// local subscriber left. Called with sh.mu held.
func (sh *shard) remove(sub *subscription) (removed, last bool) {
	list := sh.channels[sub.channel]
	i := int(sub.slot)
	if i >= len(list) || list[i] != sub {
		return false, false
	}
	end := len(list) - 1
	list[i] = list[end]
	list[i].slot = int32(i)
	list[end] = nil
	list = list[:end]
	if end == 0 {
		delete(sh.channels, sub.channel)
		delete(sh.deltas, sub.channel)
		return true, true
	}
	if cap(list) > 16 && len(list) < cap(list)/4 {
		list = append([]*subscription(nil), list...) // give back what a crowd left
	}
	sh.channels[sub.channel] = list
	return true, false
}

// addSubscription registers sub in the channel registry, subscribing the
// node through the broker when sub is the channel's first local subscriber.
func (h *Hub) addSubscription(ctx context.Context, sub *subscription) error {
	stripe := h.stripeOf(sub.channel)
	stripe.Lock()
	defer stripe.Unlock()
	sh := h.shardOf(sub.channel)
	sh.mu.Lock()
	first := sh.add(sub)
	sh.mu.Unlock()
	if first {
		if err := h.broker.Subscribe(ctx, sub.channel); err != nil {
			sh.mu.Lock()
			sh.remove(sub)
			sh.mu.Unlock()
			return fmt.Errorf("hub: broker subscribe %q: %w", sub.channel, err)
		}
		h.metrics.Channels.Set(float64(h.channels.Add(1)))
	}
	h.metrics.Subscriptions.Set(float64(h.subscriptions.Add(1)))
	return nil
}

// removeSubscription undoes addSubscription. After it returns no new
// publication reaches sub.
func (h *Hub) removeSubscription(sub *subscription) {
	stripe := h.stripeOf(sub.channel)
	stripe.Lock()
	defer stripe.Unlock()
	sh := h.shardOf(sub.channel)
	sh.mu.Lock()
	removed, last := sh.remove(sub)
	sh.mu.Unlock()
	if !removed {
		return
	}
	h.metrics.Subscriptions.Set(float64(h.subscriptions.Add(-1)))
	if last {
		h.metrics.Channels.Set(float64(h.channels.Add(-1)))
		// The context is not the client's: the node must leave the channel
		// even when the client is gone.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.broker.Unsubscribe(ctx, sub.channel); err != nil {
			h.log.Warn("broker unsubscribe failed", "channel", sub.channel, "err", err)
		}
	}
}

// ChannelInfo describes one channel with local subscribers.
type ChannelInfo struct {
	Channel     string `json:"channel"`
	Subscribers int    `json:"subscribers"`
}

// Channels lists the channels that have local subscribers.
func (h *Hub) localChannels() []ChannelInfo {
	var out []ChannelInfo
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.RLock()
		for name, set := range sh.channels {
			out = append(out, ChannelInfo{Channel: name, Subscribers: len(set)})
		}
		sh.mu.RUnlock()
	}
	return out
}
