package auth

import (
	"fmt"
	"strings"
	"time"
)

// Who may subscribe to a namespace's channels.
const (
	// SubscribeAnyone lets every connected client subscribe, anonymous ones
	// included (when the server lets anonymous clients connect).
	SubscribeAnyone = "anyone"
	// SubscribeAuthenticated lets clients connected with a token (a user id)
	// subscribe.
	SubscribeAuthenticated = "authenticated"
	// SubscribeToken requires a subscription token for the channel.
	SubscribeToken = "token"
)

// MaxIdempotencyWindow is the longest idempotency window accepted: the
// NATS broker keeps keys for at most this long.
const MaxIdempotencyWindow = 24 * time.Hour

// Namespace holds the options of the channels "name:..." (or, for the
// default namespace, of channels without a namespace).
type Namespace struct {
	Name string `koanf:"name"`
	// Subscribe is who may subscribe: anyone, authenticated or token.
	Subscribe string `koanf:"subscribe"`
	// Publish lets clients publish (the server API always may).
	Publish bool `koanf:"publish"`
	// HistorySize and HistoryTTL bound the channels' history.
	HistorySize int           `koanf:"history_size"`
	HistoryTTL  time.Duration `koanf:"history_ttl"`
	// IdempotencyWindow is how long an idempotency key of a publish to the
	// namespace's channels is remembered; 0 takes the server's
	// idempotency_window.
	IdempotencyWindow time.Duration `koanf:"idempotency_window"`
	// Recovery lets clients recover missed publications with "since".
	Recovery bool `koanf:"recovery"`
	// Presence keeps who is subscribed; JoinLeave pushes joins and leaves.
	Presence  bool `koanf:"presence"`
	JoinLeave bool `koanf:"join_leave"`
	// ProxySubscribe, ProxyPublish and ProxyRPC are the URLs of the
	// application backend's subscribe, publish and rpc hooks for the
	// namespace's channels (and, for rpc, its methods "name:..."). In the
	// configuration file "" takes the top-level proxy_*_endpoint and
	// ProxyOff calls no hook; the server resolves both before building the
	// rules, so that here "" means no hook.
	ProxySubscribe string `koanf:"proxy_subscribe_endpoint"`
	ProxyPublish   string `koanf:"proxy_publish_endpoint"`
	ProxyRPC       string `koanf:"proxy_rpc_endpoint"`
	// WebhookEvents selects the channel.* and member.* webhook events sent
	// for the namespace's channels; nil takes the top-level
	// webhook_events, and "none" alone sends none.
	WebhookEvents []string `koanf:"webhook_events"`
}

// ProxyOff, as a namespace's proxy endpoint, turns off a hook the
// top-level configuration sets.
const ProxyOff = "off"

// Validate checks the namespace's options.
func (n Namespace) Validate() error {
	switch n.Subscribe {
	case SubscribeAnyone, SubscribeAuthenticated, SubscribeToken:
	default:
		return fmt.Errorf("namespace %q: subscribe must be anyone, authenticated or token, not %q", n.Name, n.Subscribe)
	}
	if n.HistorySize < 0 || n.HistoryTTL < 0 {
		return fmt.Errorf("namespace %q: history_size and history_ttl must not be negative", n.Name)
	}
	if n.IdempotencyWindow < 0 || n.IdempotencyWindow > MaxIdempotencyWindow {
		return fmt.Errorf("namespace %q: idempotency_window must be from 0 (the server's) to %s, got %s", n.Name, MaxIdempotencyWindow, n.IdempotencyWindow)
	}
	if n.JoinLeave && !n.Presence {
		return fmt.Errorf("namespace %q: join_leave needs presence", n.Name)
	}
	if n.Recovery && n.HistorySize == 0 {
		return fmt.Errorf("namespace %q: recovery needs history_size > 0", n.Name)
	}
	return nil
}

// Rules map channels to their namespace.
type Rules struct {
	def   Namespace
	named map[string]Namespace
}

// NewRules builds the rules from the default namespace and the named ones.
func NewRules(def Namespace, named []Namespace) (*Rules, error) {
	def.Name = ""
	if def.Subscribe == "" {
		def.Subscribe = SubscribeAnyone
	}
	if err := def.Validate(); err != nil {
		return nil, err
	}
	r := &Rules{def: def, named: map[string]Namespace{}}
	for _, n := range named {
		if n.Name == "" || strings.ContainsAny(n.Name, ":#") || !validName(n.Name) {
			return nil, fmt.Errorf("namespace name %q: must be a non-empty channel name without ':' or '#'", n.Name)
		}
		if _, dup := r.named[n.Name]; dup {
			return nil, fmt.Errorf("namespace %q is defined twice", n.Name)
		}
		if n.Subscribe == "" {
			n.Subscribe = SubscribeAnyone
		}
		if err := n.Validate(); err != nil {
			return nil, err
		}
		r.named[n.Name] = n
	}
	return r, nil
}

func validName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// ErrUnknownNamespace is returned for a channel whose namespace is not
// configured.
var ErrUnknownNamespace = fmt.Errorf("auth: unknown namespace")

// Lookup returns the namespace of channel: the part before the first ':'
// names it; a channel without ':' is in the default namespace.
func (r *Rules) Lookup(channel string) (Namespace, error) {
	name, _, found := strings.Cut(channel, ":")
	if !found {
		return r.def, nil
	}
	ns, ok := r.named[name]
	if !ok {
		return Namespace{}, fmt.Errorf("%w %q", ErrUnknownNamespace, name)
	}
	return ns, nil
}

// AllowedUsers returns the users a user-limited channel admits: the
// comma-separated list after the last '#' ("dialog#alice,bob"). ok is false
// for channels without '#'.
func AllowedUsers(channel string) (users []string, ok bool) {
	i := strings.LastIndexByte(channel, '#')
	if i < 0 {
		return nil, false
	}
	for _, u := range strings.Split(channel[i+1:], ",") {
		if u != "" {
			users = append(users, u)
		}
	}
	return users, true
}

// UserAllowed reports whether user may use channel as far as its user list
// goes: always for channels without one, else only listed, non-empty users.
func UserAllowed(channel, user string) bool {
	users, limited := AllowedUsers(channel)
	if !limited {
		return true
	}
	if user == "" {
		return false
	}
	for _, u := range users {
		if u == user {
			return true
		}
	}
	return false
}
