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
	channels map[string]map[string]broker.ClientInfo
}

// NewPresence returns an empty presence store.
func NewPresence() *Presence {
	return &Presence{channels: map[string]map[string]broker.ClientInfo{}}
}

// AddPresence implements broker.PresenceStore.
func (p *Presence) AddPresence(ctx context.Context, channel string, info broker.ClientInfo, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory presence: add presence to %q: %w", channel, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.channels[channel]
	if m == nil {
		m = map[string]broker.ClientInfo{}
		p.channels[channel] = m
	}
	m[info.Client] = info
	return nil
}

// RemovePresence implements broker.PresenceStore.
func (p *Presence) RemovePresence(ctx context.Context, channel, client string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory presence: remove presence from %q: %w", channel, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if m := p.channels[channel]; m != nil {
		delete(m, client)
		if len(m) == 0 {
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
	out := make([]broker.ClientInfo, 0, len(p.channels[channel]))
	for _, info := range p.channels[channel] {
		out = append(out, info)
	}
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
	list := make([]broker.ClientInfo, 0, len(p.channels[channel]))
	for _, info := range p.channels[channel] {
		list = append(list, info)
	}
	return broker.CountPresence(list), nil
}
