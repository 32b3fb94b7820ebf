package hub_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/protocol"
	"github.com/switchboardhq/switchboard/internal/proxy"
)

// fakeBackend answers every hook with err (nil: allow), and counts calls.
type fakeBackend struct {
	mu    sync.Mutex
	calls map[string]int
	err   error
	data  json.RawMessage // the publish hook's replacement data
}

func (f *fakeBackend) called(hook string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[hook]++
}

func (f *fakeBackend) count(hook string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[hook]
}

func (f *fakeBackend) Connect(_ context.Context, _ string, _ proxy.ConnectRequest) (proxy.ConnectResult, error) {
	f.called("connect")
	return proxy.ConnectResult{}, f.err
}

func (f *fakeBackend) Refresh(_ context.Context, _ string, _ proxy.RefreshRequest) (proxy.RefreshResult, error) {
	f.called("refresh")
	return proxy.RefreshResult{}, f.err
}

func (f *fakeBackend) Subscribe(_ context.Context, _ string, _ proxy.SubscribeRequest) (proxy.SubscribeResult, error) {
	f.called("subscribe")
	return proxy.SubscribeResult{}, f.err
}

func (f *fakeBackend) Publish(_ context.Context, _ string, _ proxy.PublishRequest) (proxy.PublishResult, error) {
	f.called("publish")
	return proxy.PublishResult{Data: f.data}, f.err
}

func (f *fakeBackend) RPC(_ context.Context, _ string, _ proxy.RPCRequest) (proxy.RPCResult, error) {
	f.called("rpc")
	return proxy.RPCResult{}, f.err
}

const hookSecret = "hub-test-secret-0123456789"

// TestHookPermissionOrder pins down how the subscribe and publish hooks
// combine with namespace rules, user lists and subscription tokens
// (docs/backend.md, "subscribe" and "publish"): which checks come first,
// when the backend is asked at all, and what its answer becomes.
func TestHookPermissionOrder(t *testing.T) {
	rules, err := auth.NewRules(auth.Namespace{Publish: true}, []auth.Namespace{
		{Name: "hooked", Subscribe: auth.SubscribeAnyone, Publish: true, ProxySubscribe: "http://b/s", ProxyPublish: "http://b/p"},
		{Name: "members", Subscribe: auth.SubscribeAuthenticated, ProxySubscribe: "http://b/s"},
		{Name: "private", Subscribe: auth.SubscribeToken, ProxySubscribe: "http://b/s"},
		{Name: "readonly", Publish: false, ProxyPublish: "http://b/p"},
		{Name: "plain"},
	})
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := auth.NewVerifier(auth.Config{Secret: hookSecret})
	if err != nil {
		t.Fatal(err)
	}
	subToken, err := auth.Sign(hookSecret, auth.SubscribeClaims{RegisteredClaims: jwt.RegisteredClaims{Subject: "alice"}, Channel: "private:x"})
	if err != nil {
		t.Fatal(err)
	}
	refuse := proxy.BackendError(3403, "members only")
	down := proxy.ErrUnavailable
	banned := proxy.BackendDisconnect(4600, "banned")

	subscribeCases := []struct {
		name, channel, user, token string
		backend                    error
		wantCode                   int  // 0: allowed
		wantCall                   bool // the hook was asked
	}{
		{"hook allows anyone", "hooked:a", "", "", nil, 0, true},
		{"hook refuses with its code", "hooked:a", "alice", "", refuse, 3403, true},
		{"backend down is 503", "hooked:a", "alice", "", down, 503, true},
		{"backend disconnect outside a session is 403", "hooked:a", "alice", "", banned, 403, true},
		{"user list before the hook", "hooked:dm#alice", "bob", "", nil, 403, false},
		{"user list then the hook", "hooked:dm#alice", "alice", "", nil, 0, true},
		{"authenticated rule before the hook", "members:a", "", "", nil, 403, false},
		{"authenticated user asks the hook", "members:a", "alice", "", refuse, 3403, true},
		{"subscription token suffices", "private:x", "alice", subToken, refuse, 0, false},
		{"bad subscription token is refused", "private:y", "alice", subToken, nil, 403, false},
		{"no token: the hook decides", "private:x", "alice", "", nil, 0, true},
		{"no hook, no call", "plain:a", "", "", refuse, 0, false},
		{"unknown namespace", "nope:a", "", "", nil, 422, false},
	}
	for _, tc := range subscribeCases {
		t.Run("subscribe/"+tc.name, func(t *testing.T) {
			fb := &fakeBackend{err: tc.backend}
			h := newHub(t, hub.Config{Rules: rules, Verifier: verifier, Backend: fb})
			perr := h.CanSubscribe(context.Background(), tc.channel, tc.user, tc.token)
			if got := codeOf(perr); got != tc.wantCode {
				t.Fatalf("code %d (%v), want %d", got, perr, tc.wantCode)
			}
			if called := fb.count("subscribe") > 0; called != tc.wantCall {
				t.Fatalf("hook called: %v, want %v", called, tc.wantCall)
			}
		})
	}

	publishCases := []struct {
		name, channel string
		backend       error
		replace       string
		wantCode      int
		wantCall      bool
		wantData      string
	}{
		{"allowed as sent", "hooked:a", nil, "", 0, true, `{"t":"hi"}`},
		{"rewritten", "hooked:a", nil, `{"t":"HI"}`, 0, true, `{"t":"HI"}`},
		{"refused", "hooked:a", refuse, "", 3403, true, ""},
		{"namespace refuses first", "readonly:a", nil, "", 403, false, ""},
		{"no hook", "plain:a", refuse, "", 403, false, ""}, // plain does not let clients publish
		{"default namespace, no hook", "free", refuse, "", 0, false, `{"t":"hi"}`},
	}
	for _, tc := range publishCases {
		t.Run("publish/"+tc.name, func(t *testing.T) {
			fb := &fakeBackend{err: tc.backend}
			if tc.replace != "" {
				fb.data = json.RawMessage(tc.replace)
			}
			h := newHub(t, hub.Config{Rules: rules, Verifier: verifier, Backend: fb})
			data, perr := h.CheckPublish(context.Background(), tc.channel, "alice", json.RawMessage(`{"t":"hi"}`))
			if got := codeOf(perr); got != tc.wantCode {
				t.Fatalf("code %d (%v), want %d", got, perr, tc.wantCode)
			}
			if string(data) != tc.wantData {
				t.Fatalf("data %s, want %s", data, tc.wantData)
			}
			if called := fb.count("publish") > 0; called != tc.wantCall {
				t.Fatalf("hook called: %v, want %v", called, tc.wantCall)
			}
		})
	}
}

func codeOf(perr *protocol.Error) int {
	if perr == nil {
		return 0
	}
	return perr.Code
}

// TestHookDisconnectClosesTheSession: a backend's disconnect on a
// subscribe closes the connection with its code and sends no reply.
func TestHookDisconnectClosesTheSession(t *testing.T) {
	rules, err := auth.NewRules(auth.Namespace{ProxySubscribe: "http://b/s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fb := &fakeBackend{err: proxy.BackendDisconnect(4600, "banned")}
	h := newHub(t, hub.Config{Rules: rules, Backend: fb})
	r := newRecorder()
	s := h.NewSession(r, hub.SessionInfo{})
	send(s, `{"id":1,"command":"subscribe","channel":"c"}`)
	r.waitFor(t, "the close", func() bool { return r.closed != nil })
	if r.closed.Code != 4600 || len(r.msgs) != 0 {
		t.Fatalf("closed with %v after %v", r.closed, r.msgs)
	}
}
