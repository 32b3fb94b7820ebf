package hub

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// The subscribe path, one for every transport: a pending subscription is
// registered (live publications are buffered from then on), history is
// read from the client's position, what the client must see first is
// queued, then the buffered publications after it, and the subscription
// goes live and joins presence. Unsubscribing, or the session's end, makes
// it final (subscription.end).

func (s *Session) subscribe(ctx context.Context, cmd *protocol.Command) ([]byte, *protocol.Error) {
	if perr := protocol.ValidateDelta(cmd.Delta); perr != nil {
		return nil, perr
	}
	delta := cmd.Delta != ""
	info, err := s.checkSubscribe(ctx, cmd.Channel, cmd.Token, cmd.Data)
	if err != nil {
		return nil, s.hookFailed(err)
	}
	since := SincePosition(cmd.Since)
	perr := s.subscribeChannel(ctx, cmd.Channel, since, info, delta, func(res *SubscribeResult) {
		if !cmd.HasID {
			return
		}
		reply := subscribeReply{Channel: cmd.Channel, Offset: res.Position.Offset, Epoch: res.Position.Epoch, Delta: delta}
		if since != nil {
			reply.Recovered = &res.Recovered
			reply.Publications = make([]json.RawMessage, 0, len(res.Publications))
			for _, p := range res.Publications {
				if delta { // whole, as the string a delta subscriber keeps
					reply.Publications = append(reply.Publications, protocol.AppendPublicationString(nil, cmd.Channel, p.Data, p.Offset, false))
					continue
				}
				reply.Publications = append(reply.Publications, protocol.AppendPublication(nil, cmd.Channel, p.Data, p.Offset))
			}
		}
		// The reply carries the recovered publications: it may exceed the
		// queue's bounds, which apply to live traffic.
		s.out.pushForced(Message{Data: protocol.AppendResult(nil, cmd.ID, mustJSON(reply))})
		res.sent = since != nil
	})
	if perr != nil {
		return nil, perr
	}
	// The reply is already queued; tell HandleMessage not to queue another.
	return nil, errReplied
}

// subscribeReply is the result of the subscribe command.
type subscribeReply struct {
	Channel      string            `json:"channel"`
	Offset       uint64            `json:"offset"`
	Epoch        string            `json:"epoch"`
	Recovered    *bool             `json:"recovered,omitempty"`
	Publications []json.RawMessage `json:"publications,omitempty"`
	// Delta: the subscription is delta-compressed (the subscribe asked).
	Delta bool `json:"delta,omitempty"`
}

// SubscribeResult is the outcome of a subscription.
type SubscribeResult struct {
	// Position is the channel's position when the subscription went live:
	// every publication after it is delivered live.
	Position broker.Position
	// Recovered reports, when a since position was given, whether every
	// publication after it was recovered from history.
	Recovered bool
	// Publications are the recovered publications, after since up to
	// Position, in offset order (empty unless Recovered).
	Publications []broker.Publication
	// sent: the subscribe queued Publications for the client (a delta
	// subscription's next publication may then be a delta from the last).
	sent bool
}

// Subscribe subscribes the session to channel for a transport that has no
// command replies (SSE, long polling): recovered publications (after since,
// when given) are queued as ordinary pushes, followed by live ones, with no
// gap and no duplicate. first, when not nil, is called once the outcome is
// known and returns messages to queue before anything else of the channel
// (such as a notice that the position could not be recovered); it runs
// under the subscription's lock and must not call back into the session.
// The subscribe stops when ctx ends, when the session closes, or after the
// hub's CommandTimeout.
func (s *Session) Subscribe(ctx context.Context, channel string, since *broker.Position, first func(SubscribeResult) []Message) (SubscribeResult, *protocol.Error) {
	ctx, end := s.begin(ctx)
	defer end()
	var out SubscribeResult
	perr := s.subscribeChannel(ctx, channel, since, nil, false, func(res *SubscribeResult) {
		out = *res
		if first != nil {
			for _, m := range first(*res) {
				s.out.pushForced(m)
			}
		}
		for _, p := range res.Publications {
			s.out.pushForced(pubMessage(channel, p))
		}
		res.sent = true
	})
	return out, perr
}

// subscribeChannel is the one subscribe path (see the top of this file).
// info is shown with the client in the channel's presence (from the
// subscribe hook). delta makes it a delta subscription (delta.go). emit
// queues what the client must see first; it runs under the subscription's
// lock.
func (s *Session) subscribeChannel(ctx context.Context, channel string, since *broker.Position, info json.RawMessage, delta bool, emit func(*SubscribeResult)) *protocol.Error {
	if perr := protocol.ValidateChannel(channel); perr != nil {
		return perr
	}
	sub := &subscription{sess: s, channel: channel, info: string(info)}
	if delta {
		sub.dmode = deltaOn
	}
	if perr := s.addSub(sub); perr != nil {
		return perr
	}
	fail := func(perr *protocol.Error) *protocol.Error {
		s.removeSub(sub)
		sub.end()
		s.hub.removeSubscription(sub)
		return perr
	}
	if err := s.hub.addSubscription(ctx, sub); err != nil {
		s.hub.log.Warn("subscribe failed", "channel", channel, "err", err)
		return fail(protocol.ErrUnavailable.WithMessage("cannot subscribe now, retry"))
	}
	if ns, _ := s.hub.cfg.Rules.Lookup(channel); !ns.Recovery && since != nil {
		since = &broker.Position{Offset: since.Offset, Epoch: "recovery-off"}
	}
	res, err := s.hub.recover(ctx, channel, since)
	if err != nil {
		if !s.isClosed() {
			s.hub.log.Warn("read history failed", "channel", channel, "err", err)
		}
		return fail(protocol.ErrUnavailable.WithMessage("cannot subscribe now, retry"))
	}
	if n := len(res.Publications); delta && n > 0 {
		s.hub.seedDelta(channel, res.Position.Epoch, res.Publications[n-1])
	}
	if !sub.goLive(&res, emit) {
		// The session ended during the history read; its end took the
		// subscription, and may have missed the registry entry added above.
		s.hub.removeSubscription(sub)
		return protocol.ErrUnavailable.WithMessage("connection closed")
	}
	if !s.ephemeral {
		s.reportConnected(ctx) // transports without a connect command
		sub.join(ctx)
	}
	return nil
}

// recover reads what a subscriber needs: the channel's position and, with a
// since position, the publications after it when history still holds all
// of them.
func (h *Hub) recover(ctx context.Context, channel string, since *broker.Position) (SubscribeResult, error) {
	if since == nil {
		r, err := h.broker.History(ctx, channel, broker.HistoryQuery{})
		return SubscribeResult{Position: r.Position}, err
	}
	r, err := h.broker.History(ctx, channel, broker.HistoryQuery{Since: since, Limit: -1})
	if errors.Is(err, broker.ErrEpochMismatch) {
		err = nil
		if r.Position.Epoch == "" { // the broker did not say where the channel is
			r, err = h.broker.History(ctx, channel, broker.HistoryQuery{})
		}
		h.metrics.Recoveries.WithLabelValues("false").Inc()
		return SubscribeResult{Position: r.Position}, err
	}
	if err != nil {
		return SubscribeResult{}, err
	}
	res := SubscribeResult{Position: r.Position}
	switch {
	case since.Offset == r.Position.Offset:
		res.Recovered = true // nothing was missed
	case since.Offset < r.Position.Offset && len(r.Publications) > 0 && r.Publications[0].Offset == since.Offset+1:
		res.Recovered = true
		res.Publications = r.Publications
	}
	h.metrics.Recoveries.WithLabelValues(strconv.FormatBool(res.Recovered)).Inc()
	return res, nil
}

func (s *Session) unsubscribe(_ context.Context, cmd *protocol.Command) ([]byte, *protocol.Error) {
	if perr := protocol.ValidateChannel(cmd.Channel); perr != nil {
		return nil, perr
	}
	sub := s.findSub(cmd.Channel)
	if sub == nil {
		return nil, protocol.ErrNotSubscribed.WithMessage("not subscribed to %q", cmd.Channel)
	}
	s.removeSub(sub)
	s.hub.removeSubscription(sub)
	sub.end()
	return nil, nil
}
