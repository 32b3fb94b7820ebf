package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/client"
)

func TestBackoffDelay(t *testing.T) {
	b := client.Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	cases := map[string]struct {
		b       client.Backoff
		attempt int
		random  float64
		want    time.Duration
	}{
		"first attempt, top of the range":    {b, 0, 0.999, 99900 * time.Microsecond},
		"first attempt, zero":                {b, 0, 0, 0},
		"first attempt, half":                {b, 0, 0.5, 50 * time.Millisecond},
		"second attempt doubles the ceiling": {b, 1, 0.5, 100 * time.Millisecond},
		"fourth attempt":                     {b, 3, 0.5, 400 * time.Millisecond},
		"capped at Max":                      {b, 5, 0.5, time.Second},
		"far past the cap does not overflow": {b, 1000, 0.5, time.Second},
		"random 1 is clamped below 1":        {b, 5, 1, 1999998 * time.Microsecond},
		"negative random is clamped to 0":    {b, 2, -3, 0},
		"zero value takes the defaults":      {client.Backoff{}, 0, 0.5, 250 * time.Millisecond},
		"defaults cap at 10 s":               {client.Backoff{}, 40, 0.5, 5 * time.Second},
		"Max below Min is raised to Min":     {client.Backoff{Min: time.Second, Max: time.Millisecond}, 3, 0.5, 500 * time.Millisecond},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := tc.b.Delay(tc.attempt, func() float64 { return tc.random })
			if got != tc.want {
				t.Fatalf("Delay(%d) with random %v = %v, want %v", tc.attempt, tc.random, got, tc.want)
			}
		})
	}
}

// TestBackoffFullJitter checks that the delays of one attempt spread over
// the whole range [0, ceiling): full jitter, not "ceiling plus a little".
func TestBackoffFullJitter(t *testing.T) {
	b := client.Backoff{Min: time.Second, Max: time.Minute}
	var lo, hi int
	for i := range 1000 {
		r := float64(i) / 1000
		d := b.Delay(2, func() float64 { return r })
		if d < 0 || d >= 4*time.Second {
			t.Fatalf("delay %v outside [0, 4s)", d)
		}
		if d < time.Second {
			lo++
		}
		if d >= 3*time.Second {
			hi++
		}
	}
	if lo != 250 || hi != 250 {
		t.Fatalf("%d delays in the lowest quarter and %d in the highest, want 250 each", lo, hi)
	}
}

func TestBackoffAttemptResetsOnlyAfterStable(t *testing.T) {
	b := client.Backoff{Stable: 5 * time.Second}
	cases := map[string]struct {
		attempt int
		up      time.Duration
		want    int
	}{
		"dial failed":                      {3, 0, 4},
		"dropped right after connecting":   {3, 100 * time.Millisecond, 4},
		"dropped just before stable":       {3, 5*time.Second - 1, 4},
		"stable connection starts again":   {7, 5 * time.Second, 1},
		"long connection starts again":     {7, time.Hour, 1},
		"first failure of a fresh client":  {0, 0, 1},
		"zero Stable uses the 5 s default": {2, 4 * time.Second, 3},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := client.NextAttempt(b, tc.attempt, tc.up); got != tc.want {
				t.Fatalf("next(%d, %v) = %d, want %d", tc.attempt, tc.up, got, tc.want)
			}
		})
	}
}

func TestCloseCodes(t *testing.T) {
	cases := []struct {
		code      int
		reconnect bool
	}{
		{1000, true}, {1002, false}, {1003, false}, {1006, true}, {1007, false}, {1009, false}, {1011, true},
		{4000, true}, {4001, true}, {4002, true}, {4003, true}, {4004, true}, {4005, true}, {4006, true}, {4007, true},
		{4499, true}, {4500, false}, {4501, false}, {4502, false}, {4999, false},
	}
	for _, tc := range cases {
		e := &client.CloseError{Code: tc.code}
		if e.Reconnect() != tc.reconnect {
			t.Errorf("close %d: Reconnect() = %v, want %v", tc.code, e.Reconnect(), tc.reconnect)
		}
		if e.TokenExpired() != (tc.code == 4005) {
			t.Errorf("close %d: TokenExpired() = %v", tc.code, e.TokenExpired())
		}
	}
}

func TestRoundRobin(t *testing.T) {
	next := client.RoundRobin("ws://a/ws", "ws://b/ws", "ws://c/ws")
	var got []string
	for attempt := range 5 {
		u, err := next(context.Background(), attempt)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, u)
	}
	if fmt.Sprint(got) != "[ws://a/ws ws://b/ws ws://c/ws ws://a/ws ws://b/ws]" {
		t.Fatalf("urls %v", got)
	}
	if _, err := client.RoundRobin()(context.Background(), 0); err == nil {
		t.Fatal("RoundRobin without URLs gave one")
	}
}
