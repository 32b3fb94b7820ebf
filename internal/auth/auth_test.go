package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboardhq/switchboard/internal/auth"
)

const secret = "a-test-secret-of-32-bytes-length"

func claims(sub string, exp time.Duration) auth.ConnectClaims {
	c := auth.ConnectClaims{RegisteredClaims: jwt.RegisteredClaims{Subject: sub, IssuedAt: jwt.NewNumericDate(time.Now())}}
	if exp != 0 {
		c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(exp))
	}
	return c
}

func mustSign(t *testing.T, method jwt.SigningMethod, key any, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func writePEM(t *testing.T, key any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestHS256Attacks(t *testing.T) {
	v, err := auth.NewVerifier(auth.Config{Secret: secret, Issuer: "app", Audience: "sb"})
	if err != nil {
		t.Fatal(err)
	}
	good := claims("alice", time.Hour)
	good.Issuer, good.Audience = "app", jwt.ClaimStrings{"sb"}
	unsigned := mustSign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good)
	tampered := mustSign(t, jwt.SigningMethodHS256, []byte(secret), good)
	// Change one character well inside the signature (the last one carries
	// unused bits, and a fixed replacement can equal the original).
	i := len(tampered) - 10
	flip := byte('A')
	if tampered[i] == 'A' {
		flip = 'B'
	}
	tampered = tampered[:i] + string(flip) + tampered[i+1:]
	otherIss := good
	otherIss.Issuer = "evil"
	noAud := good
	noAud.Audience = nil
	expired := good
	expired.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Minute))
	subToken := auth.SubscribeClaims{RegisteredClaims: good.RegisteredClaims, Channel: "x"}
	hs512 := mustSign(t, jwt.SigningMethodHS512, []byte(secret), good)
	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"valid", mustSign(t, jwt.SigningMethodHS256, []byte(secret), good), nil},
		{"alg none", unsigned, auth.ErrTokenInvalid},
		{"bad signature", tampered, auth.ErrTokenInvalid},
		{"wrong secret", mustSign(t, jwt.SigningMethodHS256, []byte("another-secret-of-some-length!!"), good), auth.ErrTokenInvalid},
		{"other algorithm", hs512, auth.ErrTokenInvalid},
		{"wrong issuer", mustSign(t, jwt.SigningMethodHS256, []byte(secret), otherIss), auth.ErrTokenInvalid},
		{"missing audience", mustSign(t, jwt.SigningMethodHS256, []byte(secret), noAud), auth.ErrTokenInvalid},
		{"expired", mustSign(t, jwt.SigningMethodHS256, []byte(secret), expired), auth.ErrTokenExpired},
		{"subscription token as connection token", mustSign(t, jwt.SigningMethodHS256, []byte(secret), subToken), auth.ErrTokenInvalid},
		{"too large", strings.Repeat("a", 8193), auth.ErrTokenTooLarge},
		{"garbage", "not.a.token", auth.ErrTokenInvalid},
		{"empty", "", auth.ErrTokenInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Connect(tc.token)
			if tc.want == nil {
				if err != nil || c.Subject != "alice" {
					t.Fatalf("valid token refused: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestAlgorithmConfusion(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	pemPath := writePEM(t, &rsaKey.PublicKey)
	v, err := auth.NewVerifier(auth.Config{Algorithm: "RS256", PublicKeyFile: pemPath})
	if err != nil {
		t.Fatal(err)
	}
	c := claims("alice", time.Hour)
	if _, err := v.Connect(mustSign(t, jwt.SigningMethodRS256, rsaKey, c)); err != nil {
		t.Fatalf("RS256 token refused: %v", err)
	}
	// The classic attack: an HS256 token whose HMAC key is the server's
	// public key file.
	pub, _ := os.ReadFile(pemPath)
	forged := mustSign(t, jwt.SigningMethodHS256, pub, c)
	if _, err := v.Connect(forged); !errors.Is(err, auth.ErrTokenInvalid) {
		t.Fatalf("HS256 token signed with the public key: err = %v", err)
	}
}

func TestES256PublicKey(t *testing.T) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	v, err := auth.NewVerifier(auth.Config{Algorithm: "ES256", PublicKeyFile: writePEM(t, &ecKey.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Connect(mustSign(t, jwt.SigningMethodES256, ecKey, claims("bob", time.Hour))); err != nil {
		t.Fatal(err)
	}
}

func TestJWKS(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	b64 := base64.RawURLEncoding.EncodeToString
	var fetches atomic.Int32
	var keys atomic.Value
	keys.Store([]map[string]string{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys.Load()})
	}))
	defer srv.Close()
	v, err := auth.NewVerifier(auth.Config{Algorithm: "RS256", JWKSURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	tok := func(kid string) string {
		tk := jwt.NewWithClaims(jwt.SigningMethodRS256, claims("carol", time.Hour))
		tk.Header["kid"] = kid
		s, _ := tk.SignedString(rsaKey)
		return s
	}
	if _, err := v.Connect(tok("k1")); !errors.Is(err, auth.ErrTokenInvalid) {
		t.Fatalf("unknown kid: %v", err)
	}
	keys.Store([]map[string]string{{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
		"n": b64(rsaKey.N.Bytes()), "e": b64(big.NewInt(int64(rsaKey.E)).Bytes())}})
	// A second unknown kid within the refetch interval does not refetch...
	before := fetches.Load()
	if _, err := v.Connect(tok("k1")); err == nil {
		t.Log("key picked up at once")
	}
	if fetches.Load() > before+1 {
		t.Fatalf("refetched %d times", fetches.Load()-before)
	}
	// ...a fresh verifier fetches and accepts.
	v2, _ := auth.NewVerifier(auth.Config{Algorithm: "RS256", JWKSURL: srv.URL})
	if _, err := v2.Connect(tok("k1")); err != nil {
		t.Fatalf("JWKS key refused: %v", err)
	}
}

func TestSubscriptionTokens(t *testing.T) {
	v, _ := auth.NewVerifier(auth.Config{Secret: secret})
	sc := auth.SubscribeClaims{RegisteredClaims: jwt.RegisteredClaims{Subject: "alice"}, Channel: "private:room"}
	tok := mustSign(t, jwt.SigningMethodHS256, []byte(secret), sc)
	if _, err := v.Subscribe(tok, "private:room", "alice"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ channel, user string }{{"private:other", "alice"}, {"private:room", "bob"}, {"private:room", ""}} {
		if _, err := v.Subscribe(tok, tc.channel, tc.user); !errors.Is(err, auth.ErrTokenInvalid) {
			t.Errorf("%+v: err = %v", tc, err)
		}
	}
	conn := mustSign(t, jwt.SigningMethodHS256, []byte(secret), claims("alice", time.Hour))
	if _, err := v.Subscribe(conn, "private:room", "alice"); !errors.Is(err, auth.ErrTokenInvalid) {
		t.Errorf("connection token as subscription token: %v", err)
	}
}

func TestVerifierConfig(t *testing.T) {
	for _, c := range []auth.Config{
		{Secret: "short"},
		{Secret: secret, JWKSURL: "http://127.0.0.1:1/"},
		{Algorithm: "RS256", Secret: secret},
		{Algorithm: "PS256", PublicKeyFile: "x"},
		{PublicKeyFile: "x"},
	} {
		if _, err := auth.NewVerifier(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if v, err := auth.NewVerifier(auth.Config{}); v != nil || err != nil {
		t.Errorf("empty config: %v %v", v, err)
	}
}

func TestRules(t *testing.T) {
	r, err := auth.NewRules(auth.Namespace{Publish: true, HistorySize: 10, Recovery: true},
		[]auth.Namespace{{Name: "private", Subscribe: auth.SubscribeToken}, {Name: "news", Presence: true, JoinLeave: true}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		channel, ns string
		err         bool
	}{{"plain", "", false}, {"private:x", "private", false}, {"news:a:b", "news", false}, {"nope:x", "", true}} {
		ns, err := r.Lookup(tc.channel)
		if (err != nil) != tc.err || err == nil && ns.Name != tc.ns {
			t.Errorf("%s: %+v %v", tc.channel, ns, err)
		}
	}
	for _, tc := range []struct {
		channel, user string
		ok            bool
	}{{"dm#alice,bob", "alice", true}, {"dm#alice,bob", "bob", true}, {"dm#alice,bob", "carol", false},
		{"dm#alice,bob", "", false}, {"dm#", "alice", false}, {"open", "", true}, {"a#b#alice", "alice", true}} {
		if got := auth.UserAllowed(tc.channel, tc.user); got != tc.ok {
			t.Errorf("%s for %q: %v", tc.channel, tc.user, got)
		}
	}
	bad := [][]auth.Namespace{
		{{Name: "a:b"}}, {{Name: ""}}, {{Name: "x"}, {Name: "x"}}, {{Name: "x", Subscribe: "everyone"}},
		{{Name: "x", JoinLeave: true}}, {{Name: "x", Recovery: true}},
		{{Name: "x", IdempotencyWindow: -time.Second}}, {{Name: "x", IdempotencyWindow: 25 * time.Hour}},
	}
	for _, b := range bad {
		if _, err := auth.NewRules(auth.Namespace{}, b); err == nil {
			t.Errorf("%+v accepted", b)
		}
	}
}

func FuzzConnectToken(f *testing.F) {
	v, _ := auth.NewVerifier(auth.Config{Secret: secret})
	good, _ := auth.Sign(secret, claims("alice", time.Hour))
	f.Add(good)
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add("a.b.c")
	f.Add(strings.Repeat(".", 100))
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Connect(token)
		if err == nil && c == nil {
			t.Fatal("nil claims without error")
		}
		if err != nil && !errors.Is(err, auth.ErrTokenInvalid) && !errors.Is(err, auth.ErrTokenExpired) && !errors.Is(err, auth.ErrTokenTooLarge) {
			t.Fatalf("unclassified error %v", err)
		}
	})
}

func FuzzChannelRules(f *testing.F) {
	r, _ := auth.NewRules(auth.Namespace{}, []auth.Namespace{{Name: "ns"}})
	for _, s := range []string{"ns:a", "a#b,c", "#", "ns:#,,", ":", "x:y:z#u"} {
		f.Add(s, "b")
	}
	f.Fuzz(func(t *testing.T, channel, user string) {
		_, _ = r.Lookup(channel)
		users, limited := auth.AllowedUsers(channel)
		ok := auth.UserAllowed(channel, user)
		if !limited && !ok {
			t.Fatal("unlimited channel refused a user")
		}
		if ok && limited {
			found := false
			for _, u := range users {
				found = found || u == user
			}
			if !found {
				t.Fatal("allowed a user not in the list")
			}
		}
	})
}
