package memory

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
)

var _ broker.PresenceStore = (*Presence)(nil)

// Presence is the single-node presence store. Entries live until removed:
// on one node, the engine removes a client whenever its connection ends, so
// nothing needs to expire. Like every store, it fails calls whose context
// is done, although it answers from memory.
type Presence struct {
	mu       sync.Mutex
	channels map[string]*presenceSet
}

// presenceSet is one channel's presence: a slice while it is small, which
// for a channel of one client costs one entry instead of a map's group of
// eight, and a map by client id once it is larger.
type presenceSet struct {
	few  []broker.ClientInfo
	many map[string]broker.ClientInfo
}

// smallPresence is the most entries a presenceSet keeps in a slice.
const smallPresence = 8

func (ps *presenceSet) add(info broker.ClientInfo) {
	if ps.many != nil {
		ps.many[info.Client] = info
		return
	}
	for i := range ps.few {
		if ps.few[i].Client == info.Client {
			ps.few[i] = info
			return
		}
	}
	if len(ps.few) < smallPresence {
		ps.few = append(ps.few, info)
		return
	}
	ps.many = make(map[string]broker.ClientInfo, 2*smallPresence)
	for _, c := range ps.few {
		ps.many[c.Client] = c
	}
	ps.many[info.Client] = info
	ps.few = nil
}

func (ps *presenceSet) remove(client string) {
	if ps.many != nil {
		delete(ps.many, client)
		return
	}
	for i := range ps.few {
		if ps.few[i].Client == client {
			last := len(ps.few) - 1
			ps.few[i] = ps.few[last]
			ps.few[last] = broker.ClientInfo{}
			ps.few = ps.few[:last]
			return
		}
	}
}

func (ps *presenceSet) len() int { return len(ps.few) + len(ps.many) }

// list returns a copy of the entries, in no order.
func (ps *presenceSet) list() []broker.ClientInfo {
	if ps == nil {
		return []broker.ClientInfo{}
	}
	out := make([]broker.ClientInfo, 0, ps.len())
	out = append(out, ps.few...)
	for _, info := range ps.many {
		out = append(out, info)
	}
	return out
}

// NewPresence returns an empty presence store.
func NewPresence() *Presence {
	return &Presence{channels: map[string]*presenceSet{}}
}

// AddPresence implements broker.PresenceStore.
func (p *Presence) AddPresence(ctx context.Context, channel string, info broker.ClientInfo, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory presence: add presence to %q: %w", channel, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ps := p.channels[channel]
	if ps == nil {
		ps = &presenceSet{}
		p.channels[channel] = ps
	}
	ps.add(info)
	return nil
}

// RemovePresence implements broker.PresenceStore.
func (p *Presence) RemovePresence(ctx context.Context, channel, client string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory presence: remove presence from %q: %w", channel, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if ps := p.channels[channel]; ps != nil {
		ps.remove(client)
		if ps.len() == 0 {
			delete(p.channels, channel)
		}
	}
	return nil
}

// Presence implements broker.PresenceStore; clients come sorted by id.
func (p *Presence) Presence(ctx context.Context, channel string) ([]broker.ClientInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory presence: presence of %q: %w", channel, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.channels[channel].list()
	sort.Slice(out, func(i, j int) bool { return out[i].Client < out[j].Client })
	return out, nil
}

// PresenceStats implements broker.PresenceStore.
func (p *Presence) PresenceStats(ctx context.Context, channel string) (broker.PresenceStats, error) {
	if err := ctx.Err(); err != nil {
		return broker.PresenceStats{}, fmt.Errorf("memory presence: presence stats of %q: %w", channel, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return broker.CountPresence(p.channels[channel].list()), nil
}
