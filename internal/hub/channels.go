package hub

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// Publish publishes data (a JSON value) to channel through the broker and
// returns the position it was stored at. source labels the metric ("api",
// "client").
func (h *Hub) Publish(ctx context.Context, channel string, data []byte, source string) (broker.Position, error) {
	r, err := h.PublishOnce(ctx, channel, data, source, "")
	return r.Position, err
}

// Published is where a publication landed.
type Published struct {
	broker.Position
	// Duplicate reports that the publish repeated an idempotency key
	// within its window: Position is the original publication's and
	// nothing was published now.
	Duplicate bool
}

// PublishOnce is Publish with an idempotency key (none when key is
// empty): a repeat of key on channel within the namespace's idempotency
// window, through any node, publishes nothing and returns the original
// position with Duplicate set. The key must be valid
// (protocol.ValidateIdempotencyKey); an invalid one fails with that error.
func (h *Hub) PublishOnce(ctx context.Context, channel string, data []byte, source, key string) (Published, error) {
	ns, perr := h.namespace(channel)
	if perr != nil {
		return Published{}, perr
	}
	if _, ok := roomOfChannel(channel); ok {
		return Published{}, errRoomChannelPublish(channel)
	}
	opts := broker.PublishOptions{HistorySize: ns.HistorySize, HistoryTTL: ns.HistoryTTL}
	if key != "" {
		if perr := protocol.ValidateIdempotencyKey(key); perr != nil {
			return Published{}, perr
		}
		opts.IdempotencyKey, opts.IdempotencyWindow = key, ns.IdempotencyWindow
		if opts.IdempotencyWindow <= 0 {
			opts.IdempotencyWindow = h.cfg.IdempotencyWindow
		}
	}
	pos, err := h.broker.Publish(ctx, channel, data, opts)
	if key != "" && errors.Is(err, broker.ErrDuplicate) {
		h.metrics.PublicationsDeduplicated.WithLabelValues(source).Inc()
		return Published{Position: pos, Duplicate: true}, nil
	}
	if err != nil {
		return Published{Position: pos}, fmt.Errorf("hub: publish to %q: %w", channel, err)
	}
	h.metrics.Publications.WithLabelValues(source).Inc()
	return Published{Position: pos}, nil
}

// AppendPublished appends the publish result {"offset":N,"epoch":E} to
// b, with "duplicate":true for a repeat of an idempotency key: the reply
// of the publish command and of POST /publish.
func AppendPublished(b []byte, r Published) []byte {
	b = strconv.AppendUint(append(b, `{"offset":`...), r.Offset, 10)
	b = strconv.AppendQuote(append(b, `,"epoch":`...), r.Epoch)
	if r.Duplicate {
		b = append(b, `,"duplicate":true`...)
	}
	return append(b, '}')
}

// Position returns a channel's current position.
func (h *Hub) Position(ctx context.Context, channel string) (broker.Position, error) {
	r, err := h.broker.History(ctx, channel, broker.HistoryQuery{})
	if err != nil {
		return broker.Position{}, fmt.Errorf("hub: position of %q: %w", channel, err)
	}
	return r.Position, nil
}

// SincePosition converts a position from the wire (nil when absent) to
// the broker's.
func SincePosition(p *protocol.StreamPosition) *broker.Position {
	if p == nil {
		return nil
	}
	return &broker.Position{Offset: p.Offset, Epoch: p.Epoch}
}

// HistoryLimit is the limit a history request asked for, or
// HistoryMaxLimit when it asked for none.
func (h *Hub) HistoryLimit(limit *int) int {
	if limit == nil {
		return h.cfg.HistoryMaxLimit
	}
	return *limit
}

// History reads a channel's history: publications after since (all kept
// ones when nil), at most limit of them, newest first when reverse. It fails
// with protocol errors for an invalid channel, a limit out of range or a
// position of another epoch.
func (h *Hub) History(ctx context.Context, channel string, since *broker.Position, limit int, reverse bool) (broker.HistoryResult, error) {
	if perr := protocol.ValidateChannel(channel); perr != nil {
		return broker.HistoryResult{}, perr
	}
	if limit < 0 || limit > h.cfg.HistoryMaxLimit {
		return broker.HistoryResult{}, protocol.ErrBadRequest.WithMessage(`"limit" must be between 0 and %d`, h.cfg.HistoryMaxLimit)
	}
	r, err := h.broker.History(ctx, channel, broker.HistoryQuery{Since: since, Limit: limit, Reverse: reverse})
	if errors.Is(err, broker.ErrEpochMismatch) {
		return r, protocol.ErrEpochMismatch.WithMessage("position is from epoch %q, the channel is in epoch %q", since.Epoch, r.Position.Epoch)
	}
	if err != nil {
		return r, fmt.Errorf("hub: history of %q: %w", channel, err)
	}
	return r, nil
}

// Presence lists the clients subscribed to a channel, across nodes.
func (h *Hub) Presence(ctx context.Context, channel string) ([]broker.ClientInfo, error) {
	if err := h.presenceAllowed(channel); err != nil {
		return nil, err
	}
	list, err := h.presence.Presence(ctx, channel)
	if err != nil {
		return nil, fmt.Errorf("hub: presence of %q: %w", channel, err)
	}
	return list, nil
}

// PresenceStats counts the clients and users subscribed to a channel.
func (h *Hub) PresenceStats(ctx context.Context, channel string) (broker.PresenceStats, error) {
	if err := h.presenceAllowed(channel); err != nil {
		return broker.PresenceStats{}, err
	}
	st, err := h.presence.PresenceStats(ctx, channel)
	if err != nil {
		return st, fmt.Errorf("hub: presence stats of %q: %w", channel, err)
	}
	return st, nil
}

func (h *Hub) presenceAllowed(channel string) error {
	ns, perr := h.namespace(channel)
	if perr != nil {
		return perr
	}
	if !ns.Presence {
		return protocol.ErrPermissionDenied.WithMessage("presence is off for %q", channel)
	}
	return nil
}
