package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/switchboardhq/switchboard/internal/broker"
)

func (b *Broker) presenceKeys(channel string) []string {
	base := b.base(channel)
	return []string{base + ":presence", base + ":presence-expiry"}
}

// AddPresence implements broker.PresenceStore. The entry expires after ttl
// (one minute when ttl is not positive) unless added again before.
func (b *Broker) AddPresence(ctx context.Context, channel string, info broker.ClientInfo, ttl time.Duration) error {
	if ttl <= 0 {
		ttl = defaultPresenceTTL
	}
	data, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("redis broker: add presence to %s: %w", channel, err)
	}
	res := addPresenceScript.Exec(ctx, b.client, b.presenceKeys(channel),
		[]string{info.Client, string(data), strconv.FormatInt(ms(ttl), 10)})
	if err := res.Error(); err != nil {
		return b.wrap("add presence to "+channel, err)
	}
	return nil
}

// RemovePresence implements broker.PresenceStore.
func (b *Broker) RemovePresence(ctx context.Context, channel, client string) error {
	res := removePresenceScript.Exec(ctx, b.client, b.presenceKeys(channel), []string{client})
	if err := res.Error(); err != nil {
		return b.wrap("remove presence from "+channel, err)
	}
	return nil
}

// Presence implements broker.PresenceStore; clients come sorted by id.
// Expired entries are dropped as they are read.
func (b *Broker) Presence(ctx context.Context, channel string) ([]broker.ClientInfo, error) {
	vals, err := presenceScript.Exec(ctx, b.client, b.presenceKeys(channel), nil).AsStrSlice()
	if err != nil {
		return nil, b.wrap("presence of "+channel, err)
	}
	out := make([]broker.ClientInfo, 0, len(vals))
	for _, v := range vals {
		var info broker.ClientInfo
		if err := json.Unmarshal([]byte(v), &info); err != nil {
			return nil, fmt.Errorf("redis broker: presence of %s: bad entry: %w", channel, err)
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Client < out[j].Client })
	return out, nil
}

// PresenceStats implements broker.PresenceStore.
func (b *Broker) PresenceStats(ctx context.Context, channel string) (broker.PresenceStats, error) {
	list, err := b.Presence(ctx, channel)
	if err != nil {
		return broker.PresenceStats{}, err
	}
	return broker.CountPresence(list), nil
}
