package stream_test

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/stream"
)

const jwtSecret = "a-jwt-secret-of-32-bytes-length!"

func newAuthorizer(t *testing.T, now *time.Time) *stream.Authorizer {
	t.Helper()
	v, err := auth.NewVerifier(auth.Config{Secret: jwtSecret, Now: func() time.Time { return *now }})
	if err != nil {
		t.Fatal(err)
	}
	a, err := stream.NewAuthorizer(stream.AuthOptions{
		APIKeys:    []string{"the-api-key"},
		KeySecret:  []byte("0123456789abcdef0123"),
		Verifier:   v,
		Namespaces: []stream.Namespace{{Name: "live", Read: stream.ReadAnyone}, {Name: "private", Read: stream.ReadToken}},
		Now:        func() time.Time { return *now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func token(t *testing.T, now time.Time, grants ...string) string {
	t.Helper()
	s, err := auth.Sign(jwtSecret, auth.ConnectClaims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: "u", ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))},
		Grants:           grants,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAuthorize(t *testing.T) {
	now := time.Now()
	a := newAuthorizer(t, &now)
	pubKey, exp, err := a.MintKey(stream.ActionPublish, "live/a", time.Minute)
	if err != nil || !exp.After(now) {
		t.Fatalf("MintKey: %v %v", err, exp)
	}
	readKey, _, _ := a.MintKey(stream.ActionRead, "private/a", time.Minute)
	privPub, _, _ := a.MintKey(stream.ActionPublish, "private/a", time.Minute)
	cases := []struct {
		name   string
		action stream.Action
		path   string
		cred   string
		want   error
	}{
		{"api key publishes", stream.ActionPublish, "live/a", "the-api-key", nil},
		{"wrong api key", stream.ActionPublish, "live/a", "nope", stream.ErrForbidden},
		{"nothing", stream.ActionPublish, "live/a", "", stream.ErrUnauthorized},
		{"stream key", stream.ActionPublish, "live/a", pubKey, nil},
		{"stream key other path", stream.ActionPublish, "live/b", pubKey, stream.ErrForbidden},
		{"tampered stream key", stream.ActionPublish, "live/a", pubKey[:len(pubKey)-2] + "AA", stream.ErrForbidden},
		{"tampered expiry", stream.ActionPublish, "live/a", strings.Replace(pubKey, ".p.", ".p.z", 1), stream.ErrForbidden},
		{"malformed stream key", stream.ActionPublish, "live/a", "sk1.x", stream.ErrForbidden},
		{"read key cannot publish", stream.ActionPublish, "private/a", readKey, stream.ErrForbidden},
		{"read key reads", stream.ActionRead, "private/a", readKey, nil},
		{"publish key reads", stream.ActionRead, "private/a", privPub, nil},
		{"open namespace reads", stream.ActionRead, "live/a", "", nil},
		{"token namespace needs one", stream.ActionRead, "private/a", "", stream.ErrUnauthorized},
		{"jwt publish grant", stream.ActionPublish, "live/a", token(t, now, "stream:publish"), nil},
		{"jwt path grant", stream.ActionPublish, "live/a", token(t, now, "stream:publish:live/a"), nil},
		{"jwt other path", stream.ActionPublish, "live/b", token(t, now, "stream:publish:live/a"), stream.ErrForbidden},
		{"jwt star", stream.ActionRead, "private/a", token(t, now, "stream:*"), nil},
		{"jwt read cannot publish", stream.ActionPublish, "live/a", token(t, now, "stream:read"), stream.ErrForbidden},
		{"jwt room grant", stream.ActionPublish, "live/a", token(t, now, "room:*"), stream.ErrForbidden},
		{"bad jwt", stream.ActionPublish, "live/a", "a.b.c", stream.ErrForbidden},
		{"bad path", stream.ActionPublish, "live", "the-api-key", stream.ErrBadPath},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := a.Authorize(c.action, c.path, stream.ParseCredential(c.cred))
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	now = now.Add(2 * time.Minute)
	err = a.Authorize(stream.ActionPublish, "live/a", stream.ParseCredential(pubKey))
	if !errors.Is(err, stream.ErrKeyExpired) || stream.StatusCode(err) != 403 {
		t.Fatalf("expired key: %v", err)
	}
}

func TestMintKeyLimits(t *testing.T) {
	now := time.Now()
	a := newAuthorizer(t, &now)
	for _, ttl := range []time.Duration{0, time.Millisecond, stream.MaxKeyTTL + time.Second} {
		if _, _, err := a.MintKey(stream.ActionPublish, "live/a", ttl); err == nil {
			t.Errorf("ttl %s accepted", ttl)
		}
	}
	if _, _, err := a.MintKey(stream.ActionPublish, "bad path", time.Minute); !errors.Is(err, stream.ErrBadPath) {
		t.Errorf("bad path: %v", err)
	}
	none, _ := stream.NewAuthorizer(stream.AuthOptions{})
	if _, _, err := none.MintKey(stream.ActionPublish, "live/a", time.Minute); err == nil {
		t.Error("minted without a secret")
	}
	if _, err := stream.NewAuthorizer(stream.AuthOptions{KeySecret: []byte("short")}); err == nil {
		t.Error("short secret accepted")
	}
}

func TestCredentialsFromRequest(t *testing.T) {
	cases := map[string]struct {
		header, url string
		want        stream.Credentials
	}{
		"bearer key":   {"Bearer sk1.p.x.y", "/", stream.Credentials{StreamKey: "sk1.p.x.y"}},
		"bearer jwt":   {"bearer a.b.c", "/", stream.Credentials{Token: "a.b.c"}},
		"apikey":       {"apikey k", "/", stream.Credentials{APIKey: "k"}},
		"query key":    {"", "/?key=k", stream.Credentials{APIKey: "k"}},
		"query token":  {"", "/?token=a.b.c", stream.Credentials{Token: "a.b.c"}},
		"none":         {"", "/", stream.Credentials{}},
		"other scheme": {"Basic eA==", "/", stream.Credentials{}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest("GET", c.url, nil)
			if c.header != "" {
				r.Header.Set("Authorization", c.header)
			}
			if got := stream.CredentialsFromRequest(r); got != c.want {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func FuzzStreamKey(f *testing.F) {
	// A fixed clock: each fuzzing worker runs this set-up again, and a key
	// minted in another second (the coordinator's seed) would differ from
	// the worker's own k while being just as valid.
	now := time.Unix(1_800_000_000, 0)
	a, _ := stream.NewAuthorizer(stream.AuthOptions{KeySecret: []byte("0123456789abcdef"), Now: func() time.Time { return now }})
	k, _, _ := a.MintKey(stream.ActionPublish, "live/a", time.Hour)
	f.Add(k)
	f.Add("sk1.p..")
	f.Add("sk1.r.zzzzzzzzzzzzzzzzz.x")
	f.Fuzz(func(t *testing.T, key string) {
		err := a.Authorize(stream.ActionPublish, "live/a", stream.ParseCredential(key))
		if err == nil && key != k {
			t.Fatalf("forged key %q accepted", key)
		}
	})
}

func FuzzSplitPath(f *testing.F) {
	for _, s := range []string{"live/a", "live/", "a/b/c", "../x", "live/.x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		ns, name, err := stream.SplitPath(path)
		if err != nil {
			return
		}
		if ns+"/"+name != path || strings.ContainsAny(ns+name, "/ \x00") || name[0] == '.' || ns[0] == '.' {
			t.Fatalf("accepted %q as %q %q", path, ns, name)
		}
	})
}
