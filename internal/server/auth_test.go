package server_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

const jwtSecret = "server-test-secret-0123456789"

func token(t *testing.T, sub string, ttl time.Duration, mutate func(*auth.ConnectClaims)) string {
	t.Helper()
	c := auth.ConnectClaims{RegisteredClaims: jwt.RegisteredClaims{Subject: sub, IssuedAt: jwt.NewNumericDate(time.Now().Add(-time.Second))}}
	if ttl != 0 {
		c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(ttl))
	}
	if mutate != nil {
		mutate(&c)
	}
	s, err := auth.Sign(jwtSecret, c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func subToken(t *testing.T, sub, channel string) string {
	t.Helper()
	s, err := auth.Sign(jwtSecret, auth.SubscribeClaims{RegisteredClaims: jwt.RegisteredClaims{Subject: sub}, Channel: channel})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func secured(c *config.Config) {
	c.AllowAnonymous = false
	c.JWTSecret = jwtSecret
	c.HandshakeTimeout = time.Second
	c.Namespaces = []auth.Namespace{
		{Name: "members", Subscribe: auth.SubscribeAuthenticated, Publish: true},
		{Name: "private", Subscribe: auth.SubscribeToken, HistorySize: 10, Recovery: true, Presence: true},
		{Name: "news", Subscribe: auth.SubscribeAnyone, Publish: false},
		{Name: "dm", Subscribe: auth.SubscribeAuthenticated, Publish: true},
	}
}

// authed dials and connects with a token for user.
func authed(t *testing.T, ts *testServer, user string) *wstest.Client {
	t.Helper()
	c := ts.dial()
	c.MustCall(map[string]any{"command": "connect", "token": token(t, user, time.Hour, nil)})
	return c
}

// TestAttacks is the table of attacks and mistakes: each runs over real
// connections, gets its documented outcome, and leaves a witness client
// receiving normally.
func TestAttacks(t *testing.T) {
	ts := start(t, secured)
	witness := authed(t, ts, "witness")
	witness.Subscribe("witness")

	// expectRefused sends cmd and asserts the error code and, when close is
	// not 0, that the connection is then closed with it.
	type step struct {
		cmd   map[string]any
		code  int
		close int
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	pubDER, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	confused, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "mallory"}).SignedString(pubPEM)
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.RegisteredClaims{Subject: "mallory"}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	badSig := token(t, "mallory", time.Hour, nil)
	badSig = badSig[:len(badSig)-3] + "xyz"

	tests := []struct {
		name  string
		user  string // connect with a valid token for this user first ("" = not connected)
		steps []step
	}{
		{"no token where one is required", "", []step{
			{map[string]any{"command": "subscribe", "channel": "news:x"}, 401, 0},
			{map[string]any{"command": "connect"}, 401, 4502},
		}},
		{"bad signature", "", []step{{map[string]any{"command": "connect", "token": badSig}, 401, 4502}}},
		{"alg none", "", []step{{map[string]any{"command": "connect", "token": none}, 401, 4502}}},
		{"HS256 signed with an RSA public key", "", []step{{map[string]any{"command": "connect", "token": confused}, 401, 4502}}},
		{"expired at connect", "", []step{{map[string]any{"command": "connect", "token": token(t, "u", -time.Minute, nil)}, 419, 4005}}},
		{"oversized token", "", []step{{map[string]any{"command": "connect", "token": string(make([]byte, 9000))}, 401, 4502}}},
		{"subscribe without permission", "", nil}, // covered below with an anonymous-token client
		{"publish where clients may not", "alice", []step{{map[string]any{"command": "publish", "channel": "news:x", "data": 1}, 403, 0}}},
		{"wrong user on a user-limited channel", "carol", []step{
			{map[string]any{"command": "subscribe", "channel": "dm:chat#alice,bob"}, 403, 0},
			{map[string]any{"command": "publish", "channel": "dm:chat#alice,bob", "data": 1}, 403, 0},
		}},
		{"subscription token for another channel", "alice", []step{
			{map[string]any{"command": "subscribe", "channel": "private:a", "token": subToken(t, "alice", "private:b")}, 403, 0},
			{map[string]any{"command": "subscribe", "channel": "private:a"}, 403, 0},
		}},
		{"subscription token of another user", "alice", []step{
			{map[string]any{"command": "subscribe", "channel": "private:a", "token": subToken(t, "bob", "private:a")}, 403, 0},
		}},
		{"history of a token channel without subscribing", "alice", []step{
			{map[string]any{"command": "history", "channel": "private:a"}, 403, 0},
		}},
		{"unknown namespace", "alice", []step{{map[string]any{"command": "subscribe", "channel": "nope:x"}, 422, 0}}},
		{"refresh with another user's token", "alice", []step{
			{map[string]any{"command": "refresh", "token": token(t, "bob", time.Hour, nil)}, 403, 0},
		}},
	}
	for _, tc := range tests {
		if tc.steps == nil {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			c := ts.dial()
			if tc.user != "" {
				c.MustCall(map[string]any{"command": "connect", "token": token(t, tc.user, time.Hour, nil)})
			}
			for _, st := range tc.steps {
				r := c.Call(st.cmd)
				if got := errorCode(r); got != st.code {
					t.Fatalf("%v: error code %d, want %d (%v)", st.cmd["command"], got, st.code, r)
				}
				if st.close != 0 {
					if code := c.ExpectClose(); code != st.close {
						t.Fatalf("close code %d, want %d", code, st.close)
					}
				}
			}
			healthy(t, ts, witness)
		})
	}

	t.Run("anonymous token cannot subscribe to an authenticated namespace", func(t *testing.T) {
		c := ts.dial()
		c.MustCall(map[string]any{"command": "connect", "token": token(t, "", time.Hour, nil)})
		if r := c.Call(map[string]any{"command": "subscribe", "channel": "members:x"}); errorCode(r) != 403 {
			t.Fatalf("%v", r)
		}
		c.Subscribe("news:x") // "anyone" namespaces stay open to it
		healthy(t, ts, witness)
	})

	t.Run("allowed paths", func(t *testing.T) {
		alice := authed(t, ts, "alice")
		alice.Subscribe("dm:chat#alice,bob")
		alice.Subscribe("members:lounge")
		alice.MustCall(map[string]any{"command": "subscribe", "channel": "private:a", "token": subToken(t, "alice", "private:a")})
		alice.MustCall(map[string]any{"command": "history", "channel": "private:a"})
		alice.MustCall(map[string]any{"command": "publish", "channel": "dm:chat#alice,bob", "data": "hi"})
		expectPub(t, alice.Next(), "dm:chat#alice,bob", 1)
	})

	t.Run("silent client closed after the connect timeout", func(t *testing.T) {
		c := ts.dial()
		if code := c.ExpectClose(); code != 4502 {
			t.Fatalf("close code %d", code)
		}
		healthy(t, ts, witness)
	})

	t.Run("server-side subscriptions from the token", func(t *testing.T) {
		c := ts.dial()
		tok := token(t, "dave", time.Hour, func(cl *auth.ConnectClaims) {
			cl.Channels = []string{"news:a", "members:b"}
			cl.Info = []byte(`{"name":"Dave"}`)
		})
		r := c.MustCall(map[string]any{"command": "connect", "token": tok})
		if r["user"] != "dave" || len(anySlice(r["subscriptions"])) != 2 {
			t.Fatalf("connect result %v", r)
		}
		ts.publish("news:a", "x")
		expectPub(t, c.Next(), "news:a", 1)
	})
}

func TestTokenExpiryAndRefresh(t *testing.T) {
	ts := start(t, secured)
	witness := authed(t, ts, "witness")
	witness.Subscribe("witness")

	expiring := ts.dial()
	expiring.MustCall(map[string]any{"command": "connect", "token": token(t, "eve", 2*time.Second, nil)})
	refreshed := ts.dial()
	refreshed.MustCall(map[string]any{"command": "connect", "token": token(t, "frank", 2*time.Second, nil)})
	res := refreshed.MustCall(map[string]any{"command": "refresh", "token": token(t, "frank", time.Hour, nil)})
	if res["expires"].(float64) < float64(time.Now().Add(30*time.Minute).Unix()) {
		t.Fatalf("refresh result %v", res)
	}
	refreshed.Subscribe("members:x")
	if code := expiring.ExpectClose(); code != 4005 {
		t.Fatalf("expired connection closed with %d, want 4005", code)
	}
	// The refreshed one outlived the first token.
	time.Sleep(500 * time.Millisecond)
	refreshed.MustCall(map[string]any{"command": "ping"})
	healthy(t, ts, witness)
}

func TestRateLimit(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.CommandRate = 5; c.CommandBurst = 5 })
	witness := ts.dial()
	witness.Subscribe("witness")
	c := ts.dial()
	for i := 0; i < 200; i++ {
		c.SendRaw(`{"command":"ping"}`)
	}
	limited := 0
	code := 0
	for code == 0 {
		m, err := c.NextErr(5 * time.Second)
		if err != nil {
			var ce wsutil.ClosedError
			if errors.As(err, &ce) {
				code = int(ce.Code)
			}
			break
		}
		if errorCode(m) == 429 {
			limited++
		}
	}
	if limited < 90 || code != 4006 {
		t.Fatalf("%d commands refused, close %d; want about 100 and 4006", limited, code)
	}
	if ts.metric("switchboard_rate_limited_total") < 100 {
		t.Fatal("rate-limited commands not counted")
	}
	healthy(t, ts, witness)
}

func TestConnectionLimitPerIP(t *testing.T) {
	ts := start(t, func(c *config.Config) { c.MaxConnectionsPerIP = 3 })
	// Each connection answers a ping before the next is dialed: the
	// handshake's answer comes before the server counts the connection, so
	// without it a fourth could be counted before the second and a kept
	// one be refused in its place.
	keep := []*wstest.Client{ts.dial(), ts.dial(), ts.dial()}
	keep[0].Subscribe("witness")
	for _, c := range keep[1:] {
		c.MustCall(map[string]any{"command": "ping"})
	}
	fourth := ts.dial()
	if code := fourth.ExpectClose(); code != 4007 {
		t.Fatalf("fourth connection closed with %d, want 4007", code)
	}
	healthy(t, ts, keep[0])
}

// TestCompressedFrameRefused: the server does not negotiate
// permessage-deflate, so a frame with RSV1 (a compressed frame, such as a
// deflate bomb) is a protocol error and is never inflated.
func TestCompressedFrameRefused(t *testing.T) {
	ts := start(t, nil)
	witness := ts.dial()
	witness.Subscribe("witness")
	c := ts.dial()
	f := ws.NewTextFrame([]byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00})
	f.Header.Rsv = ws.Rsv(true, false, false)
	if err := c.SendFrame(ws.MaskFrameInPlace(f)); err != nil {
		t.Fatal(err)
	}
	if code := c.ExpectClose(); code != 1002 {
		t.Fatalf("close code %d, want 1002", code)
	}
	healthy(t, ts, witness)
}

func TestSecureConfigNeedsAKey(t *testing.T) {
	cfg := config.Default()
	cfg.AllowAnonymous = false
	if _, err := newServer(t, cfg); err == nil {
		t.Fatal("allow_anonymous=false without a key accepted")
	}
}

// TestHandshakeToken: the token may come with the WebSocket handshake, as a
// query parameter or a bearer header; a bad one is refused before the
// upgrade, a good one authenticates the connection (connect then only
// describes it and makes the token's server-side subscriptions).
func TestHandshakeToken(t *testing.T) {
	ts := start(t, secured)
	base := "ws://" + ts.Addr() + "/ws"
	good := token(t, "alice", time.Hour, func(c *auth.ConnectClaims) { c.Channels = []string{"news:x"} })
	for _, tc := range []struct {
		name   string
		url    string
		header map[string]string
		ok     bool
	}{
		{"query", base + "?token=" + good, nil, true},
		{"bearer header", base, map[string]string{"Authorization": "Bearer " + good}, true},
		{"bad query token", base + "?token=nope", nil, false},
		{"expired header token", base, map[string]string{"Authorization": "Bearer " + token(t, "a", -time.Minute, nil)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := wstest.DialErr(t, tc.url, tc.header)
			if (err == nil) != tc.ok {
				t.Fatalf("dial err = %v, want ok=%v", err, tc.ok)
			}
			if !tc.ok {
				return
			}
			c.Subscribe("members:x") // authenticated without a connect command
			r := c.MustCall(map[string]any{"command": "connect"})
			if r["user"] != "alice" || len(anySlice(r["subscriptions"])) != 1 {
				t.Fatalf("connect: %v", r)
			}
		})
	}
}
