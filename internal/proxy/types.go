package proxy

import "encoding/json"

// The hooks, as they are named in metrics, logs and errors.
const (
	HookConnect   = "connect"
	HookRefresh   = "refresh"
	HookSubscribe = "subscribe"
	HookPublish   = "publish"
	HookRPC       = "rpc"
)

// Hooks lists every hook.
var Hooks = []string{HookConnect, HookRefresh, HookSubscribe, HookPublish, HookRPC}

// ConnectRequest is the body of a connect hook call: a client connected
// without a token and the backend is asked who it is.
type ConnectRequest struct {
	// Client is the connection's client id.
	Client string `json:"client"`
	// Transport names the client's transport (websocket, sse, ...).
	Transport string `json:"transport"`
	// RemoteAddr is the client's address as the server sees it.
	RemoteAddr string `json:"remote_addr"`
	// Headers are the allowlisted headers of the client's HTTP request
	// (proxy_pass_headers), by canonical name.
	Headers map[string]string `json:"headers,omitempty"`
	// Data is the connect command's "data", as the client sent it.
	Data json.RawMessage `json:"data,omitempty"`
}

// ConnectResult is what a backend answers to accept a connection.
type ConnectResult struct {
	// User is the client's user id; empty for an anonymous client.
	User string `json:"user"`
	// ExpireAt is when the connection's credentials expire, in Unix
	// seconds; 0 for never. The refresh hook (or a token refresh) extends
	// it; otherwise the connection is closed with 4005 then.
	ExpireAt int64 `json:"expire_at,omitempty"`
	// Channels are subscribed by the server at once, as a token's
	// channels claim.
	Channels []string `json:"channels,omitempty"`
	// Info describes the connection; it is returned in the connect reply.
	Info json.RawMessage `json:"info,omitempty"`
	// Data is returned to the client in the connect reply as "data".
	Data json.RawMessage `json:"data,omitempty"`
}

// RefreshRequest is the body of a refresh hook call: a connection's
// credentials expire (or the client asked to refresh without a token).
type RefreshRequest struct {
	Client    string `json:"client"`
	Transport string `json:"transport"`
	User      string `json:"user"`
	// Data is the refresh command's "data" when the client asked; absent
	// when the server refreshes by itself at expiry.
	Data json.RawMessage `json:"data,omitempty"`
}

// RefreshResult extends a connection's life, or ends it.
type RefreshResult struct {
	// Expired ends the connection (4005, token expired).
	Expired bool `json:"expired,omitempty"`
	// ExpireAt is the new expiry in Unix seconds; 0 for never.
	ExpireAt int64 `json:"expire_at,omitempty"`
	// Info, when set, replaces the connection's info.
	Info json.RawMessage `json:"info,omitempty"`
}

// SubscribeRequest is the body of a subscribe hook call.
type SubscribeRequest struct {
	Client  string `json:"client"`
	User    string `json:"user"`
	Channel string `json:"channel"`
	// Data is the subscribe command's "data", as the client sent it.
	Data json.RawMessage `json:"data,omitempty"`
}

// SubscribeResult allows a subscription.
type SubscribeResult struct {
	// Info, when set, is attached to the client's presence entry in the
	// channel.
	Info json.RawMessage `json:"info,omitempty"`
}

// PublishRequest is the body of a publish hook call.
type PublishRequest struct {
	Client  string          `json:"client"`
	User    string          `json:"user"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

// PublishResult allows a publication.
type PublishResult struct {
	// Data, when set, is published instead of the client's data.
	Data json.RawMessage `json:"data,omitempty"`
}

// RPCRequest is the body of an rpc hook call.
type RPCRequest struct {
	Client string          `json:"client"`
	User   string          `json:"user"`
	Method string          `json:"method"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// RPCResult is the backend's answer to an RPC, returned to the client.
type RPCResult struct {
	Data json.RawMessage `json:"data,omitempty"`
}

// answer is the envelope of every backend answer: exactly one of its
// fields is set.
type answer[R any] struct {
	Result     *R           `json:"result"`
	Error      *answerError `json:"error"`
	Disconnect *answerClose `json:"disconnect"`
}

type answerError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type answerClose struct {
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}
