package client_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboardhq/switchboard/client"
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/config"
)

const jwtSecret = "client-test-secret-0123456789abcdef"

func secured(c *config.Config) {
	c.AllowAnonymous = false
	c.JWTSecret = jwtSecret
}

// mint signs a connection token for user that expires after ttl (in the
// past when negative).
func mint(t testing.TB, user string, ttl time.Duration) string {
	t.Helper()
	s, err := auth.Sign(jwtSecret, auth.ConnectClaims{RegisteredClaims: jwt.RegisteredClaims{
		Subject:   user,
		IssuedAt:  jwt.NewNumericDate(time.Now().Add(-time.Minute)),
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl)),
	}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTokenRefresh: tokens of 3 s, refreshed before they expire, keep one
// connection up past the first token's expiry.
func TestTokenRefresh(t *testing.T) {
	n := startNode(t, secured)
	var calls atomic.Int32
	rec := newRecorder()
	c := client.New(n.url(), client.Options{
		Backoff: fastBackoff,
		OnState: rec.onState,
		GetToken: func(ctx context.Context) (string, error) {
			calls.Add(1)
			return mint(t, "alice", 3*time.Second), nil
		},
	})
	defer c.Close()
	if err := c.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	info := c.Info()
	if info.User != "alice" || info.Expires.IsZero() {
		t.Fatalf("info %+v", info)
	}
	// Wait for two refreshes: by then the first token (3 s) has expired.
	for calls.Load() < 3 {
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := c.Publish(ctxT(t), "after", 1); err != nil {
		t.Fatal(err)
	}
	if !time.Now().After(info.Expires) {
		t.Fatalf("the first token has not expired yet (%v)", info.Expires)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.connections() != 1 || c.Info().Client != info.Client {
		t.Fatalf("the connection did not survive its first token: states %+v", rec.states)
	}
}

// TestTokenExpiredGetsANewOne: the first token GetToken returns has
// expired; the server refuses it (419, then 4005) and the client asks for
// another and connects.
func TestTokenExpiredGetsANewOne(t *testing.T) {
	n := startNode(t, secured)
	var calls atomic.Int32
	rec := newRecorder()
	c := client.New(n.url(), client.Options{
		Backoff: fastBackoff,
		OnState: rec.onState,
		GetToken: func(ctx context.Context) (string, error) {
			if calls.Add(1) == 1 {
				return mint(t, "bob", -time.Minute), nil
			}
			return mint(t, "bob", time.Hour), nil
		},
	})
	defer c.Close()
	if err := c.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 || c.Info().User != "bob" {
		t.Fatalf("%d tokens asked, info %+v", calls.Load(), c.Info())
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var se *client.Error
	if len(rec.states) < 2 || !errors.As(rec.states[1].Err, &se) || se.Code != 419 {
		t.Fatalf("states %+v", rec.states)
	}
}
