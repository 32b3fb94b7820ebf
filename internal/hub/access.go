package hub

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// namespace returns the options of channel's namespace, or a client-visible
// error when the namespace is unknown.
func (h *Hub) namespace(channel string) (auth.Namespace, *protocol.Error) {
	if perr := protocol.ValidateChannel(channel); perr != nil {
		return auth.Namespace{}, perr
	}
	if room, ok := roomOfChannel(channel); ok {
		return h.roomChannelNamespace(channel, room)
	}
	ns, err := h.cfg.Rules.Lookup(channel)
	if err != nil {
		return ns, protocol.ErrInvalidChannel.WithMessage("%v", err)
	}
	return ns, nil
}

// Credentials are what a verified connection token says about a client.
type Credentials struct {
	// User is the token's sub; empty for an anonymous token.
	User string
	// Info is the token's info claim, shown in presence.
	Info json.RawMessage
	// Channels are subscribed by the server when the client connects.
	Channels []string
	// Expires is when the token expires; zero for never.
	Expires time.Time
	// Grants are the token's permissions beyond channels, such as
	// "room:join" and "room:publish" (see Session.granted).
	Grants []string
	// Proxy marks credentials the connect hook gave: the refresh hook, when
	// configured, extends them at expiry.
	Proxy bool
}

// Authenticate verifies a connection token, for transports that take it at
// the transport level (query parameter, Authorization header).
func (h *Hub) Authenticate(token string) (*Credentials, *protocol.Error) {
	if h.cfg.Verifier == nil {
		return nil, protocol.ErrUnauthorized.WithMessage("tokens are not configured on this server")
	}
	c, err := h.cfg.Verifier.Connect(token)
	if err != nil {
		return nil, tokenError(err)
	}
	return &Credentials{User: c.Subject, Info: c.Info, Channels: c.Channels, Expires: auth.Expiry(c.RegisteredClaims), Grants: c.Grants}, nil
}

// tokenError maps a verification error to what the client sees.
func tokenError(err error) *protocol.Error {
	switch {
	case errors.Is(err, auth.ErrTokenExpired):
		return protocol.ErrTokenExpired.WithMessage("token expired: get a new one")
	case errors.Is(err, auth.ErrTokenTooLarge):
		return protocol.ErrUnauthorized.WithMessage("token too large")
	default:
		return protocol.ErrUnauthorized.WithMessage("invalid token")
	}
}

// ClientPublish reports whether clients may publish to channels of the
// default namespace; see CanPublish for a given channel.
func (h *Hub) ClientPublish() bool { return h.cfg.ClientPublish }

// RequireAuth reports whether every client must present a connection token
// (allow_anonymous off). Transports that take no connect command (SSE, long
// polling, HTTP publish) check the token themselves, with Authenticate.
func (h *Hub) RequireAuth() bool { return h.cfg.RequireAuth }

// CanPublish checks whether a client with the given user id may publish to
// channel (the publish command, and the HTTP publish endpoint of SSE and
// polling clients).
func (h *Hub) CanPublish(channel, user string) *protocol.Error {
	ns, perr := h.namespace(channel)
	if perr != nil {
		return perr
	}
	if _, ok := roomOfChannel(channel); ok {
		return errRoomChannelPublish(channel)
	}
	if !ns.Publish {
		return protocol.ErrPermissionDenied.WithMessage("clients may not publish to %q", channel)
	}
	if !auth.UserAllowed(channel, user) {
		return protocol.ErrPermissionDenied.WithMessage("%q is limited to its listed users", channel)
	}
	return nil
}

// HistoryMaxLimit is the most publications one history request may ask for.
func (h *Hub) HistoryMaxLimit() int { return h.cfg.HistoryMaxLimit }

// CanSubscribe checks whether a client with the given user id (empty when
// anonymous) may subscribe to channel: the namespace's subscribe rule, the
// channel's user list and the namespace's subscribe hook (see
// checkSubscribe); token is a subscription token, for namespaces that
// need one. The subscribe command checks it itself; transports that
// subscribe with Session.Subscribe (which checks nothing) call it first.
func (h *Hub) CanSubscribe(ctx context.Context, channel, user, token string) *protocol.Error {
	if _, err := h.checkSubscribe(ctx, channel, "", user, token, nil); err != nil {
		return refusal(err)
	}
	return nil
}
