package hub

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/protocol"
	"github.com/switchboardhq/switchboard/internal/proxy"
)

// Backend is the application backend the proxy hooks call
// (docs/backend.md); *proxy.Client implements it over HTTP. Each method
// returns the hook's result, or an error that is a *protocol.Error (the
// backend refused), a protocol.Disconnect (the backend closes the
// connection) or a failure that proxy.PublicError turns into a 503.
type Backend interface {
	Connect(ctx context.Context, endpoint string, req proxy.ConnectRequest) (proxy.ConnectResult, error)
	Refresh(ctx context.Context, endpoint string, req proxy.RefreshRequest) (proxy.RefreshResult, error)
	Subscribe(ctx context.Context, endpoint string, req proxy.SubscribeRequest) (proxy.SubscribeResult, error)
	Publish(ctx context.Context, endpoint string, req proxy.PublishRequest) (proxy.PublishResult, error)
	RPC(ctx context.Context, endpoint string, req proxy.RPCRequest) (proxy.RPCResult, error)
}

var _ Backend = (*proxy.Client)(nil)

// refreshGrace is how long past its expiry a connection whose refresh
// hook fails (the backend is down or slow) is kept while the hook is
// retried at each sweep, before it is closed with 4005.
const refreshGrace = 30 * time.Second

// PassHeaders returns the names of the HTTP request headers transports
// keep in SessionInfo.Headers: nil when no connect hook is configured, so
// that idle connections keep nothing.
func (h *Hub) PassHeaders() []string {
	if h.cfg.Backend == nil || h.cfg.ProxyConnectEndpoint == "" {
		return nil
	}
	return h.cfg.PassHeaders
}

// hookFailed turns a failed hook call into the command's error. A
// disconnect the backend asked for closes the session; the command then
// gets no reply (errReplied), the close code says why.
func (s *Session) hookFailed(err error) *protocol.Error {
	var d protocol.Disconnect
	if errors.As(err, &d) {
		s.Close(d)
		return errReplied
	}
	return proxy.PublicError(err)
}

// refusal turns a failed check outside a session (an HTTP transport
// before its session exists) into the client's error: a disconnect the
// backend asked for becomes 403 with its reason.
func refusal(err error) *protocol.Error {
	var d protocol.Disconnect
	if errors.As(err, &d) {
		return protocol.ErrPermissionDenied.WithMessage("%s", d.Reason)
	}
	return proxy.PublicError(err)
}

// connectHook asks the connect hook who the client is and makes that the
// session's identity. It returns the backend's data for the client.
func (s *Session) connectHook(ctx context.Context, cmd *protocol.Command) (json.RawMessage, *protocol.Error) {
	res, err := s.hub.cfg.Backend.Connect(ctx, s.hub.cfg.ProxyConnectEndpoint, proxy.ConnectRequest{
		Client: s.id, Transport: s.transport.Name(), RemoteAddr: s.remoteAddr,
		Headers: s.headers, Data: cmd.Data,
	})
	if err != nil {
		return nil, s.hookFailed(err)
	}
	c, perr := s.hub.hookCredentials(res)
	if perr != nil {
		return nil, perr
	}
	s.setCredentials(c)
	s.headers = nil // the cookies served their purpose
	return res.Data, nil
}

// ConnectHook asks the connect hook who the client of an HTTP transport's
// request without a token is (SSE, long polling, HTTP publish: no session
// exists yet, so the hook gets an empty client id). It returns nil, nil
// when no connect hook is configured, and when the backend refuses while
// anonymous clients are allowed (the request goes on as anonymous, as a
// WebSocket client the hook refused stays connected anonymously). Else
// the backend's refusal comes back as its error, its disconnect as 403, a
// failure as 503.
func (h *Hub) ConnectHook(ctx context.Context, transport, remoteAddr string, headers map[string]string) (*Credentials, *protocol.Error) {
	if h.cfg.Backend == nil || h.cfg.ProxyConnectEndpoint == "" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.CommandTimeout)
	defer cancel()
	res, err := h.cfg.Backend.Connect(ctx, h.cfg.ProxyConnectEndpoint, proxy.ConnectRequest{
		Transport: transport, RemoteAddr: remoteAddr, Headers: headers,
	})
	if err != nil {
		var d protocol.Disconnect
		perr := refusal(err)
		if !h.cfg.RequireAuth && !errors.As(err, &d) && perr.Code != protocol.ErrUnavailable.Code {
			return nil, nil
		}
		return nil, perr
	}
	return h.hookCredentials(res)
}

// hookCredentials turns the connect hook's answer into credentials,
// refusing an expiry already past.
func (h *Hub) hookCredentials(res proxy.ConnectResult) (*Credentials, *protocol.Error) {
	c := &Credentials{User: res.User, Info: res.Info, Channels: res.Channels, Proxy: true}
	if res.ExpireAt > 0 {
		c.Expires = time.Unix(res.ExpireAt, 0)
		if !c.Expires.After(h.clock.Now()) {
			return nil, protocol.ErrTokenExpired.WithMessage("the application backend gave an expiry in the past")
		}
	}
	return c, nil
}

// refreshable reports whether the refresh hook extends the session's
// credentials.
func (s *Session) refreshable() bool {
	if s.hub.cfg.Backend == nil || s.hub.cfg.ProxyRefreshEndpoint == "" {
		return false
	}
	c := s.credentials()
	return c != nil && c.Proxy
}

// refreshHook asks the refresh hook to extend the session's credentials
// and applies its answer; data is the refresh command's, nil when the
// server refreshes by itself. A backend that says the credentials
// expired closes the session with 4005 (errReplied).
func (s *Session) refreshHook(ctx context.Context, data json.RawMessage) (time.Time, *protocol.Error) {
	old := s.credentials()
	res, err := s.hub.cfg.Backend.Refresh(ctx, s.hub.cfg.ProxyRefreshEndpoint, proxy.RefreshRequest{
		Client: s.id, Transport: s.transport.Name(), User: old.User, Data: data,
	})
	if err != nil {
		return time.Time{}, s.hookFailed(err)
	}
	if res.Expired {
		s.Close(protocol.DisconnectTokenExpired)
		return time.Time{}, errReplied
	}
	c := &Credentials{User: old.User, Info: old.Info, Proxy: true}
	if res.Info != nil {
		c.Info = res.Info
	}
	if res.ExpireAt > 0 {
		c.Expires = time.Unix(res.ExpireAt, 0)
	}
	s.setCredentials(c)
	return c.Expires, nil
}

// refreshExpired runs the refresh hook for a session whose credentials
// expired, on a goroutine of its own (one at a time per session). A
// backend that refuses closes the session with 4005; one that fails is
// asked again at the next sweep, until refreshGrace past the expiry.
func (s *Session) refreshExpired() {
	if !s.refreshing.CompareAndSwap(false, true) {
		return
	}
	h := s.hub
	h.loops.Add(1) // called from the sweep, itself counted in loops
	go func() {
		defer h.loops.Done()
		defer s.refreshing.Store(false)
		ctx, end := s.begin(context.Background())
		defer end()
		_, perr := s.refreshHook(ctx, nil)
		if perr != nil && perr != errReplied && perr.Code != protocol.ErrUnavailable.Code {
			s.Close(protocol.DisconnectTokenExpired)
		}
	}()
}

// checkSubscribe is the whole subscribe permission of a client (client
// is "" before an HTTP transport's session exists). In order: the
// channel's name and namespace; its user list ("#"), which nothing
// overrides; a subscription token when one is given, which suffices;
// else, in a namespace with a subscribe hook, the namespace's rule that
// needs a user ("authenticated") and then the backend, which decides in
// place of a missing subscription token ("token"); else the namespace's
// rule. It returns the presence info the backend attached, if any.
func (h *Hub) checkSubscribe(ctx context.Context, channel, client, user, token string, data json.RawMessage) (json.RawMessage, error) {
	ns, perr := h.namespace(channel)
	if perr != nil {
		return nil, perr
	}
	if room, ok := roomOfChannel(channel); ok {
		// Without the connection's grants: Session.checkSubscribe passes
		// them for the commands.
		if _, perr := h.roomAccess(room, user, nil); perr != nil {
			return nil, perr
		}
		return nil, nil
	}
	if !auth.UserAllowed(channel, user) {
		return nil, protocol.ErrPermissionDenied.WithMessage("%q is limited to its listed users", channel)
	}
	if token != "" && ns.Subscribe == auth.SubscribeToken {
		if perr := h.checkSubscriptionToken(channel, user, token); perr != nil {
			return nil, perr
		}
		return nil, nil // not a nil *protocol.Error in an error
	}
	if ns.Subscribe == auth.SubscribeAuthenticated && user == "" {
		return nil, protocol.ErrPermissionDenied.WithMessage("%q needs an authenticated user", channel)
	}
	if ns.ProxySubscribe != "" && h.cfg.Backend != nil {
		res, err := h.cfg.Backend.Subscribe(ctx, ns.ProxySubscribe, proxy.SubscribeRequest{Client: client, User: user, Channel: channel, Data: data})
		return res.Info, err
	}
	if ns.Subscribe == auth.SubscribeToken {
		return nil, protocol.ErrPermissionDenied.WithMessage("%q needs a subscription token", channel)
	}
	return nil, nil
}

// checkSubscriptionToken verifies a subscription token for channel.
func (h *Hub) checkSubscriptionToken(channel, user, token string) *protocol.Error {
	if h.cfg.Verifier == nil {
		return protocol.ErrPermissionDenied.WithMessage("subscription tokens are not configured on this server")
	}
	if _, err := h.cfg.Verifier.Subscribe(token, channel, user); err != nil {
		if errors.Is(err, auth.ErrTokenExpired) {
			return protocol.ErrTokenExpired.WithMessage("subscription token expired")
		}
		return protocol.ErrPermissionDenied.WithMessage("subscription token refused")
	}
	return nil
}

// checkPublish is the whole publish permission of a client (client is ""
// for the HTTP publish endpoint): the namespace lets clients publish, the
// channel's user list admits the user, then the namespace's publish hook,
// if any, allows, and may replace the data. It returns the data to
// publish.
func (h *Hub) checkPublish(ctx context.Context, channel, client, user string, data json.RawMessage) (json.RawMessage, error) {
	if perr := h.CanPublish(channel, user); perr != nil {
		return nil, perr
	}
	if data == nil {
		return nil, protocol.ErrBadRequest.WithMessage(`missing "data"`)
	}
	ns, _ := h.cfg.Rules.Lookup(channel) // CanPublish found it
	if ns.ProxyPublish == "" || h.cfg.Backend == nil {
		return data, nil
	}
	res, err := h.cfg.Backend.Publish(ctx, ns.ProxyPublish, proxy.PublishRequest{Client: client, User: user, Channel: channel, Data: data})
	if err != nil {
		return nil, err
	}
	if res.Data != nil {
		return res.Data, nil
	}
	return data, nil
}

// CheckPublish checks whether a client with the given user id may publish
// data to channel, asking the namespace's publish hook when it has one,
// and returns the data to publish (the hook may replace it). It is for the
// HTTP publish endpoint; the publish command checks the same.
func (h *Hub) CheckPublish(ctx context.Context, channel, user string, data json.RawMessage) (json.RawMessage, *protocol.Error) {
	out, err := h.checkPublish(ctx, channel, "", user, data)
	if err != nil {
		return nil, refusal(err)
	}
	return out, nil
}

// rpcEndpoint returns the rpc hook that handles method: the one of the
// namespace its prefix names ("name:..."), else the default namespace's.
func (h *Hub) rpcEndpoint(method string) (string, *protocol.Error) {
	ns, err := h.cfg.Rules.Lookup(method)
	if err != nil || ns.ProxyRPC == "" || h.cfg.Backend == nil {
		return "", protocol.ErrUnknownCommand.WithMessage("no application backend handles rpc method %q", method)
	}
	return ns.ProxyRPC, nil
}

// rpc calls a method of the application backend and returns its data.
func (s *Session) rpc(ctx context.Context, cmd *protocol.Command) ([]byte, *protocol.Error) {
	if perr := protocol.ValidateMethod(cmd.Method); perr != nil {
		return nil, perr
	}
	ep, perr := s.hub.rpcEndpoint(cmd.Method)
	if perr != nil {
		return nil, perr
	}
	res, err := s.hub.cfg.Backend.RPC(ctx, ep, proxy.RPCRequest{Client: s.id, User: s.User(), Method: cmd.Method, Data: cmd.Data})
	if err != nil {
		return nil, s.hookFailed(err)
	}
	out := mustJSON(struct {
		Data json.RawMessage `json:"data,omitempty"`
	}{res.Data})
	if len(out) > s.hub.cfg.QueueMaxBytes/2 {
		return nil, protocol.ErrTooLarge.WithMessage("rpc result of %d bytes is over this connection's limit", len(out))
	}
	return out, nil
}
