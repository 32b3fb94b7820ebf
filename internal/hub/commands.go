package hub

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// connect authenticates the session (with a token in the command, or the
// credentials its transport verified), subscribes the channels the token
// names, and describes the session.
func (s *Session) connect(ctx context.Context, cmd *protocol.Command) ([]byte, *protocol.Error) {
	if s.connected {
		return nil, protocol.ErrBadRequest.WithMessage("already connected")
	}
	var data json.RawMessage // the connect hook's data for the client
	if cmd.Token != "" {
		c, perr := s.hub.Authenticate(cmd.Token)
		if perr != nil {
			if s.hub.cfg.RequireAuth || perr.Code == protocol.ErrTokenExpired.Code {
				s.failConnect(cmd, perr)
				return nil, errReplied
			}
			return nil, perr
		}
		if prev := s.credentials(); prev != nil && prev.User != c.User {
			return nil, protocol.ErrPermissionDenied.WithMessage("the token is for another user than the connection's")
		}
		s.setCredentials(c)
	} else if s.hub.cfg.ProxyConnectEndpoint != "" && s.hub.cfg.Backend != nil && !s.authed.Load() {
		d, perr := s.connectHook(ctx, cmd)
		switch {
		case perr == nil:
			data = d
		case perr == errReplied || perr.Code == protocol.ErrUnavailable.Code:
			// Closed by the backend; or the backend failed, and the
			// client may send connect again (within the connect
			// timeout, when authentication is required).
			return nil, perr
		case s.hub.cfg.RequireAuth || perr.Code == protocol.ErrTokenExpired.Code:
			s.failConnect(cmd, perr)
			return nil, errReplied
		default:
			return nil, perr
		}
	} else if s.hub.cfg.RequireAuth && !s.authed.Load() {
		s.failConnect(cmd, protocol.ErrUnauthorized.WithMessage("a connection token is required"))
		return nil, errReplied
	}
	s.connected = true
	s.reportConnected(ctx)
	type subPos struct {
		Channel string `json:"channel"`
		Offset  uint64 `json:"offset"`
		Epoch   string `json:"epoch"`
	}
	res := struct {
		Client        string          `json:"client"`
		Node          string          `json:"node"`
		Version       string          `json:"version"`
		User          string          `json:"user,omitempty"`
		Expires       int64           `json:"expires,omitempty"`
		Subscriptions []subPos        `json:"subscriptions,omitempty"`
		Info          json.RawMessage `json:"info,omitempty"`
		Data          json.RawMessage `json:"data,omitempty"`
	}{Client: s.id, Node: s.hub.cfg.NodeID, Version: s.hub.cfg.Version, User: s.User(), Data: data}
	if creds := s.credentials(); creds != nil {
		res.Info = creds.Info
		if !creds.Expires.IsZero() {
			res.Expires = creds.Expires.Unix()
		}
		// Server-side subscriptions: the token grants them, so no
		// permission check but the channel's validity.
		for _, ch := range creds.Channels {
			r, perr := s.Subscribe(ctx, ch, nil, nil)
			if perr != nil && perr.Code != protocol.ErrAlreadySubscribed.Code {
				return nil, perr.WithMessage("server-side subscription to %q: %s", ch, perr.Message)
			}
			res.Subscriptions = append(res.Subscriptions, subPos{ch, r.Position.Offset, r.Position.Epoch})
		}
	}
	return mustJSON(res), nil
}

// failConnect answers a failed connect and closes the connection: 4005 for
// an expired token (reconnect with a new one), 4502 otherwise.
func (s *Session) failConnect(cmd *protocol.Command, perr *protocol.Error) {
	s.replyError(cmd.ID, cmd.HasID, perr)
	if perr.Code == protocol.ErrTokenExpired.Code {
		s.Close(protocol.DisconnectTokenExpired)
		return
	}
	s.Close(protocol.DisconnectUnauthorized)
}

// refresh replaces the connection's token with a newer one of the same
// user, pushing its expiry back; without a token, for a connection the
// connect hook admitted, it asks the refresh hook.
func (s *Session) refresh(ctx context.Context, cmd *protocol.Command) ([]byte, *protocol.Error) {
	if cmd.Token == "" && s.refreshable() {
		exp, perr := s.refreshHook(ctx, cmd.Data)
		if perr != nil {
			return nil, perr
		}
		var unix int64
		if !exp.IsZero() {
			unix = exp.Unix()
		}
		return mustJSON(struct {
			Expires int64 `json:"expires,omitempty"`
		}{unix}), nil
	}
	if cmd.Token == "" {
		return nil, protocol.ErrBadRequest.WithMessage(`missing "token"`)
	}
	c, perr := s.hub.Authenticate(cmd.Token)
	if perr != nil {
		return nil, perr
	}
	if !s.authed.Load() || s.User() != c.User {
		return nil, protocol.ErrPermissionDenied.WithMessage("refresh needs a token of the connection's user")
	}
	c.Channels = nil // server-side subscriptions are made once, at connect
	s.setCredentials(c)
	var exp int64
	if !c.Expires.IsZero() {
		exp = c.Expires.Unix()
	}
	return mustJSON(struct {
		Expires int64 `json:"expires,omitempty"`
	}{exp}), nil
}

// canRead checks access to a channel's history and presence: what may
// subscribe may read; in token namespaces, only current subscribers.
func (s *Session) canRead(channel string) *protocol.Error {
	ns, perr := s.hub.namespace(channel)
	if perr != nil {
		return perr
	}
	if room, ok := roomOfChannel(channel); ok {
		_, perr := s.canJoinRoom(room)
		return perr
	}
	if ns.Subscribe == auth.SubscribeToken || ns.ProxySubscribe != "" {
		if sub := s.findSub(channel); sub != nil && sub.isLive() {
			return nil
		}
		return protocol.ErrPermissionDenied.WithMessage("subscribe to %q first", channel)
	}
	_, err := s.hub.checkSubscribe(context.Background(), channel, s.id, s.User(), "", nil) // no hook: no I/O
	if err != nil {
		return s.hookFailed(err)
	}
	return nil
}

func (s *Session) history(ctx context.Context, cmd *protocol.Command) ([]byte, *protocol.Error) {
	if perr := s.canRead(cmd.Channel); perr != nil {
		return nil, perr
	}
	r, err := s.hub.History(ctx, cmd.Channel, SincePosition(cmd.Since), s.hub.HistoryLimit(cmd.Limit), cmd.Reverse)
	if err != nil {
		return nil, s.clientError(err)
	}
	out := HistoryJSON(cmd.Channel, r)
	if len(out) > s.hub.cfg.QueueMaxBytes/2 {
		return nil, protocol.ErrTooLarge.WithMessage("history result of %d bytes is over this connection's limit: ask for fewer publications", len(out))
	}
	return out, nil
}

// HistoryJSON encodes a history result as the protocol's history result:
// {"publications":[pushes],"offset":N,"epoch":E}.
func HistoryJSON(channel string, r broker.HistoryResult) []byte {
	out := historyReply{Offset: r.Position.Offset, Epoch: r.Position.Epoch, Publications: make([]json.RawMessage, 0, len(r.Publications))}
	for _, p := range r.Publications {
		out.Publications = append(out.Publications, protocol.AppendPublication(nil, channel, p.Data, p.Offset))
	}
	return mustJSON(out)
}

type historyReply struct {
	Publications []json.RawMessage `json:"publications"`
	Offset       uint64            `json:"offset"`
	Epoch        string            `json:"epoch"`
}

func (s *Session) presence(ctx context.Context, cmd *protocol.Command) ([]byte, *protocol.Error) {
	if perr := s.canRead(cmd.Channel); perr != nil {
		return nil, perr
	}
	list, err := s.hub.Presence(ctx, cmd.Channel)
	if err != nil {
		return nil, s.clientError(err)
	}
	return PresenceJSON(list), nil
}

// PresenceJSON encodes a presence list as the protocol's presence result:
// {"clients":[...],"num_clients":N,"num_users":M}.
func PresenceJSON(list []broker.ClientInfo) []byte {
	users := map[string]bool{}
	for _, c := range list {
		if c.User != "" {
			users[c.User] = true
		}
	}
	if list == nil {
		list = []broker.ClientInfo{}
	}
	return mustJSON(struct {
		Clients []broker.ClientInfo `json:"clients"`
		broker.PresenceStats
	}{list, broker.PresenceStats{Clients: len(list), Users: len(users)}})
}

func (s *Session) presenceStats(ctx context.Context, cmd *protocol.Command) ([]byte, *protocol.Error) {
	if perr := s.canRead(cmd.Channel); perr != nil {
		return nil, perr
	}
	st, err := s.hub.PresenceStats(ctx, cmd.Channel)
	if err != nil {
		return nil, s.clientError(err)
	}
	return PresenceStatsJSON(st), nil
}

// PresenceStatsJSON encodes presence counts as the protocol's
// presence_stats result: {"num_clients":N,"num_users":M}.
func PresenceStatsJSON(st broker.PresenceStats) []byte { return mustJSON(st) }

// clientError turns an error from a hub method into what the client sees:
// protocol errors as they are, anything else as "unavailable".
func (s *Session) clientError(err error) *protocol.Error {
	var perr *protocol.Error
	if errors.As(err, &perr) {
		return perr
	}
	s.hub.log.Warn("command failed", "client", s.id, "err", err)
	return protocol.ErrUnavailable.WithMessage("temporarily unavailable, retry")
}

func (s *Session) publish(ctx context.Context, cmd *protocol.Command) ([]byte, *protocol.Error) {
	data, err := s.hub.checkPublish(ctx, cmd.Channel, s.id, s.User(), cmd.Data)
	if err != nil {
		return nil, s.hookFailed(err)
	}
	r, err := s.hub.PublishOnce(ctx, cmd.Channel, data, "client", cmd.IdempotencyKey)
	if err != nil {
		s.hub.log.Warn("client publish failed", "channel", cmd.Channel, "err", err)
		return nil, protocol.ErrUnavailable.WithMessage("cannot publish now, retry")
	}
	if !cmd.HasID {
		return nil, nil
	}
	return AppendPublished(nil, r), nil
}
